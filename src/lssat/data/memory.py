"""The in-memory path (``data.in_memory``): each split's images decoded once, batches cut from memory.

`MemoryBatches` is a map-style dataset whose ``__getitems__`` returns a whole batch dict (the
schema of `lssat.data.datamodule`), so a `FaceDataLoader` with `passthrough` as its collate drives it
with the DataModule's own samplers. On its first batch it decodes every position it was planned
for, through the split's `FaceDataset` image source (the same decoding, the same skipping, warning
and counting of unreadable images, the same strict-mode error), into one contiguous uint8 tensor:

- evaluation splits: the eval transform's output (resize + centre crop), (N, 3, S, S), so eval
  batches are bit for bit those of the per-item path;
- the train split: the decoded images themselves (the random crop is drawn on the decoded image,
  as the per-item path does), (N, 3, H, W); images of different sizes are zero-padded to the
  largest and their own sizes kept. Each batch is then augmented at once (`BatchAugment`) with
  per-sample parameters drawn from a generator seeded by the batch's first draw (seed, epoch, place:
  `lssat.data.sampling.batch_seed`) when the positions come from the training sampler, so a
  resumed run augments exactly as an uninterrupted one; plain positions draw from the dataset's
  own seeded `torch.Generator` instead, whose state `state_dict` / `load_state_dict` save and restore.

`plan_in_memory` decides, for ``in_memory: auto``, which splits take this path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from lssat.data.batch_augment import BatchAugment, unbatched_options
from lssat.data.loading import FaceDataset, FileImages
from lssat.data.sampling import batch_seed
from lssat.data.transforms import AugmentConfig, eval_transform
from lssat.errors import DataError
from lssat.paths import file_problem

MAX_IMAGE_SIZE = 128  # auto mode: only for image_size up to this
_CHUNK = 256
_HEADER_SAMPLE = 64  # train-store estimate: image sizes read from this many file headers
# Decoded files kept per process, keyed by (path, mtime, size): a benchmark worker trains many cells
# on the same small datasets, and decoding them again costs a cell more than a second.
_DECODED: dict[tuple[str, int, int], torch.Tensor] = {}
_DECODED_LIMIT = int(float(os.environ.get("LSSAT_DECODE_CACHE_MB", "512")) * 2**20)
_decoded_bytes = 0


def passthrough(batch: dict[str, Any]) -> dict[str, Any]:
    """The collate of a loader over `MemoryBatches` (its ``__getitems__`` already gives the batch)."""
    return batch


class MemoryBatches(Dataset):
    """Batches of one split cut from its images held in memory (see the module docstring).

    `positions`: the record positions to decode on first use (the ones the split's sampler can
    draw); others are decoded on demand if a sampler asks for them. `augment`: None for an
    evaluation split (store the eval transform's output), else the training AugmentConfig.
    """

    def __init__(self, dataset: FaceDataset, positions: Sequence[int] | np.ndarray, image_size: int, *,
                 augment: AugmentConfig | None = None, eval_crop: AugmentConfig | None = None, seed: int = 0,
                 tail: bool = False) -> None:
        self.dataset = dataset
        self.image_size = image_size
        self.planned = np.asarray(positions, dtype=np.int64)
        self.train = augment is not None
        self.prepare = None if self.train else eval_transform(image_size, eval_crop)
        self.augment = BatchAugment(image_size, augment, tail=tail) if self.train else None
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        n = len(dataset)
        self._row = torch.full((n,), -1, dtype=torch.int64)   # row of each position in the store
        self._tried = torch.zeros(n, dtype=torch.bool)         # decoded (or failed) already
        self.images = torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
        self.sizes = torch.empty((0, 2), dtype=torch.int64)   # (H, W) of each stored image
        self._loaded = False
        self.blend = None  # `data.sbi` (train split): a `lssat.data.sbi.SelfBlend`, applied before augmenting
        self._columns(dataset)

    def _columns(self, dataset: FaceDataset) -> None:
        items = [dataset.item(r, p, None) for p, r in enumerate(dataset.records)]
        self._label = torch.tensor([x["label"] for x in items], dtype=torch.long)
        self._attributes = torch.tensor([x["attributes"] for x in items], dtype=torch.long) \
            .reshape(len(items), dataset.num_attributes)
        self._frame = torch.tensor([x["frame"] for x in items], dtype=torch.long)
        self._text = {key: [x[key] for x in items] for key in ("video_id", "method", "path")}
        self._subgroup = {k: [x["subgroup"][k] for x in items] for k in dataset.subgroup_keys}

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def loaded(self) -> bool:
        """Whether the planned positions have been decoded."""
        return self._loaded

    @property
    def nbytes(self) -> int:
        """Bytes of image data held."""
        return self.images.numel()

    def load(self) -> None:
        """Decode the planned positions not decoded yet (called by the first batch)."""
        if len(self.planned):
            self._decode(self.planned[~self._tried[torch.as_tensor(self.planned)].numpy()])
        self._loaded = True

    def _decode(self, positions: Sequence[int] | np.ndarray) -> None:
        positions = [int(p) for p in positions]
        if not positions:
            return
        ds, images = self.dataset, []
        load_many = getattr(ds.images, "load_many", None)
        kept = []
        for start in range(0, len(positions), _CHUNK):
            chunk = positions[start:start + _CHUNK]
            if load_many is not None:
                decoded = load_many([ds.records[p] for p in chunk], chunk)
            else:
                decoded = [_decode_one(ds, p) for p in chunk]
            for p, x in zip(chunk, decoded):
                self._tried[p] = True
                if isinstance(x, DataError):
                    ds._failed(p, x)  # counts, warns once, or raises in strict mode
                    continue
                images.append(self.prepare(x) if self.prepare is not None else x.contiguous())
                kept.append(p)
        self._append(kept, images)

    def _append(self, positions: list[int], images: list[torch.Tensor]) -> None:
        if not images:
            return
        sizes = torch.tensor([x.shape[-2:] for x in images], dtype=torch.int64).reshape(-1, 2)
        all_sizes = torch.cat([self.sizes, sizes])
        height, width = (int(v) for v in all_sizes.max(dim=0).values)
        start = len(self.sizes)
        store = torch.zeros((start + len(images), 3, height, width), dtype=torch.uint8)
        if start:
            store[:start, :, :self.images.shape[-2], :self.images.shape[-1]] = self.images
        for i, x in enumerate(images):
            store[start + i, :, :x.shape[-2], :x.shape[-1]] = x
        self.images, self.sizes = store, all_sizes
        self._row[torch.tensor(positions)] = torch.arange(start, start + len(positions))

    # ---------------------------------------------------------------- batches
    def __getitems__(self, positions: Sequence[int]) -> dict[str, Any]:
        """The batch dict of these positions (skipped images left out, as the per-item path does)."""
        seed = batch_seed(self.seed, positions) if self.augment is not None else None
        pos = torch.as_tensor([int(p) for p in positions], dtype=torch.long)
        if not self.loaded:
            self.load()
        if len(pos) and not bool(self._tried[pos].all()):
            self._decode(torch.unique(pos[~self._tried[pos]]).tolist())
        rows = self._row[pos] if len(pos) else pos
        if bool((rows < 0).any()):
            pos, rows = pos[rows >= 0], rows[rows >= 0]
        images = self.images.index_select(0, rows)
        label, method = self._label[pos], [self._text["method"][i] for i in pos.tolist()]
        if self.blend is not None and len(pos):
            images, label, method = self._blended(images, self.sizes.index_select(0, rows), pos, label, method,
                                                  seed)
        if self.augment is not None:
            sizes = self.sizes.index_select(0, rows)
            generator = self.generator if seed is None else torch.Generator().manual_seed(seed)
            images = self.augment(images, sizes[:, 0], sizes[:, 1], generator)
        elif images.shape[-1] != self.image_size:  # cannot happen: eval images all have the output size
            raise DataError(f"in-memory eval images are {tuple(images.shape[-2:])}, expected {self.image_size}")
        index = pos.tolist()
        return {
            "image": images,
            "label": label,
            "attributes": self._attributes[pos],
            "video_id": [self._text["video_id"][i] for i in index],
            "method": method,
            "subgroup": {k: [column[i] for i in index] for k, column in self._subgroup.items()},
            "frame": self._frame[pos],
            "index": pos,
            "path": [self._text["path"][i] for i in index],
        }

    def _blended(self, images: torch.Tensor, sizes: torch.Tensor, pos: torch.Tensor, label: torch.Tensor,
                 method: list[str], seed: int | None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """`blend` applied to each image's own (unpadded) pixels; blended ones labelled fake."""
        from lssat.data.sbi import SBI_METHOD

        crops = [x[:, :h, :w] for x, (h, w) in zip(images, sizes.tolist())]
        crops, fake = self.blend(crops, pos.tolist(), seed)
        if not any(fake):
            return images, label, method
        label, method = label.clone(), list(method)  # `images` is index_select's copy already
        for i, (x, f) in enumerate(zip(crops, fake)):
            if f:
                images[i, :, :x.shape[-2], :x.shape[-1]] = x
                label[i], method[i] = 1, SBI_METHOD
        return images, label, method

    def __getitem__(self, position: int) -> dict[str, Any]:
        """The batch of one position."""
        return self.__getitems__([position])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The state of the generator that plain (not `Draw`) positions draw their augmentation from."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` gave."""
        self.generator.set_state(state["generator"])


def _decode_one(ds: FaceDataset, position: int) -> torch.Tensor | DataError:
    global _decoded_bytes
    key = None
    if isinstance(ds.images, FileImages):
        path = os.path.join(ds.images.root, ds.records[position].path)
        try:
            st = os.stat(path)
            key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key in _DECODED:
            return _DECODED[key]
    try:
        image = ds.images(ds.records[position], position)
    except DataError as err:
        return err
    if key is not None and _decoded_bytes + image.numel() <= _DECODED_LIMIT:
        _DECODED[key] = image
        _decoded_bytes += image.numel()
    return image


# ----------------------------------------------------------------------- planning


def estimate_bytes(dataset: FaceDataset, positions: np.ndarray, image_size: int, train: bool,
                   limit: float = math.inf, render_size: int | None = None) -> float:
    """Bytes the store of these positions would take; stops counting once past `limit`.

    Evaluation stores hold S x S images. A train store holds the decoded images: their sizes are
    read from the headers (PIL, no decoding) of up to 64 evenly spread files of an index, or are the
    render size of the synthetic faces (`render_size`); unreadable files count as nothing (they
    will be skipped).
    """
    n = len(positions)
    if not train:
        return 3.0 * image_size * image_size * n
    images = dataset.images
    if not isinstance(images, FileImages):
        size = render_size or image_size
        return 3.0 * size * size * n
    height = width = 0
    if n > _HEADER_SAMPLE:
        positions = positions[np.linspace(0, n - 1, _HEADER_SAMPLE).round().astype(int)]
    for count, p in enumerate(positions.tolist(), start=1):
        path = images.root / dataset.records[p].path
        if file_problem(path) is not None:  # never open a pipe or device: it can block
            continue
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        height, width = max(height, h), max(width, w)
        if 3.0 * height * width * count > limit:
            return 3.0 * height * width * n
    return 3.0 * height * width * n


def plan_in_memory(mode: str | bool, image_size: int, budget_bytes: float, augment: AugmentConfig,
                   estimate: dict[str, Any]) -> dict[str, bool]:
    """Which splits take the in-memory path.

    `estimate[split]` is a callable(limit) giving that split's store size in bytes. False: none.
    True: every split. "auto": every split when image_size <= MAX_IMAGE_SIZE and all stores
    together fit in the budget; except the train split when the augmentation uses an option that
    has no batched form (RandAugment, random erasing), which keeps the per-item path.
    """
    splits = list(estimate)
    if mode is False:
        return dict.fromkeys(splits, False)
    if mode is True:
        return dict.fromkeys(splits, True)
    if image_size > MAX_IMAGE_SIZE:
        return dict.fromkeys(splits, False)
    chosen = [s for s in splits if not (s == "train" and unbatched_options(augment))]
    total = 0.0
    for split in chosen:
        total += estimate[split](budget_bytes - total)
        if total > budget_bytes:
            return dict.fromkeys(splits, False)
    return {s: s in chosen for s in splits}
