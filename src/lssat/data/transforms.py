"""Image transforms for training and evaluation, on uint8 (3, H, W) tensors throughout.

Training applies geometric augmentation first (a mild random resized crop, suited to aligned
faces, and a horizontal flip), then photometric augmentation: colour jitter (off when `aa` is set,
as timm does), then timm's auto-augment (`aa`, e.g. SSAT's ``rand-m9-mstd0.5-inc1``) and timm's
random erasing (`reprob`, `remode`, `recount`), both taken from `timm.data.create_transform` with
the same arguments (bicubic interpolation, ImageNet mean). Evaluation resizes the shorter side and
takes a centre crop (`eval_crop_fraction`, timm's crop_pct).

Images stay uint8 in [0, 255] and are never normalised here: the model step computes texture
descriptors (LBP, LDP) from the raw intensity range and normalises the RGB input itself. Texture
targets therefore see every augmentation the RGB input sees, photometric ones included (as SSAT's
RGB target does). timm's auto-augment runs on a PIL copy of the uint8 image; timm's random erasing
on an ImageNet-normalised float copy, whose result is mapped back to uint8 (so "pixel" mode fills
the box with per-pixel Gaussian noise of the normalised space, clipped to [0, 255]). The crop, flip
and jitter are torchvision.transforms.v2 ops on uint8 tensors (crop before resize, antialiased
bilinear). timm's ops draw from Python's and NumPy's generators: they run under ones seeded from
torch's generator, so the data stays a function of torch's seed as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from lssat.confkit import check_keys, field_names
from lssat.errors import ConfigError


@dataclass
class AugmentConfig:
    """Training augmentation settings (``data.augment`` in a config).

    crop_scale / crop_ratio: area fraction and aspect range of RandomResizedCrop (faces want mild
    crops: scale 0.6 to 1). hflip: flip probability. color_jitter: strength for brightness, contrast
    and saturation (0 turns it off); hue: hue jitter (costly on CPU, off by default).
    aa: timm's auto-augment string (SSAT: "rand-m9-mstd0.5-inc1", RandAugment with magnitude 9 on
    timm's 0..10 scale, magnitude noise 0.5, increasing ops); turns color_jitter off, as in timm.
    reprob / remode / recount: timm's RandomErasing probability (SSAT 0.25), fill ("pixel":
    per-pixel Gaussian noise, "rand": one random colour, "const": black) and box count.
    randaugment_magnitude / randaugment_ops: torchvision's RandAugment instead (0..30 on its 31-bin
    scale, so 9 is about a third of timm's m9); random_erasing: torchvision's, filled with zeros.
    eval_crop_fraction: evaluation resizes the shorter side to image_size / fraction, then takes a
    centre crop of image_size (1.0: the whole face, no crop).
    """

    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.2
    hue: float = 0.0
    randaugment_magnitude: int | None = None
    randaugment_ops: int = 2
    random_erasing: float = 0.0
    eval_crop_fraction: float = 1.0
    aa: str | None = None
    reprob: float = 0.0
    remode: str = "pixel"
    recount: int = 1

    def __post_init__(self) -> None:
        self.crop_scale = _pair(self.crop_scale, "data.augment.crop_scale")
        self.crop_ratio = _pair(self.crop_ratio, "data.augment.crop_ratio")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"data.augment.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ConfigError(f"data.augment.crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        for name in ("hflip", "random_erasing"):
            _check_range(getattr(self, name), f"data.augment.{name}", 0.0, 1.0)
        _check_range(self.color_jitter, "data.augment.color_jitter", 0.0, 1.0)
        _check_range(self.hue, "data.augment.hue", 0.0, 0.5)
        _check_range(self.eval_crop_fraction, "data.augment.eval_crop_fraction", 1e-6, 1.0)
        m = self.randaugment_magnitude
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or not 0 <= m <= 30):
            raise ConfigError(f"data.augment.randaugment_magnitude must be null or an integer 0..30, got {m!r}")
        n = self.randaugment_ops
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"data.augment.randaugment_ops must be a positive integer, got {n!r}")
        _check_range(self.reprob, "data.augment.reprob", 0.0, 1.0)
        if self.remode not in ("pixel", "rand", "const"):
            raise ConfigError(f"data.augment.remode must be pixel, rand or const, got {self.remode!r}")
        if isinstance(self.recount, bool) or not isinstance(self.recount, int) or self.recount < 1:
            raise ConfigError(f"data.augment.recount must be a positive integer, got {self.recount!r}")
        if self.aa is not None:
            if not isinstance(self.aa, str) or not self.aa:
                raise ConfigError(f"data.augment.aa must be a timm auto-augment string or null, got {self.aa!r}")
            if self.randaugment_magnitude is not None:
                raise ConfigError("data.augment.aa and data.augment.randaugment_magnitude both set: choose one "
                                  "RandAugment (aa is timm's, as SSAT)")
            try:
                timm_parts(32, self)
            except Exception as err:  # noqa: BLE001 - timm's parser raises asserts, KeyErrors, ValueErrors
                raise ConfigError(f"data.augment.aa: timm cannot parse {self.aa!r} ({type(err).__name__}: {err})") \
                    from None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Build from a config mapping; an unknown key is a ConfigError naming it."""
        data = dict(data or {})
        check_keys(data, field_names(cls), "data.augment")
        return cls(**data)


def _pair(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_number(v) for v in value):
        raise ConfigError(f"{name} must be a pair of numbers [min, max], got {value!r}")
    return float(value[0]), float(value[1])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_range(value: Any, name: str, lo: float, hi: float) -> None:
    if not _is_number(value) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")


def timm_parts(image_size: int, aug: AugmentConfig) -> tuple[list[Any], Any]:
    """timm's auto-augment ops and RandomErasing (or None) for these settings, taken from
    `timm.data.create_transform(image_size, is_training=True, auto_augment=aa, re_prob=reprob,
    re_mode=remode, re_count=recount, interpolation="bicubic", separate=True)` (SSAT's call)."""
    from timm.data import create_transform

    _, secondary, final = create_transform(
        image_size, is_training=True, auto_augment=aug.aa, color_jitter=None, re_prob=aug.reprob,
        re_mode=aug.remode, re_count=aug.recount, interpolation="bicubic", separate=True)
    erase = final.transforms[-1] if aug.reprob > 0 else None
    return (list(secondary.transforms) if aug.aa else []), erase


def _posterize(img: Any, bits_to_keep: int, **kwargs: Any) -> Any:
    """timm's posterize, where keeping 0 bits gives a black image as older Pillow did: Pillow 13
    refuses 0 bits, which timm's increasing posterize reaches when the magnitude noise hits 10."""
    from PIL import Image
    from timm.data import auto_augment

    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return auto_augment.posterize(img, bits_to_keep, **kwargs)


class TimmPhotometric:
    """timm's auto-augment and random erasing on a uint8 (3, H, W) tensor, uint8 out (see the module
    docstring). The draws come from Python's and NumPy's generators seeded by one draw from torch's,
    and both are put back afterwards."""

    def __init__(self, image_size: int, aug: AugmentConfig) -> None:
        self.augment, self.erase = timm_parts(image_size, aug)
        from timm.data import auto_augment

        for transform in self.augment:
            for op in getattr(transform, "ops", []):
                if getattr(op, "aug_fn", None) is auto_augment.posterize:
                    op.aug_fn = _posterize
        from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        self.mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1) * 255
        self.std = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1) * 255

    def __bool__(self) -> bool:
        return bool(self.augment) or self.erase is not None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        import random

        import numpy as np
        from PIL import Image

        seed = int(torch.randint(0, 2**31 - 1, ()))
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            if self.augment:
                pil = Image.fromarray(image.permute(1, 2, 0).numpy())
                for op in self.augment:
                    pil = op(pil)
                image = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1)
            if self.erase is not None:
                x = (image.float() - self.mean) / self.std
                x = self.erase(x)
                image = (x * self.std + self.mean).round_().clamp_(0, 255).to(torch.uint8)
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        return image


def train_transform(image_size: int, aug: AugmentConfig) -> v2.Compose:
    """Geometric then photometric augmentation; uint8 (3, H, W) in, uint8 (3, S, S) out."""
    ops: list[Any] = [
        v2.RandomResizedCrop(image_size, scale=aug.crop_scale, ratio=aug.crop_ratio, antialias=True),
    ]
    if aug.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(aug.hflip))
    if (aug.color_jitter > 0 or aug.hue > 0) and aug.aa is None:  # timm: no jitter with auto-augment
        s = aug.color_jitter
        ops.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=aug.hue or None))
    if aug.randaugment_magnitude is not None:
        ops.append(v2.RandAugment(num_ops=aug.randaugment_ops, magnitude=aug.randaugment_magnitude))
    if aug.random_erasing > 0:
        ops.append(v2.RandomErasing(p=aug.random_erasing, value=0))
    timm_ops = TimmPhotometric(image_size, aug) if aug.aa or aug.reprob > 0 else None
    if timm_ops:
        ops.append(timm_ops)
    return v2.Compose(ops)


def eval_transform(image_size: int, aug: AugmentConfig | None = None) -> v2.Compose:
    """Resize the shorter side, then centre-crop to image_size x image_size; uint8 in and out."""
    fraction = aug.eval_crop_fraction if aug is not None else 1.0
    resize = max(image_size, int(round(image_size / fraction)))
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)])
