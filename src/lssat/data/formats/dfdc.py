"""DFDC, the Deepfake Detection Challenge dataset: one VIDEO record per video.

Layout (the training parts as downloaded, optionally under train/, and the public test set)::

    ROOT/[train/]dfdc_train_part_<N>/metadata.json      {"<name>.mp4": {"label": "REAL" | "FAKE",
    ROOT/[train/]dfdc_train_part_<N>/<name>.mp4            "split": "train", "original": "<name>.mp4" | null}}
    ROOT/test/labels.csv                                the public test set: columns filename,label
    ROOT/test/<name>.mp4                                   (label 0 real, 1 fake)

Any folder ROOT, ROOT/* or ROOT/*/* holding a metadata.json is read as a part (so the Kaggle
sample, train_sample_videos/, works too). ROOT/test (or ROOT/test_videos) is the test set: its
labels.csv, or when it has none its metadata.json in the parts' format.
Every listed video must be on disk (the error names the list and its line or key; --skip-missing
counts missing ones instead); videos on disk that no list names are skipped and counted.

DFDC does not say which of its eight methods made a fake, nor who is in a video: `method` is
"DFDC" for every fake, and `extra.original` keeps the name of the real video a fake was made from.

Splits: the public test set, when present, is the test split. The training parts are split into
train and val (and test, when there is no test set) by source video, seeded: a real video and every
fake made from it stay in one split. DFDC's metadata does not identify actors, and an actor filmed
in several source videos may appear in two splits. --test-only keeps only the test set (the
cross-dataset protocol).
"""

from __future__ import annotations

import argparse
import csv
import io
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import check_fractions, read_json
from lssat.data.formats._videos import (add_skip_missing, add_split_options, check_relative, fractions_text,
                                        is_video_name, missing_video, split_by_identity, video_files,
                                        video_record)
from lssat.data.index import IndexHeader
from lssat.errors import DataError
from lssat.paths import read_text

NAME = "dfdc"
HELP = "DFDC videos (dfdc_train_part_N/metadata.json, test/labels.csv): real vs fake"

METADATA = "metadata.json"
LABELS_CSV = "labels.csv"
METHOD = "DFDC"
_LABELS = {"REAL": 0, "FAKE": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """DFDC options."""
    parser.add_argument("--test-only", action="store_true",
                        help="index only the public test set (test/labels.csv), all in split test")
    add_skip_missing(parser)
    add_split_options(parser, val=0.1, test=0.1, as_split=False)


def find_parts(root: Path) -> tuple[list[Path], Path | None]:
    """Folders holding a metadata.json (ROOT, ROOT/*, ROOT/*/*), and the test folder with labels.csv."""
    parts = []
    for pattern in (METADATA, f"*/{METADATA}", f"*/*/{METADATA}"):
        parts += [p.parent for p in sorted(root.glob(pattern)) if not any(s.startswith(".") for s in
                                                                         p.relative_to(root).parts)]
    test = None
    for candidate in (root / "test", root / "test_videos"):
        if (candidate / LABELS_CSV).is_file() or (candidate / METADATA).is_file():
            test = candidate
            break
    parts = [p for p in parts if p != test]
    return parts, test


def _load_json(path: Path) -> dict:
    data = read_json(path, "DFDC metadata")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object {{\"<name>.mp4\": {{\"label\": \"REAL\" | \"FAKE\", ...}}}}")
    return data


def read_metadata(path: Path) -> list[tuple[str, int, str | None]]:
    """(video name, label, original name or None) per entry of a part's metadata.json."""
    out = []
    for name, entry in _load_json(path).items():
        where = f"{path}: entry {name!r}"
        check_relative(where, name)
        if "/" in name.replace("\\", "/") or not is_video_name(name):
            raise DataError(f"{where}: expected a video file name such as 'aaqaifqrwn.mp4'")
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object with 'label'")
        label = entry.get("label")
        if label not in _LABELS:
            raise DataError(f"{where}: label must be REAL or FAKE, got {label!r}")
        original = entry.get("original")
        if original is not None and not isinstance(original, str):
            raise DataError(f"{where}: original must be a file name or null, got {original!r}")
        if label == "FAKE" and not original:
            raise DataError(f"{where}: a FAKE video needs its 'original'")
        out.append((name, _LABELS[label], original if label == "FAKE" else None))
    return out


def read_labels_csv(path: Path) -> list[tuple[int, str, int]]:
    """(line, video name, label) per row of the test set's labels.csv (columns filename,label)."""
    text = read_text(path, "DFDC labels")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty (expected a header filename,label)")
    columns = [c.strip() for c in header]
    if "filename" not in columns or "label" not in columns:
        raise DataError(f"{path}:1: expected columns filename and label, got {','.join(columns)}")
    fi, li = columns.index("filename"), columns.index("label")
    out, seen = [], {}
    for row in reader:
        n = reader.line_num
        if not any(c.strip() for c in row):
            continue
        where = f"{path}:{n}"
        if len(row) != len(columns):
            raise DataError(f"{where}: expected {len(columns)} fields, got {len(row)}")
        name, label = row[fi].strip(), row[li].strip()
        check_relative(where, name)
        if "/" in name.replace("\\", "/") or not is_video_name(name):
            raise DataError(f"{where}: filename must be a video file name, got {name!r}")
        if label not in ("0", "1"):
            raise DataError(f"{where}: label must be 0 (real) or 1 (fake), got {label!r}")
        if name in seen:
            raise DataError(f"{where}: {name!r} is listed twice (also line {seen[name]})")
        seen[name] = n
        out.append((n, name, int(label)))
    return out


def _prefix(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return "" if rel == "." else rel + "/"


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index DFDC as video records: the public test set as test, the parts split by source video."""
    skipped: Counter = Counter()
    parts, test = find_parts(root)
    if options.test_only and test is None:
        raise DataError(f"{root}: no test set (test/{LABELS_CSV} or test/{METADATA} not found) for --test-only")
    if not parts and test is None:
        raise DataError(f"{root}: not a DFDC folder (no {METADATA} in ROOT, ROOT/* or ROOT/*/*, "
                        f"no test/{LABELS_CSV})")
    with_test = test is not None
    for unlabelled in (root / "test", root / "test_videos"):
        if unlabelled != test and unlabelled.is_dir() and unlabelled not in parts:
            n = sum(1 for p in unlabelled.iterdir() if p.is_file() and is_video_name(p.name))
            if n:  # Kaggle's test_videos/ comes without labels
                skipped[f"{unlabelled.name}/: videos without {LABELS_CSV} or {METADATA} (not read)"] += n
    check_fractions(val_fraction=options.val_fraction,
                    **({} if with_test else {"test_fraction": options.test_fraction}))
    fractions = ({"train": 1.0 - options.val_fraction, "val": options.val_fraction} if with_test else
                 {"train": 1.0 - options.val_fraction - options.test_fraction, "val": options.val_fraction,
                  "test": options.test_fraction})

    records = []
    if test is not None:
        on_disk = set(video_files(test, root, skipped, ignore=(LABELS_CSV, METADATA)))
        prefix, listed = _prefix(test, root), set()
        if (test / LABELS_CSV).is_file():
            label_file = LABELS_CSV
            entries = [(f"{test / LABELS_CSV}:{n}", name, label, None) for n, name, label in
                       read_labels_csv(test / LABELS_CSV)]
        else:
            label_file = METADATA
            entries = [(f"{test / METADATA}: entry {name!r}", name, label, original) for name, label, original in
                       read_metadata(test / METADATA)]
        for where, name, label, original in entries:
            rel = prefix + name
            listed.add(rel)
            if rel not in on_disk:
                missing_video(where, name, options, skipped)
                continue
            records.append(video_record(rel, "test", label, "real" if label == 0 else METHOD, part=test.name,
                                        original=original))
        if on_disk - listed:
            skipped[f"video not in {label_file}"] += len(on_disk - listed)

    if options.test_only:
        if parts:
            skipped["training part not read (--test-only)"] += len(parts)
        parts = []
    info: dict[str, tuple[int, str | None, str]] = {}  # rel -> (label, original, part)
    for part in parts:
        meta = part / METADATA
        on_disk = set(video_files(part, root, skipped, ignore=(METADATA,)))
        prefix, listed = _prefix(part, root), set()
        for name, label, original in read_metadata(meta):
            rel = prefix + name
            listed.add(rel)
            if rel not in on_disk:
                missing_video(f"{meta}: entry {name!r}", name, options, skipped)
                continue
            info[rel] = (label, original, part.name)
        if on_disk - listed:
            skipped[f"video not in {METADATA}"] += len(on_disk - listed)

    # a real video and the fakes made from it form one group: DFDC names are unique across parts
    members = {rel: (original or rel.rsplit("/", 1)[-1],) for rel, (_, original, _) in info.items()}
    split_of = split_by_identity(members, fractions, options.seed, skipped) if members else {}
    for rel in sorted(split_of):
        label, original, part = info[rel]
        records.append(video_record(rel, split_of[rel], label, "real" if label == 0 else METHOD,
                                    part=part, original=original))
    header = IndexHeader(
        dataset="dfdc", task="deepfake", root=str(root.resolve()), classes=["real", "fake"],
        info={"records": "videos", "parts": [_prefix(p, root).rstrip("/") or "." for p in parts],
              "test_set": _prefix(test, root).rstrip("/") if test is not None else None,
              "splits": ("public test set only" if options.test_only else
                         ("public test set; train/val " if with_test else "") +
                         fractions_text(fractions, options.seed, "source video"))},
    )
    return ImportResult(header=header, records=records, skipped=skipped)
