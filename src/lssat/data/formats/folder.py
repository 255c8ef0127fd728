"""A plain image folder: one subfolder per class, or a CSV of path,label[,split].

Layouts::

    ROOT/<class>/**/*.jpg                   no split given: a seeded, per-class train/val/test split
    ROOT/<split>/<class>/**/*.jpg           split in {train, val, test} (also valid, validation)
    --csv FILE                              columns path,label[,split]; paths relative to ROOT

Class ids follow --classes when given (that order; other classes are skipped and counted), else the
sorted class names. With --task deepfake the two classes are real and fake (by those names, or the
two --classes in the order real, fake). When the given splits have no val, one is carved out of
train (--val-fraction, per class, seeded); a missing test split is not invented.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import (FileLister, add_split_options, check_fractions, image_is_readable,
                                        is_image, progress, resolve_under, stratified_split)
from lssat.data.index import IndexHeader, Record
from lssat.errors import ConfigError, DataError
from lssat.paths import read_text

NAME = "folder"
HELP = "an image folder (ROOT/[split/]class/*.jpg) or a CSV of path,label[,split]"

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
TASKS = ("expression", "deepfake")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Folder options."""
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="a CSV with columns path,label[,split] instead of class folders")
    parser.add_argument("--task", choices=TASKS, default="expression",
                        help="expression: multi-class (default); deepfake: classes real and fake")
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME",
                        help="class names in label order (default: sorted names found)")
    parser.add_argument("--check-images", action="store_true",
                        help="open every image and skip (and count) those that cannot be decoded")
    add_split_options(parser, val=0.1, test=0.1)


def _walk_images(folder: Path, rel_to: Path, skipped: Counter) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if is_image(name):
                out.append((Path(dirpath) / name).relative_to(rel_to).as_posix())
            else:
                skipped["not an image file"] += 1
    return out


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _loose_files(folder: Path, skipped: Counter) -> None:
    n = sum(1 for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image(p.name))
    if n:
        skipped["image outside a class folder"] += n


def scan_folders(root: Path, skipped: Counter) -> list[tuple[str, str, str | None]]:
    """(path, class, split or None) for every image under ROOT/[split/]class/."""
    top = _subdirs(root)
    if not top:
        raise DataError(f"{root}: no class folders (expected ROOT/<class>/*.jpg or ROOT/<split>/<class>/...)")
    is_split = [p.name.lower() in SPLIT_NAMES for p in top]
    if any(is_split) and not all(is_split):
        splits = [p.name for p, s in zip(top, is_split) if s]
        others = [p.name for p, s in zip(top, is_split) if not s]
        raise DataError(f"{root}: mixes split folders ({', '.join(splits)}) with class folders "
                        f"({', '.join(others[:3])}); use one layout")
    items = []
    _loose_files(root, skipped)
    if all(is_split):
        for split_dir in top:
            split = SPLIT_NAMES[split_dir.name.lower()]
            _loose_files(split_dir, skipped)
            for class_dir in _subdirs(split_dir):
                items += [(p, class_dir.name, split) for p in _walk_images(class_dir, root, skipped)]
    else:
        for class_dir in top:
            items += [(p, class_dir.name, None) for p in _walk_images(class_dir, root, skipped)]
    return items


def read_csv(path: Path, root: Path, skipped: Counter) -> list[tuple[str, str, str | None]]:
    """(path, class, split or None) per row of a path,label[,split] CSV."""
    if not path.exists():
        raise DataError(f"{path}: CSV not found (--csv)")
    text = read_text(path, "CSV (--csv)")
    lister = FileLister(root)
    items = []
    root_r = root.resolve()
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in reader.fieldnames or []]
        for needed in ("path", "label"):
            if needed not in fields:
                raise DataError(f"{path}: missing column {needed!r} (header must name path,label[,split])")
        reader.fieldnames = fields
        has_split = "split" in fields
        for lineno, row in enumerate(reader, start=2):
            where = f"{path}:{lineno}"
            rel = (row["path"] or "").strip().replace("\\", "/")
            label = (row["label"] or "").strip()
            if not rel or not label:
                raise DataError(f"{where}: empty 'path' or 'label'")
            if os.path.isabs(rel):
                try:
                    rel = Path(rel).resolve().relative_to(root_r).as_posix()
                except ValueError:
                    raise DataError(f"{where}: path {rel!r} is not under ROOT {root}") from None
            split = None
            if has_split:
                value = (row["split"] or "").strip().lower()
                if value not in SPLIT_NAMES:
                    raise DataError(f"{where}: column 'split' must be train, val or test, got {value!r}")
                split = SPLIT_NAMES[value]
            if not lister.exists(rel):
                skipped["image file missing"] += 1
                continue
            items.append((rel, label, split))
    return items


def _classes(names: set[str], options: argparse.Namespace) -> list[str]:
    if options.task == "deepfake":
        if options.classes is not None:
            if len(options.classes) != 2:
                raise ConfigError(f"--classes: a deepfake folder has two classes (real, fake), got {options.classes}")
            return list(options.classes)
        lowered = {n.lower(): n for n in names}
        if set(lowered) != {"real", "fake"}:
            raise DataError(f"classes {sorted(names)}: --task deepfake needs folders named real and fake, "
                            "or name them with --classes REAL FAKE")
        return [lowered["real"], lowered["fake"]]
    if options.classes is not None:
        if len(set(options.classes)) != len(options.classes):
            raise ConfigError(f"--classes: names repeat in {options.classes}")
        return list(options.classes)
    return sorted(names)


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index an image folder or CSV for an expression-style (multi-class) or deepfake task."""
    check_fractions(val_fraction=options.val_fraction, test_fraction=options.test_fraction)
    skipped: Counter = Counter()
    if options.csv is not None:
        items = read_csv(resolve_under(root, options.csv), root, skipped)
    else:
        items = scan_folders(root, skipped)
    if not items:
        raise DataError(f"{root}: no images found")
    classes = _classes({c for _, c, _ in items}, options)
    class_id = {c: i for i, c in enumerate(classes)}
    kept = []
    for rel, cls, split in (progress(items, "checking images") if options.check_images else items):
        if cls not in class_id:
            skipped[f"class {cls!r} not in --classes"] += 1
        elif options.check_images and not image_is_readable(root / rel):
            skipped["image cannot be decoded"] += 1
        else:
            kept.append((rel, class_id[cls], split))

    given = {s for _, _, s in kept if s is not None}
    if any(s is None for _, _, s in kept) and given:
        raise DataError(f"{root}: some images have a split and some do not; give every image one or none")
    if not given:
        how = (f"seeded per class (seed {options.seed}): val {options.val_fraction:g}, "
               f"test {options.test_fraction:g}")
        assign = stratified_split([(i, lab) for i, (_, lab, _) in enumerate(kept)],
                                  {"test": options.test_fraction, "val": options.val_fraction}, options.seed)
    elif "val" not in given:
        how = f"given; val carved out of train (seed {options.seed}, fraction {options.val_fraction:g})"
        train = [(i, lab) for i, (_, lab, s) in enumerate(kept) if s == "train"]
        assign = {i: s for i, (_, _, s) in enumerate(kept)}
        assign.update(stratified_split(train, {"val": options.val_fraction}, options.seed))
    else:
        how = "given"
        assign = {i: s for i, (_, _, s) in enumerate(kept)}

    records = []
    for i, (rel, lab, _) in enumerate(kept):
        rec = Record(path=rel, split=assign[i], label=lab)
        if options.task == "deepfake":
            rec.method = "real" if lab == 0 else classes[1]
        records.append(rec)
    header = IndexHeader(
        dataset=root.resolve().name or "folder", task=options.task, root=str(root.resolve()),
        classes=["real", "fake"] if options.task == "deepfake" else classes,
        info={"source": "csv" if options.csv else "folders", "splits": how,
              **({"folder_classes": classes} if options.task == "deepfake" else {})},
    )
    return ImportResult(header=header, records=records, skipped=skipped)
