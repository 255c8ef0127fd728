"""AffectNet: facial expression classes in AffectNet's own code order.

Two layouts are read:

- legacy: ``ROOT/training.csv`` and ``ROOT/validation.csv`` (columns subDirectory_filePath, face_x,
  face_y, face_width, face_height, facial_landmarks, expression, valence, arousal) with the images
  under ``ROOT/Manually_Annotated_Images/`` (option --images);
- per-image: ``ROOT/{train_set,val_set}/images/<id>.jpg`` with ``annotations/<id>_exp.npy`` (and
  optionally ``_val.npy``, ``_aro.npy``, ``_lnd.npy``).

The balanced validation set (validation.csv / val_set) becomes the TEST split; a seeded, per-class
validation split is carved out of the training set (--val-fraction).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import (FileLister, add_split_options, base_and_prefix, check_fractions,
                                        image_is_readable, progress, require_dir, resolve_under,
                                        stratified_split)
from lssat.data.index import IndexHeader, Record
from lssat.errors import DataError
from lssat.paths import file_problem, read_text

NAME = "affectnet"
HELP = "AffectNet (training.csv/validation.csv or train_set/val_set): 8 or 7 expression classes"

# AffectNet's expression codes, in code order. Never sort these.
CODES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
         "None", "Uncertain", "No-Face")
LEGACY_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                  "facial_landmarks", "expression", "valence", "arousal")
N_LANDMARKS = 68


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """AffectNet options."""
    parser.add_argument("--classes", type=int, choices=(7, 8), default=8,
                        help="8 keeps codes 0..7; 7 also drops Contempt (default 8)")
    parser.add_argument("--layout", choices=("auto", "legacy", "per-image"), default="auto",
                        help="legacy CSVs or per-image .npy annotations (default: detect)")
    parser.add_argument("--images", default="Manually_Annotated_Images",
                        help="legacy layout: image folder, relative to ROOT or absolute "
                             "(default Manually_Annotated_Images)")
    parser.add_argument("--check-images", action="store_true",
                        help="open every image and skip (and count) those that cannot be decoded")
    add_split_options(parser, val=0.1, test=None)


def class_names(n_classes: int) -> list[str]:
    """The kept class names in code order: label id == AffectNet code."""
    return list(CODES[:n_classes])


def _drop_reason(code: int, n_classes: int) -> str | None:
    if code < n_classes:
        return None
    if code == 7:
        return "expression 7 (Contempt) dropped by --classes 7"
    return f"expression {code} ({CODES[code]})"


# --------------------------------------------------------------------------- legacy CSVs


def _number(value: str, where: str, column: str) -> float:
    """A column's number (NaN and infinity included); DataError naming the line and column otherwise."""
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{where}: column {column!r} must be a number, got {value[:30]!r}") from None


def _float(value: str, where: str, column: str) -> float:
    """A column's number; DataError naming the line and column unless it is a finite number."""
    number = _number(value, where, column)
    if not math.isfinite(number):
        raise DataError(f"{where}: column {column!r} must be a finite number, got {value.strip()[:30]!r}")
    return number


def _affect(values: dict[str, float], skipped: Counter) -> bool:
    """Whether valence and arousal are finite; a record with NaN or infinity is skipped and counted
    (JSON, and so an index, cannot hold them)."""
    if all(math.isfinite(v) for v in values.values()):
        return True
    skipped["valence or arousal not a finite number"] += 1
    return False


def _landmarks(value: str) -> list[list[float]] | None:
    """68 (x, y) points from AffectNet's ';'-separated list; None when absent, malformed or not finite."""
    parts = [p for p in value.strip().split(";") if p.strip()]
    if len(parts) != 2 * N_LANDMARKS:
        return None
    try:
        v = [float(p) for p in parts]
    except ValueError:
        return None
    if not all(math.isfinite(x) for x in v):
        return None
    return [[v[2 * i], v[2 * i + 1]] for i in range(N_LANDMARKS)]


def read_legacy_csv(path: Path, n_classes: int, skipped: Counter,
                    stats: Counter) -> list[tuple[str, int, Record]]:
    """Rows of a legacy AffectNet CSV as (image path, code, record without split)."""
    out = []
    text = read_text(path, "AffectNet CSV")
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if head is None:
            raise DataError(f"{path}: empty file")
        head = [h.strip() for h in head]
        missing = [c for c in LEGACY_COLUMNS if c not in head]
        if missing:
            raise DataError(f"{path}: not an AffectNet CSV (missing column {missing[0]!r})")
        col = {c: head.index(c) for c in LEGACY_COLUMNS}
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{path}:{lineno}"
            if len(row) < len(head):
                raise DataError(f"{where}: expected {len(head)} columns, got {len(row)}")
            raw = row[col["expression"]].strip()
            try:
                code = int(raw)
            except ValueError:
                raise DataError(f"{where}: column 'expression' must be a code 0..10, got {raw!r}") from None
            if not 0 <= code < len(CODES):
                raise DataError(f"{where}: column 'expression' must be a code 0..10, got {code}")
            reason = _drop_reason(code, n_classes)
            if reason:
                skipped[reason] += 1
                continue
            x, y, w, h = (_float(row[col[c]], where, c) for c in ("face_x", "face_y", "face_width", "face_height"))
            affect = {c: _number(row[col[c]], where, c) for c in ("valence", "arousal")}
            if not _affect(affect, skipped):
                continue
            landmarks = _landmarks(row[col["facial_landmarks"]])
            if landmarks is None:
                stats["records without landmarks"] += 1
            rel = row[col["subDirectory_filePath"]].strip().replace("\\", "/")
            record = Record(
                path=rel, split="train", label=code, box=[x, y, x + w, y + h], landmarks=landmarks,
                extra=affect,
            )
            out.append((rel, code, record))
    return out


def _legacy(root: Path, options: argparse.Namespace, skipped: Counter, stats: Counter):
    images = require_dir(resolve_under(root, options.images), "AffectNet image folder (--images)")
    base, prefix = base_and_prefix(root, images)
    lister = FileLister(images)
    parts = {}
    for split, name in (("train", "training.csv"), ("test", "validation.csv")):
        path = root / name
        if not path.exists():
            raise DataError(f"{path}: AffectNet legacy CSV not found")
        rows = read_legacy_csv(path, options.classes, skipped, stats)
        kept = []
        for rel, code, record in progress(rows, name):
            if not lister.exists(rel):
                skipped["image file missing"] += 1
                continue
            if options.check_images and not image_is_readable(images / rel):
                skipped["image cannot be decoded"] += 1
                continue
            record.path, record.split = prefix + rel, split
            kept.append((record, code))
        parts[split] = kept
    return base, parts


# --------------------------------------------------------------------------- per-image .npy layout


def _npy_array(path: Path):
    """The array in a .npy file; DataError naming the file when it is not a readable .npy."""
    import numpy as np

    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"{path}: annotation file {problem}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise DataError(f"{path}: not a readable .npy file ({reason})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise DataError(f"{path}: not a .npy file (an .npz archive)")
    return array


def _npy_scalar(path: Path) -> str:
    """The one value of a .npy annotation (a 0-d array, often of strings), as text."""
    array = _npy_array(path)
    if array.size != 1:
        raise DataError(f"{path}: expected one value, got an array of shape {array.shape}")
    value = array.reshape(()).item()
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _npy_number(path: Path) -> float:
    """A .npy annotation holding one number (a valence or arousal)."""
    raw = _npy_scalar(path)
    try:
        return float(raw)
    except ValueError:
        raise DataError(f"{path}: expected a number, got {raw[:30]!r}") from None


def _per_image(root: Path, options: argparse.Namespace, skipped: Counter, stats: Counter):
    import numpy as np

    parts = {}
    for split, folder in (("train", "train_set"), ("test", "val_set")):
        images = require_dir(root / folder / "images", f"AffectNet {folder}/images")
        annotations = require_dir(root / folder / "annotations", f"AffectNet {folder}/annotations")
        ann_files = set(p.name for p in annotations.iterdir())
        image_stems = {p.stem for p in images.iterdir()}
        orphans = sum(1 for a in ann_files if a.endswith("_exp.npy") and a[:-8] not in image_stems)
        if orphans:
            skipped["annotation without image file"] += orphans
        kept = []
        for img in progress(sorted(images.iterdir()), folder):
            if not img.is_file():
                continue
            if img.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                skipped["not an image file"] += 1
                continue
            stem = img.stem
            if f"{stem}_exp.npy" not in ann_files:
                skipped["no _exp.npy annotation"] += 1
                continue
            raw = _npy_scalar(annotations / f"{stem}_exp.npy")
            try:
                code = int(float(raw))
            except ValueError:
                raise DataError(f"{annotations / (stem + '_exp.npy')}: expression code expected, got {raw!r}") from None
            if not 0 <= code < len(CODES):
                raise DataError(f"{annotations / (stem + '_exp.npy')}: expression code must be 0..10, got {code}")
            reason = _drop_reason(code, options.classes)
            if reason:
                skipped[reason] += 1
                continue
            if options.check_images and not image_is_readable(img):
                skipped["image cannot be decoded"] += 1
                continue
            extra = {}
            for key, suffix in (("valence", "_val.npy"), ("arousal", "_aro.npy")):
                if stem + suffix in ann_files:
                    extra[key] = _npy_number(annotations / (stem + suffix))
            if not _affect(extra, skipped):
                continue
            landmarks = None
            if stem + "_lnd.npy" in ann_files:
                lnd = annotations / (stem + "_lnd.npy")
                array = _npy_array(lnd)
                try:
                    v = array.astype(float).reshape(-1)
                except (ValueError, TypeError):
                    raise DataError(f"{lnd}: landmarks must be numbers") from None
                if v.size == 2 * N_LANDMARKS and np.isfinite(v).all():
                    landmarks = v.reshape(N_LANDMARKS, 2).tolist()
            if landmarks is None:
                stats["records without landmarks"] += 1
            kept.append((Record(path=f"{folder}/images/{img.name}", split=split, label=code,
                                landmarks=landmarks, extra=extra), code))
        parts[split] = kept
    return root.resolve(), parts


def detect_layout(root: Path) -> str:
    """'legacy' or 'per-image', from what ROOT holds."""
    if (root / "training.csv").is_file() or (root / "validation.csv").is_file():
        return "legacy"
    if (root / "train_set").is_dir() or (root / "val_set").is_dir():
        return "per-image"
    raise DataError(f"{root}: not an AffectNet folder (no training.csv/validation.csv nor train_set/val_set)")


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index AffectNet; labels are AffectNet's codes, class names in code order."""
    check_fractions(val_fraction=options.val_fraction)
    layout = detect_layout(root) if options.layout == "auto" else options.layout
    skipped: Counter = Counter()
    stats: Counter = Counter()
    reader = _legacy if layout == "legacy" else _per_image
    base, parts = reader(root, options, skipped, stats)

    train = parts["train"]
    assign = stratified_split([(i, code) for i, (_, code) in enumerate(train)],
                              {"val": options.val_fraction}, seed=options.seed)
    for i, (r, _) in enumerate(train):
        r.split = assign[i]
    records = [r for r, _ in train] + [r for r, _ in parts["test"]]
    header = IndexHeader(
        dataset="affectnet", task="expression", root=str(base), classes=class_names(options.classes),
        info={"layout": layout, "test_split": "the official validation set",
              "val_split": f"{options.val_fraction:g} of training, per class, seed {options.seed}",
              **{k: v for k, v in stats.items()}},
    )
    return ImportResult(header=header, records=records, skipped=skipped)
