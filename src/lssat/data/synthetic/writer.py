"""Writing a synthetic dataset to disk: JPEG files, optional clip videos, and its index."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lssat.data.formats import ImportResult
from lssat.data.index import SPLITS, Record, write_index
from lssat.data.synthetic.deepfakes import METHODS
from lssat.data.synthetic.generator import (DEFAULT_CLIP_LEN, DEFAULT_DARK_FRACTION, SyntheticSpec,
                                            iter_batches, make_header)
from lssat.data.synthetic.video import write_clip_video
from lssat.errors import ConfigError


def write_synthetic(out_dir: str | os.PathLike, task: str, sizes: Mapping[str, int], size: int = 64,
                    seed: int = 0, *, dark_fraction: float = DEFAULT_DARK_FRACTION,
                    clip_len: int = DEFAULT_CLIP_LEN, methods: Sequence[str] = METHODS,
                    difficulty: Any = "default", domain: str = "default", videos: bool = False, video_records: bool = False,
                    index_path: str | os.PathLike | None = None, progress: bool = True) -> ImportResult:
    """Write the JPEG files of each split (`sizes`: split -> number of images) under `out_dir`.

    Files go to ``out_dir/<task>/<split>/...``, so several tasks can share one folder. Returns the
    index header and records (paths relative to `out_dir`); the files hold exactly the images
    `generate` returns. `videos`: also write each deepfake clip as a video file at its
    ``video_id``. `video_records`: write only the videos and return one record per video (path =
    video_id, no frame), as `lssat index ffpp` does, for `lssat preprocess`. `index_path`: also
    write the index there.
    """
    from tqdm import tqdm

    unknown = sorted(set(sizes) - set(SPLITS))
    if unknown:
        raise ConfigError(f"synthetic: unknown split {unknown[0]!r}; splits are {', '.join(SPLITS)}")
    for split, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"synthetic: number of {split} images must be a non-negative integer, "
                              f"got {n!r}")
    if video_records and task != "deepfake":
        raise ConfigError(f"synthetic: only the deepfake task has videos, not {task!r}")
    videos = videos or video_records
    out_dir = Path(out_dir)
    specs = [SyntheticSpec(task, size, seed, s, dark_fraction, clip_len, tuple(methods), difficulty, domain)
             for s in SPLITS]
    header = make_header(specs[0])
    records: list[Record] = []
    made: set[Path] = set()
    with tqdm(total=sum(sizes.values()), unit="img", desc=f"synthetic {task}", disable=not progress) as bar:
        for spec in specs:
            clips: dict[str, tuple[Record, list[np.ndarray]]] = {}
            for batch in iter_batches(spec, 0, sizes.get(spec.split, 0)):
                for image, record, data in zip(batch.images, batch.records, batch.jpeg):
                    if not video_records:
                        path = out_dir / record.path
                        if path.parent not in made:
                            path.parent.mkdir(parents=True, exist_ok=True)
                            made.add(path.parent)
                        path.write_bytes(data)
                        records.append(record)
                    if videos and record.video_id is not None:
                        frames = clips.setdefault(record.video_id, (record, []))[1]
                        frames.append(image)
                        if len(frames) == spec.clip_len:
                            _write_clip(out_dir, *clips.pop(record.video_id), records, video_records)
                bar.update(len(batch.records))
            for first, frames in clips.values():  # the last clip of a split may be short
                _write_clip(out_dir, first, frames, records, video_records)
    if index_path is not None:
        write_index(index_path, header, records, data_root=out_dir)
    return ImportResult(header=header, records=records, skipped=Counter())


def _write_clip(out_dir: Path, record: Record, frames: list[np.ndarray], records: list[Record],
                as_record: bool) -> None:
    """Write one clip's video (`record` is one of its frames); list a video record if asked."""
    write_clip_video(out_dir / record.video_id, np.stack(frames))
    if as_record:
        records.append(Record(path=record.video_id, split=record.split, label=record.label,
                              method=record.method, video_id=record.video_id, subgroup=record.subgroup))
