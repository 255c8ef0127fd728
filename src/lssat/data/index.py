"""The canonical dataset index: JSON Lines, one header line then one record per image or frame.

Layout of an index file::

    {"lssat_index": 1, "dataset": "celeba", "task": "attributes", "root": "../data/celeba",
     "classes": null, "attribute_names": ["5_o_Clock_Shadow", ...], "subgroups": [...], "info": {}}
    {"path": "img_align_celeba/000001.jpg", "split": "train", "attributes": [0, 1, ...]}
    ...

The header names the task kind and the label vocabulary; every following line is a `Record`.
`root` is where record paths are relative to: stored relative to the index file's folder when the
data lies beside it, so an index and its data can move together; absolute otherwise.

Label fields by task kind:

- ``expression`` (multi-class): ``label`` is the class id, in the order of the header's ``classes``.
- ``attributes`` (multi-label): ``attributes`` is a list of 0/1 values, one per ``attribute_names``.
- ``deepfake`` (binary): ``label`` is 0 for real, 1 for fake; ``method`` names the manipulation
  (``"real"`` for originals); ``video_id`` is the full relative path of the source video, never a
  folder name, and ``frame`` the frame index within it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lssat.errors import DataError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
TASKS = ("deepfake", "attributes", "expression")


@dataclass
class Record:
    """One image or video frame of a dataset."""

    path: str
    split: str
    label: int | None = None
    attributes: list[int] | None = None
    method: str | None = None
    video_id: str | None = None
    frame: int | None = None
    box: list[float] | None = None
    landmarks: list[list[float]] | None = None
    subgroup: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON line, leaving out fields that are unset."""
        data = {k: v for k, v in asdict(self).items() if v is not None and v != {}}
        return json.dumps(data, separators=(",", ":"))


@dataclass
class IndexHeader:
    """What an index holds: dataset, task kind and label vocabulary."""

    dataset: str
    task: str
    root: str = "."
    classes: list[str] | None = None
    attribute_names: list[str] | None = None
    subgroups: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {"lssat_index": FORMAT_VERSION, **asdict(self)}
        return json.dumps(data, separators=(",", ":"))


@dataclass
class Index:
    """A loaded index: its header, its records, and the folder its paths are relative to."""

    header: IndexHeader
    records: list[Record]
    root: Path

    def split(self, name: str) -> list[Record]:
        """The records of one split."""
        return [r for r in self.records if r.split == name]

    def resolve(self, record: Record) -> Path:
        """The file a record points to."""
        return self.root / record.path

    def counts(self) -> dict[str, Counter]:
        """Number of records per split and label (the label as a readable name)."""
        out: dict[str, Counter] = {s: Counter() for s in SPLITS}
        for r in self.records:
            out[r.split][label_name(self.header, r)] += 1
        return {s: c for s, c in out.items() if c}


def label_name(header: IndexHeader, record: Record) -> str:
    """A short readable name for a record's label, for counts and reports."""
    if header.task == "deepfake":
        return record.method or ("fake" if record.label else "real")
    if header.task == "expression" and header.classes and record.label is not None:
        return header.classes[record.label]
    if header.task == "attributes":
        return "images"
    return str(record.label)


_RECORD_FIELDS = {f for f in Record.__dataclass_fields__}
_HEADER_FIELDS = {f for f in IndexHeader.__dataclass_fields__}


def validate_header(header: IndexHeader, where: str = "header") -> None:
    """Raise DataError naming the field at fault."""
    if header.task not in TASKS:
        raise DataError(f"{where}: task must be one of {', '.join(TASKS)}, got {header.task!r}")
    if header.task == "expression" and not header.classes:
        raise DataError(f"{where}: an expression index needs 'classes' (names in label order)")
    if header.task == "attributes" and not header.attribute_names:
        raise DataError(f"{where}: an attributes index needs 'attribute_names'")
    if header.task == "deepfake" and header.classes not in (None, ["real", "fake"]):
        raise DataError(f"{where}: a deepfake index has classes ['real', 'fake'], got {header.classes}")


def validate_record(record: Record, header: IndexHeader, where: str) -> None:
    """Raise DataError naming the record (`where`, e.g. 'index.jsonl:12') and the field at fault."""
    if not isinstance(record.path, str) or not record.path:
        raise DataError(f"{where}: field 'path' must be a non-empty relative path")
    if os.path.isabs(record.path) or ".." in Path(record.path).parts:
        raise DataError(f"{where}: field 'path' must be relative to the data root, inside it, got {record.path!r}")
    if record.split not in SPLITS:
        raise DataError(f"{where}: field 'split' must be one of {', '.join(SPLITS)}, got {record.split!r}")
    task = header.task
    if isinstance(record.label, bool):
        raise DataError(f"{where}: field 'label' must be an integer, got {record.label!r}")
    if task == "expression":
        n = len(header.classes or [])
        if not isinstance(record.label, int) or not 0 <= record.label < n:
            raise DataError(f"{where}: field 'label' must be a class id in 0..{n - 1}, got {record.label!r}")
    elif task == "deepfake":
        if record.label not in (0, 1):
            raise DataError(f"{where}: field 'label' must be 0 (real) or 1 (fake), got {record.label!r}")
    elif task == "attributes":
        n = len(header.attribute_names or [])
        a = record.attributes
        if not isinstance(a, list) or len(a) != n or any(isinstance(v, bool) or v not in (0, 1) for v in a):
            raise DataError(f"{where}: field 'attributes' must be a list of {n} values of 0 or 1")
    if record.frame is not None and (not isinstance(record.frame, int) or record.frame < 0):
        raise DataError(f"{where}: field 'frame' must be a non-negative integer, got {record.frame!r}")
    if record.box is not None and (not isinstance(record.box, list) or len(record.box) != 4):
        raise DataError(f"{where}: field 'box' must be [x0, y0, x1, y1], got {record.box!r}")
    if record.landmarks is not None and (
        not isinstance(record.landmarks, list)
        or any(not isinstance(pt, list) or len(pt) != 2 for pt in record.landmarks)
    ):
        raise DataError(f"{where}: field 'landmarks' must be a list of [x, y] points")


def write_index(path: str | os.PathLike, header: IndexHeader, records: Iterable[Record],
                data_root: str | os.PathLike | None = None) -> int:
    """Validate and write an index atomically; returns the number of records written.

    `data_root` (default: the header's root) is stored relative to the index's folder when possible.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if data_root is not None:
        header.root = _relative_root(Path(data_root), path.parent)
    validate_header(header, f"{path}: header")
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(header.to_json() + "\n")
            for n, record in enumerate(records, start=1):
                validate_record(record, header, f"{path}: record {n}")
                f.write(record.to_json() + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _relative_root(root: Path, index_dir: Path) -> str:
    root, index_dir = root.resolve(), index_dir.resolve()
    try:
        return os.path.relpath(root, index_dir)
    except ValueError:  # different drives
        return str(root)


def _parse_line(line: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object")
    return data


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                yield lineno, line


def read_index(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> Index:
    """Read and validate an index. A bad line is reported with its line number and field.

    `data_root` overrides the root stored in the header (for data that moved).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: index file not found")
    lines = _iter_lines(path)
    try:
        lineno, first = next(lines)
    except StopIteration:
        raise DataError(f"{path}: index file is empty") from None
    head = _parse_line(first, f"{path}:{lineno}")
    if head.get("lssat_index") != FORMAT_VERSION:
        raise DataError(f"{path}:{lineno}: not an lssat index header (expected 'lssat_index': {FORMAT_VERSION})")
    unknown = set(head) - _HEADER_FIELDS - {"lssat_index"}
    if unknown:
        raise DataError(f"{path}:{lineno}: unknown header field {sorted(unknown)[0]!r}")
    head.pop("lssat_index")
    try:
        header = IndexHeader(**head)
    except TypeError as err:
        raise DataError(f"{path}:{lineno}: bad header ({err})") from None
    validate_header(header, f"{path}:{lineno}")
    records = []
    for lineno, line in lines:
        where = f"{path}:{lineno}"
        data = _parse_line(line, where)
        unknown = set(data) - _RECORD_FIELDS
        if unknown:
            raise DataError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        for required in ("path", "split"):
            if required not in data:
                raise DataError(f"{where}: missing field {required!r}")
        record = Record(**data)
        validate_record(record, header, where)
        records.append(record)
    if data_root is not None:
        root = Path(data_root)
    else:
        root = Path(header.root)
        if not root.is_absolute():
            root = path.parent / root
    return Index(header=header, records=records, root=root)


def format_counts(index: Index) -> str:
    """A small plain-text table of records per split and label."""
    lines = []
    for split, counter in index.counts().items():
        parts = ", ".join(f"{name}: {count}" for name, count in sorted(counter.items()))
        lines.append(f"  {split:5s} {sum(counter.values()):7d}  ({parts})")
    return "\n".join(lines)
