"""Where a DataModule's records and images come from: an index file, or the built-in synthetic faces.

A `Source` is the index header, the records of each split, and per split an image source (see
`lssat.data.loading.ImageSource`) that gives the uint8 image of a record by its position. The
synthetic faces are rendered on the fly, so the rest of the pipeline cannot tell them from files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lssat.data.index import SPLITS, IndexHeader, Record, read_index
from lssat.data.loading import FileImages, ImageSource, as_chw_uint8
from lssat.data.settings import SyntheticConfig
from lssat.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


@dataclass
class Source:
    """An index header, the records of each split, and an image source per split."""

    name: str
    header: IndexHeader
    records: dict[str, list[Record]]
    images: dict[str, ImageSource]


_PARSED: dict[tuple, Source] = {}  # index files parsed in this process (a benchmark worker reads each many times)
_PARSED_MAX = 8


def index_source(path: str, data_root: str | None = None) -> Source:
    """The records of an index file, with their images read from the data root.

    An index of video records (before `lssat preprocess`) is a DataError that says what to run.
    A file read before in this process and unchanged since (same size and modification time) is
    not parsed again.
    """
    import os

    try:
        stat = os.stat(path)
        key: tuple | None = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size, data_root)
    except OSError:
        key = None  # read_index says what is wrong with the path
    if key in _PARSED:
        cached = _PARSED[key]
        return Source(cached.name, cached.header, {s: list(r) for s, r in cached.records.items()}, dict(cached.images))
    source = _read_source(path, data_root)
    if key is not None:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = source
    return Source(source.name, source.header, {s: list(r) for s, r in source.records.items()}, dict(source.images))


def _read_source(path: str, data_root: str | None) -> Source:
    index = read_index(path, data_root)
    videos = [r.path for r in index.records if r.path.lower().endswith(VIDEO_SUFFIXES)]
    if videos:
        raise DataError(f"{path}: {len(videos)} records are videos (e.g. {videos[0]!r}); extract face crops "
                        f"first with `lssat preprocess {path} -o OUT` and use OUT/index.jsonl")
    images = FileImages(index.root)
    return Source(str(path), index.header, {s: index.split(s) for s in SPLITS}, {s: images for s in SPLITS})


def check_images_readable(source: Source) -> None:
    """DataError naming the index and a first path when no image of a split with records can be
    read: a wrong data root or a split of broken files would otherwise train on empty batches.

    Files are tried in record order until one decodes, so a healthy split costs one decode.
    """
    for split in SPLITS:
        images, records = source.images[split], source.records[split]
        if not records or not isinstance(images, FileImages):
            continue
        first: DataError | None = None
        missing = 0
        for position, record in enumerate(records):
            try:
                images(record, position)
                break
            except DataError as err:
                first = first or err
                missing += not (images.root / record.path).exists()
        else:
            n = len(records)
            if missing == n:
                state = "missing" if n > 1 else "missing (its only record)"
                hint = f"; is the data root right? ({images.root})"
            else:
                state = f"missing or unreadable ({missing} missing, {n - missing} unreadable)"
                hint = ""
            raise DataError(f"{source.name}: every image of the {split} split is {state}; first: {first}{hint}")


class SyntheticImages:
    """Images of the built-in synthetic faces, rendered on the fly from a `SyntheticFaces` dataset."""

    def __init__(self, faces: Any) -> None:
        self.faces = faces

    def __call__(self, record: Record, position: int) -> torch.Tensor:
        return as_chw_uint8(self.faces[position][0])

    def load_many(self, records: Sequence[Record], positions: Sequence[int]) -> list[torch.Tensor]:
        """A batch rendered in one vectorised pass (several times faster than one by one)."""
        return [as_chw_uint8(image) for image, _ in _render(self.faces, positions)]

    def landmarks(self, records: Sequence[Record], positions: Sequence[int]) -> list[Any]:
        """The faces' outline landmarks, (27, 2) x, y pixels each, from their geometry (for `lssat.data.sbi`)."""
        return list(self.faces.landmarks(list(positions)))

    def describe(self, record: Record, position: int) -> str:
        return f"synthetic:{record.path}"


def _render(faces: Any, positions: Sequence[int]) -> list[tuple[Any, Record]]:
    many = getattr(faces, "__getitems__", None)
    return list(many(list(positions))) if many is not None else [faces[p] for p in positions]


def synthetic_source(cfg: SyntheticConfig, image_size: int) -> Source:
    """Header, records and image sources of the built-in synthetic faces (rendered at cfg.size or image_size)."""
    try:
        from lssat.data.synthetic import SyntheticFaces
    except ImportError as err:
        raise ConfigError(f"data.synthetic: the built-in synthetic faces are not available ({err})") from None
    reserved = sorted({"layout", "transform", "task", "split", "n", "size", "seed"} & set(cfg.options))
    if reserved:
        raise ConfigError(f"data.synthetic.options: {reserved[0]!r} is set by the DataModule, not an option")
    size = cfg.size or image_size
    sizes = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    records: dict[str, list[Record]] = {}
    images: dict[str, ImageSource] = {}
    header = None
    for split in SPLITS:
        try:
            faces = SyntheticFaces(cfg.task, split, sizes[split], size, cfg.seed, **dict(cfg.options))
        except TypeError as err:  # an option SyntheticFaces does not take
            raise ConfigError(f"data.synthetic.options: {err}") from None
        records[split] = _synthetic_records(faces)
        images[split] = SyntheticImages(faces)
        header = header or faces.header
    if not isinstance(header, IndexHeader):
        raise ConfigError("data.synthetic: SyntheticFaces gives no index header; cannot name its labels")
    return Source("synthetic faces", header, records, images)


def _synthetic_records(faces: Any, chunk: int = 256) -> list[Record]:
    """The records of a SyntheticFaces dataset: listed directly when it can, else rendered in batches
    (the labels are drawn inside the render)."""
    listed = getattr(faces, "records", None)
    if listed is not None:
        return list(listed() if callable(listed) else listed)
    n = len(faces)
    return [record for start in range(0, n, chunk)
            for _, record in _render(faces, range(start, min(n, start + chunk)))]
