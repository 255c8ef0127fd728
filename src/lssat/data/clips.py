"""Clips of T frames per video for clip-level models (``data.clip`` in a config).

The records of a split are grouped by video (the full ``video_id``; a record without one is a video
of one frame) and ordered by frame index. A clip is T records of one video, ``stride`` apart in that
order, from a start position; a video shorter than the clip's span repeats its last frame. This works
on any frame index (`lssat preprocess` writes N evenly spaced frames per video, so ``stride: 1``
means consecutive extracted frames) and on the built-in synthetic deepfakes (clips of ``clip_len``
consecutive frames).

- Training: every epoch, one clip per video at a random start, videos in a random order; the start
  and the clip's augmentation are drawn from a generator seeded by (data seed, epoch, the clip's
  place in the epoch), so they do not depend on workers or on what came before.
- Evaluation: ``eval_clips`` evenly spaced starts per video (first and last possible start included;
  fewer when the video has fewer distinct starts).
- Augmentation: the split's transform runs once on the stacked (T, 3, H, W) clip, so one draw of
  crop, flip and colour jitter applies to every frame of it (torchvision v2 treats leading
  dimensions as a batch of images sharing the parameters).

A batch follows the DataModule's schema with "image" uint8 (B, T, 3, S, S), one row per clip:
"frame" and "index" are those of the clip's first record, "frames" (B, T) the frame index of each.
A clip with an unreadable frame is skipped as a whole (or raises in strict mode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from lssat.confkit import check_keys, field_names
from lssat.data.index import Record
from lssat.data.loading import FaceCollate, ImageSource
from lssat.errors import ConfigError, DataError


@dataclass
class ClipConfig:
    """``data.clip``: frames per clip, stride between them, clips per video at evaluation."""

    frames: int = 8
    stride: int = 1
    eval_clips: int = 4

    def __post_init__(self) -> None:
        for key in ("frames", "stride", "eval_clips"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"data.clip.{key} must be an integer >= 1, got {value!r}")

    @classmethod
    def from_value(cls, value: Any) -> ClipConfig | None:
        """From the ``data.clip`` mapping (None stays None); unknown keys are a ConfigError."""
        if value is None or isinstance(value, ClipConfig):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"data.clip must be a mapping (frames, stride, eval_clips), got {value!r}")
        check_keys(value, field_names(cls), "data.clip")
        return cls(**dict(value))

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def videos_of(records: Sequence[Record], positions: Sequence[int] | None = None) -> list[list[int]]:
    """Record positions per video (first appearance order), each ordered by frame index; only the
    records at `positions` when given."""
    groups: dict[Any, list[int]] = {}
    chosen = range(len(records)) if positions is None else sorted(int(p) for p in positions)
    for position in chosen:
        record = records[position]
        key = record.video_id or ("", position)
        groups.setdefault(key, []).append(position)
    frame = [(-1 if r.frame is None else int(r.frame)) for r in records]
    return [sorted(members, key=lambda p: (frame[p], p)) for members in groups.values()]


def clip_positions(video: Sequence[int], start: int, frames: int, stride: int) -> list[int]:
    """The record positions of the clip of `video` starting at `start` (the last frame repeats)."""
    last = len(video) - 1
    return [video[min(start + j * stride, last)] for j in range(frames)]


def last_start(length: int, frames: int, stride: int) -> int:
    """The last start whose clip fits in a video of `length` frames (0 when none fits)."""
    return max(0, length - 1 - (frames - 1) * stride)


def eval_starts(length: int, cfg: ClipConfig) -> list[int]:
    """`cfg.eval_clips` evenly spaced distinct starts over a video of `length` frames."""
    hi = last_start(length, cfg.frames, cfg.stride)
    return sorted({int(round(s)) for s in np.linspace(0, hi, cfg.eval_clips)})


def draw_seed(seed: int, epoch: int, place: int) -> int:
    """The seed of one training clip's draws (start and augmentation)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(place)]).generate_state(1)[0])


class ClipTrainSampler(Sampler):
    """One clip per video per epoch: yields (video, seed) in a random video order (seeded by epoch).

    Lightning calls `set_epoch`; without it each `__iter__` moves to the next epoch.
    """

    def __init__(self, num_videos: int, seed: int = 0) -> None:
        self.num_videos = num_videos
        self.seed = seed
        self.epoch = 0
        self._explicit = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._explicit = True

    def __len__(self) -> int:
        return self.num_videos

    def __iter__(self):
        epoch = self.epoch
        if not self._explicit:
            self.epoch += 1
        order = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, epoch]).permutation(self.num_videos)
        for place, video in enumerate(order.tolist()):
            yield (video, draw_seed(self.seed, epoch, place))


class ClipEvalSampler(Sampler):
    """The evaluation clips, in order: (video, start) pairs."""

    def __init__(self, clips: Sequence[tuple[int, int]]) -> None:
        self.clips = list(clips)

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self):
        return iter(self.clips)


class ClipDataset(Dataset):
    """Clips of one split. Keys: (video, seed) in training (random start), (video, start) otherwise.

    `cache`: keep decoded frames in memory (small images: the synthetic faces are rendered once).
    `positions`: the records to use (the training subset of `data.train_fraction`); default all.
    """

    def __init__(self, frames: Any, cfg: ClipConfig, transform: Callable[[torch.Tensor], torch.Tensor] | None,
                 train: bool, cache: bool = False, positions: Sequence[int] | None = None) -> None:
        self.frames = frames  # the split's FaceDataset (records, image source, item(), skip flags)
        self.cfg = cfg
        self.transform = transform
        self.train = train
        self.videos = videos_of(frames.records, positions)
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.videos)

    def eval_clips(self) -> list[tuple[int, int]]:
        """(video, start) of every evaluation clip."""
        return [(v, s) for v, members in enumerate(self.videos) for s in eval_starts(len(members), self.cfg)]

    def _load(self, positions: Sequence[int]) -> dict[int, torch.Tensor | DataError]:
        want = [p for p in dict.fromkeys(positions) if self.cache is None or p not in self.cache]
        images: ImageSource = self.frames.images
        records = self.frames.records
        got: dict[int, torch.Tensor | DataError] = {}
        if want:
            load_many = getattr(images, "load_many", None)
            if load_many is not None:
                values = load_many([records[p] for p in want], want)
            else:
                values = []
                for p in want:
                    try:
                        values.append(images(records[p], p))
                    except DataError as err:
                        values.append(err)
            for p, v in zip(want, values):
                got[p] = v
                if self.cache is not None and not isinstance(v, DataError):
                    self.cache[p] = v
        if self.cache is not None:
            got.update({p: self.cache[p] for p in positions if p in self.cache})
        return got

    def _clip(self, key: tuple[int, int]) -> tuple[int, list[int], int | None]:
        video, second = key
        members = self.videos[video]
        if not self.train:
            return video, clip_positions(members, second, self.cfg.frames, self.cfg.stride), None
        hi = last_start(len(members), self.cfg.frames, self.cfg.stride)
        start = int(np.random.default_rng(second).integers(0, hi + 1))
        return video, clip_positions(members, start, self.cfg.frames, self.cfg.stride), second

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any] | None:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[dict[str, Any] | None]:
        clips = [self._clip(tuple(k)) for k in keys]
        loaded = self._load([p for _, positions, _ in clips for p in positions])
        out = []
        for _, positions, seed in clips:
            bad = next((p for p in positions if isinstance(loaded[p], DataError)), None)
            if bad is not None:
                out.append(self.frames._failed(bad, loaded[bad]))
                continue
            clip = torch.stack([loaded[p] for p in positions])
            if self.transform is not None:
                if seed is None:
                    clip = self.transform(clip)
                else:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        clip = self.transform(clip)
            first = positions[0]
            item = self.frames.item(self.frames.records[first], first, clip)
            item["frames"] = [-1 if self.frames.records[p].frame is None else int(self.frames.records[p].frame)
                              for p in positions]
            out.append(item)
        return out


class ClipCollate(FaceCollate):
    """`FaceCollate` for clips: "image" (B, T, 3, S, S) and "frames" (B, T)."""

    def __init__(self, frames: int, image_size: int, num_attributes: int = 0, subgroup_keys: Sequence[str] = ()):
        super().__init__(image_size, num_attributes, subgroup_keys)
        self.frames = frames

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        items = [x for x in items if x is not None]
        batch = super().__call__(items)
        if not items:
            batch["image"] = torch.empty((0, self.frames, 3, self.image_size, self.image_size), dtype=torch.uint8)
        batch["frames"] = torch.tensor([x["frames"] for x in items], dtype=torch.long).reshape(len(items),
                                                                                               self.frames)
        return batch
