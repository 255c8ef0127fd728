"""CelebA: 40 binary facial attributes per aligned face image.

Layout (either the flat one or the one of the official download)::

    ROOT/img_align_celeba/000001.jpg ...      or  ROOT/Img/img_align_celeba/...
    ROOT/list_attr_celeba.txt                 or  ROOT/Anno/list_attr_celeba.txt
    ROOT/list_eval_partition.txt              or  ROOT/Eval/list_eval_partition.txt

`list_attr_celeba.txt`: the image count, the 40 attribute names, then per image its file name and
40 values of -1 or 1 separated by one or more spaces (-1 becomes 0).
`list_eval_partition.txt`: file name and 0 (train), 1 (val) or 2 (test).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import (FileLister, base_and_prefix, first_existing, image_is_readable,
                                        progress, resolve_under)
from lssat.data.index import IndexHeader, Record
from lssat.errors import DataError
from lssat.paths import read_text

NAME = "celeba"
HELP = "CelebA (img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt): 40 attributes"

N_ATTRIBUTES = 40
PARTITIONS = {"0": "train", "1": "val", "2": "test"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CelebA options."""
    parser.add_argument("--images", default=None,
                        help="image folder, relative to ROOT or absolute (default: img_align_celeba "
                             "or Img/img_align_celeba)")
    parser.add_argument("--check-images", action="store_true",
                        help="open every image and skip (and count) those that cannot be decoded")
    parser.add_argument("--subgroups", nargs="*", default=["Male", "Young"], metavar="ATTR",
                        help="attributes copied into each record's subgroup for fairness reports "
                             "(default: Male Young; give none to leave it out)")


def _find(root: Path, name: str, subdir: str) -> Path:
    found = first_existing([root / name, root / subdir / name])
    if found is None:
        raise DataError(f"{root}: not a CelebA folder ({name} not found there or in {subdir}/)")
    return found


def read_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """Parse list_attr_celeba.txt: (attribute names, file name -> 40 values of 0/1)."""
    lines = read_text(path, "CelebA attribute list").splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: too short for a CelebA attribute list (count and names lines expected)")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}:1: expected the image count, got {lines[0][:40]!r}") from None
    names = lines[1].split()
    if len(names) != N_ATTRIBUTES:
        raise DataError(f"{path}:2: expected {N_ATTRIBUTES} attribute names, got {len(names)}")
    rows: dict[str, list[int]] = {}
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()  # one or more spaces between fields
        if not parts:
            continue
        if len(parts) != N_ATTRIBUTES + 1:
            raise DataError(f"{path}:{lineno}: expected a file name and {N_ATTRIBUTES} values, "
                            f"got {len(parts)} fields")
        values = []
        for v in parts[1:]:
            if v == "1":
                values.append(1)
            elif v == "-1":
                values.append(0)
            else:
                raise DataError(f"{path}:{lineno}: attribute values must be -1 or 1, got {v!r}")
        if parts[0] in rows:
            raise DataError(f"{path}:{lineno}: image {parts[0]!r} listed twice")
        rows[parts[0]] = values
    if len(rows) != declared:
        raise DataError(f"{path}: first line declares {declared} images but {len(rows)} rows follow")
    return names, rows


def read_partition(path: Path) -> dict[str, str]:
    """Parse list_eval_partition.txt: file name -> split."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(read_text(path, "CelebA partition list").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in PARTITIONS:
            raise DataError(f"{path}:{lineno}: expected a file name and 0, 1 or 2, got {line.strip()[:60]!r}")
        out[parts[0]] = PARTITIONS[parts[1]]
    return out


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index CelebA with all 40 attributes by name, in the file's order."""
    attr_file = _find(root, "list_attr_celeba.txt", "Anno")
    part_file = _find(root, "list_eval_partition.txt", "Eval")
    if options.images is not None:
        images = resolve_under(root, options.images)
    else:
        images = first_existing([root / "img_align_celeba", root / "Img" / "img_align_celeba"])
        if images is None:
            raise DataError(f"{root}: not a CelebA folder (img_align_celeba/ not found there or in Img/)")
    if not images.is_dir():
        raise DataError(f"{images}: CelebA image folder not found")

    names, attributes = read_attributes(attr_file)
    partition = read_partition(part_file)
    subgroup_idx = []
    for s in options.subgroups or []:
        if s not in names:
            raise DataError(f"--subgroups: {s!r} is not a CelebA attribute (see {attr_file.name})")
        subgroup_idx.append((s, names.index(s)))

    base, prefix = base_and_prefix(root, images)
    lister = FileLister(images)
    skipped: Counter = Counter()
    records: list[Record] = []
    for name in progress(sorted(attributes), "celeba"):
        split = partition.get(name)
        if split is None:
            skipped["listed in the attributes but not in the partition file"] += 1
            continue
        if not lister.exists(name):
            skipped["image file missing"] += 1
            continue
        if options.check_images and not image_is_readable(images / name):
            skipped["image cannot be decoded"] += 1
            continue
        values = attributes[name]
        records.append(Record(
            path=prefix + name, split=split, attributes=values,
            subgroup={s: values[i] for s, i in subgroup_idx} or None,
        ))
    n_unlabelled = sum(1 for name in partition if name not in attributes)
    if n_unlabelled:
        skipped["listed in the partition file but not in the attributes"] += n_unlabelled

    header = IndexHeader(
        dataset="celeba", task="attributes", root=str(base),
        attribute_names=names, subgroups=[s for s, _ in subgroup_idx] or None,
        info={"attribute_file": attr_file.name, "partition_file": part_file.name,
              "checked_images": bool(options.check_images)},
    )
    return ImportResult(header=header, records=records, skipped=skipped)
