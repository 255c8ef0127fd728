"""`SyntheticFaces`: the synthetic benchmark as a torch Dataset, rendered on the fly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lssat.data.index import IndexHeader, Record
from lssat.data.synthetic.deepfakes import METHODS
from lssat.data.synthetic.generator import (DEFAULT_CLIP_LEN, DEFAULT_DARK_FRACTION, SyntheticSpec,
                                            make_header, record_items, render_items)
from lssat.errors import ConfigError


class SyntheticFaces(Dataset):
    """`n` synthetic faces of one split; item i is (image, Record), the same on every call.

    The image is a uint8 tensor (3, size, size) (`layout="chw"`) or a uint8 numpy array
    (size, size, 3) (`layout="hwc"`), exactly as `generate` and the written JPEG files give it.
    A DataLoader fetches a whole batch with one vectorised render (`__getitems__`); pass
    `collate_fn=SyntheticFaces.collate` to get (stacked images, list of records).
    """

    def __init__(self, task: str, split: str = "train", n: int = 1000, size: int = 64, seed: int = 0, *,
                 dark_fraction: float = DEFAULT_DARK_FRACTION, clip_len: int = DEFAULT_CLIP_LEN,
                 methods: Sequence[str] = METHODS, difficulty: Any = "default", domain: str = "default",
                 layout: str = "chw",
                 transform: Callable[[Any], Any] | None = None):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"SyntheticFaces: n must be a non-negative integer, got {n!r}")
        if layout not in ("chw", "hwc"):
            raise ConfigError(f"SyntheticFaces: layout must be 'chw' or 'hwc', got {layout!r}")
        self.spec = SyntheticSpec(task, size, seed, split, dark_fraction, clip_len, tuple(methods), difficulty,
                                  domain)
        self.n, self.layout, self.transform = int(n), layout, transform

    @property
    def header(self) -> IndexHeader:
        """The index header that describes these records (task, classes, attribute names)."""
        return make_header(self.spec)

    def __len__(self) -> int:
        return self.n

    def records(self) -> list[Record]:
        """The records of all items, without drawing them (labels come from the sampled faces)."""
        chunk = 4096
        return [r for lo in range(0, self.n, chunk)
                for r in record_items(self.spec, range(lo, min(self.n, lo + chunk)))]

    def landmarks(self, indices: Sequence[int]) -> np.ndarray:
        """(n, 27, 2) face outline points (x, y pixels: jaw and brows of dlib's 68-point scheme) of
        items `indices`, from the faces' geometry, without drawing them."""
        from lssat.data.synthetic.landmarks import item_landmarks

        return item_landmarks(self.spec, self._check(indices))

    def _check(self, index: Sequence[int]) -> np.ndarray:
        idx = np.asarray(index, np.int64).reshape(-1)
        idx = np.where(idx < 0, idx + self.n, idx)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"SyntheticFaces: index out of range for {self.n} items")
        return idx

    def _item(self, image: np.ndarray, record: Record) -> tuple[Any, Record]:
        out: Any = torch.from_numpy(image).permute(2, 0, 1).contiguous() if self.layout == "chw" else image
        if self.transform is not None:
            out = self.transform(out)
        return out, record

    def __getitem__(self, i: int) -> tuple[Any, Record]:
        got = render_items(self.spec, self._check([i]))
        return self._item(got.images[0], got.records[0])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Record]]:
        got = render_items(self.spec, self._check(indices))
        return [self._item(img, rec) for img, rec in zip(got.images, got.records)]

    @staticmethod
    def collate(batch: Sequence[tuple[Any, Record]]) -> tuple[Any, list[Record]]:
        """Stack the images (tensors or arrays) and keep the records as a list."""
        images = [b[0] for b in batch]
        stacked = torch.stack(images) if isinstance(images[0], torch.Tensor) else np.stack(images)
        return stacked, [b[1] for b in batch]
