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
import math
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
        return json.dumps(data, separators=(",", ":"), allow_nan=False)


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
        return json.dumps(data, separators=(",", ":"), allow_nan=False)


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    """A value's JSON type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_names(value: Any, field_name: str, where: str) -> None:
    """None, or a non-empty list of distinct non-empty strings."""
    if value is None:
        return
    if not isinstance(value, list):
        raise DataError(f"{where}: field {field_name!r} must be a list of names, got {_kind(value)} {_short(value)}")
    for name in value:
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: field {field_name!r} must hold non-empty strings, got {_short(name)}")
    if not value:
        raise DataError(f"{where}: field {field_name!r} is an empty list")
    seen = set()
    for name in value:
        if name in seen:
            raise DataError(f"{where}: field {field_name!r} names {name!r} twice")
        seen.add(name)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_header(header: IndexHeader, where: str = "header") -> None:
    """Raise DataError naming the field at fault (its type, then its value)."""
    for name in ("dataset", "task", "root"):
        value = getattr(header, name)
        if not isinstance(value, str):
            raise DataError(f"{where}: field {name!r} must be a string, got {_kind(value)} {_short(value)}")
    for name in ("classes", "attribute_names", "subgroups"):
        _check_names(getattr(header, name), name, where)
    if not isinstance(header.info, dict):
        raise DataError(f"{where}: field 'info' must be an object, got {_kind(header.info)}")
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
    if not isinstance(record.split, str) or record.split not in SPLITS:
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
    if record.label is not None and not _is_int(record.label):
        raise DataError(f"{where}: field 'label' must be an integer, got {_kind(record.label)} {_short(record.label)}")
    if record.attributes is not None and (not isinstance(record.attributes, list)
                                          or not all(_is_int(v) for v in record.attributes)):
        raise DataError(f"{where}: field 'attributes' must be a list of integers, got {_short(record.attributes)}")
    for name in ("method", "video_id"):
        value = getattr(record, name)
        if value is not None and not isinstance(value, str):
            raise DataError(f"{where}: field {name!r} must be a string, got {_kind(value)} {_short(value)}")
    if record.frame is not None and (not _is_int(record.frame) or record.frame < 0):
        raise DataError(f"{where}: field 'frame' must be a non-negative integer, got {record.frame!r}")
    if record.box is not None and (not isinstance(record.box, list) or len(record.box) != 4
                                   or not all(_is_number(v) for v in record.box)):
        raise DataError(f"{where}: field 'box' must be [x0, y0, x1, y1] (4 finite numbers), got {_short(record.box)}")
    if record.landmarks is not None and (
        not isinstance(record.landmarks, list)
        or any(not isinstance(pt, list) or len(pt) != 2 or not all(_is_number(v) for v in pt)
               for pt in record.landmarks)
    ):
        raise DataError(f"{where}: field 'landmarks' must be a list of [x, y] points (finite numbers)")
    if record.subgroup is not None:
        if not isinstance(record.subgroup, dict):
            raise DataError(f"{where}: field 'subgroup' must be an object of name: value, "
                            f"got {_kind(record.subgroup)} {_short(record.subgroup)}")
        for key, value in record.subgroup.items():
            if value is not None and not isinstance(value, (str, int, float)):
                raise DataError(f"{where}: field 'subgroup': value of {key!r} must be a string or number, "
                                f"got {_kind(value)} {_short(value)}")
    if not isinstance(record.extra, dict):
        raise DataError(f"{where}: field 'extra' must be an object, got {_kind(record.extra)}")


def write_index(path: str | os.PathLike, header: IndexHeader, records: Iterable[Record],
                data_root: str | os.PathLike | None = None) -> int:
    """Validate and write an index atomically; returns the number of records written.

    `data_root` (default: the header's root) is stored relative to the index's folder when possible.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a file name for the index")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"{path}: cannot create the index's folder ({_os_reason(err)})") from None
    if data_root is not None:
        header.root = _relative_root(Path(data_root), path.parent)
    validate_header(header, f"{path}: header")
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(_json_line(header, f"{path}: header") + "\n")
            for n, record in enumerate(records, start=1):
                where = f"{path}: record {n}"
                validate_record(record, header, where)
                f.write(_json_line(record, where) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        raise DataError(f"{path}: cannot write the index ({_os_reason(err)})") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return n


def _os_reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _json_line(item: Record | IndexHeader, where: str) -> str:
    """The item's JSON line; DataError for a value strict JSON cannot hold (NaN, infinity, objects)."""
    try:
        return item.to_json()
    except ValueError:
        raise DataError(f"{where}: a value is NaN or infinite, which JSON cannot hold") from None
    except TypeError as err:
        raise DataError(f"{where}: a value cannot be written as JSON ({err})") from None


def _relative_root(root: Path, index_dir: Path) -> str:
    root, index_dir = root.resolve(), index_dir.resolve()
    try:
        return os.path.relpath(root, index_dir)
    except ValueError:  # different drives
        return str(root)


#: Longest line read from an index (bytes); a longer one is not an index line.
MAX_LINE_BYTES = 64 * 2**20


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is too large")
    return value


def _parse_line(line: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    except ValueError as err:  # NaN / Infinity, or an integer too long to convert
        raise DataError(f"{where}: not valid JSON ({err})") from None
    except RecursionError:
        raise DataError(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a JSON object")
    return data


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines; DataError for a line that is not UTF-8 or too long."""
    from lssat.paths import decode_utf8

    try:
        f = open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read the index ({_os_reason(err)})") from None
    with f:
        lineno = 0
        while True:
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except OSError as err:
                raise DataError(f"{path}: cannot read the index ({_os_reason(err)})") from None
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES // 2**20} MiB; "
                                "not an lssat index")
            if b"\x00" in raw:
                raise DataError(f"{path}:{lineno}: binary data (NUL bytes); not an lssat index")
            line = decode_utf8(raw, str(path), DataError, first_line=lineno)
            if line.strip():
                yield lineno, line


def read_index(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> Index:
    """Read and validate an index. A bad line is reported with its line number and field.

    `data_root` overrides the root stored in the header (for data that moved).
    """
    from lssat.paths import file_problem

    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"{path}: index file {problem}")
    lines = _iter_lines(path)
    try:
        lineno, first = next(lines)
    except StopIteration:
        raise DataError(f"{path}: index file is empty") from None
    head = _parse_line(first, f"{path}:{lineno}")
    if not _is_int(head.get("lssat_index")) or head["lssat_index"] != FORMAT_VERSION:
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
