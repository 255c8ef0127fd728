"""`lssat index FORMAT ROOT -o index.jsonl`: turn a dataset in its native layout into an lssat index.

Every importer module of `lssat.data.formats` becomes a FORMAT with its own options. The command
checks ROOT, runs the importer, validates and writes the index, then prints the records per split
and label and what was skipped, per reason.

An importer's `header.root` is the folder its record paths are relative to: absolute, or relative to
ROOT ('.' being ROOT itself; ROOT spelled as given also means ROOT). The index stores it relative to
the index file's folder when it can. A format module with `CREATES_ROOT = True` (a generator that
writes its data under ROOT) may be given a ROOT that does not exist yet.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def register(subparsers) -> argparse.ArgumentParser:
    """Add `lssat index` with one sub-parser per dataset format."""
    from lssat.data.formats import available_formats

    parser = subparsers.add_parser(
        "index", help="index a dataset (celeba, affectnet, ffpp, ...) into index.jsonl",
        description="Turn a dataset in its native layout into an lssat index (JSON Lines). "
                    "Run `lssat index FORMAT --help` for a format's options.",
    )
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, module in available_formats().items():
        sub = formats.add_parser(name, help=module.HELP, description=module.HELP)
        sub.add_argument("root", metavar="ROOT", help="the dataset's folder")
        sub.add_argument("-o", "--output", required=True, metavar="INDEX",
                         help="index file to write (JSON Lines), e.g. index.jsonl")
        module.add_arguments(sub)
    parser.set_defaults(func=run)
    return parser


def _skipped_lines(skipped: Counter) -> list[str]:
    items = [(reason, n) for reason, n in skipped.items() if n]
    if not items:
        return ["skipped: nothing"]
    lines = [f"skipped {sum(n for _, n in items)}:"]
    lines += [f"  {n:7d}  {reason}" for reason, n in sorted(items, key=lambda x: (-x[1], x[0]))]
    return lines


def _count_lines(header, records) -> list[str]:
    """Records per split and label, labels in label order (class id; 'real' first for deepfakes)."""
    from lssat.data.index import SPLITS, label_name

    per_split: dict[str, Counter] = {s: Counter() for s in SPLITS}
    order: dict[str, tuple] = {}
    for r in records:
        name = label_name(header, r)
        per_split[r.split][name] += 1
        order.setdefault(name, (r.label if r.label is not None else -1, name != "real", name))
    lines = []
    for split in SPLITS:
        counter = per_split[split]
        if not counter:
            lines.append(f"  {split:5s} {0:7d}  (none)")
            continue
        parts = ", ".join(f"{n}: {counter[n]}" for n in sorted(counter, key=lambda n: order[n]))
        lines.append(f"  {split:5s} {sum(counter.values()):7d}  ({parts})")
    return lines


def run(args: argparse.Namespace) -> int:
    """Build, validate and write the index; print counts and skips."""
    from lssat.data.formats import get_format
    from lssat.data.index import Index, write_index
    from lssat.errors import DataError
    from lssat.paths import check_output_file

    module = get_format(args.format)
    root = Path(args.root).expanduser()
    creates = getattr(module, "CREATES_ROOT", False)  # a generator (synthetic) writes its data there
    if not root.exists() and not creates:
        raise DataError(f"{root}: dataset folder not found")
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: not a folder (ROOT must be the dataset's folder)")
    check_output_file(Path(args.output).expanduser(), "index (-o)")

    result = module.build_index(root, args)
    if not result.records:
        reasons = "; ".join(f"{r}: {n}" for r, n in result.skipped.most_common(3)) or "nothing matched"
        raise DataError(f"{root}: no {args.format} records found ({reasons})")

    header = result.header
    given = Path(header.root or ".")
    if given.is_absolute():
        data_root = given
    elif given == root or given == Path(args.root):  # an importer that stored ROOT as it was given
        data_root = root
    else:
        data_root = root / given
    out = Path(args.output).expanduser()
    n = write_index(out, header, result.records, data_root=data_root)

    index = Index(header=header, records=result.records, root=data_root)
    print(f"wrote {n} records to {out} ({header.dataset}, task {header.task}, data root {header.root})")
    print("\n".join(_count_lines(header, result.records)))
    if header.task == "deepfake" and any(r.video_id for r in result.records):
        videos = {s: len({r.video_id for r in index.split(s)}) for s in ("train", "val", "test")}
        print("  videos: " + ", ".join(f"{s} {v}" for s, v in videos.items() if v))
    print("\n".join(_skipped_lines(result.skipped)))
    return 0
