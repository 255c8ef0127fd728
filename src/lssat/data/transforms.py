"""Image transforms for training and evaluation, on uint8 (3, H, W) tensors throughout.

Training applies geometric augmentation first (a mild random resized crop, suited to aligned
faces, and a horizontal flip), then photometric augmentation (colour jitter, optional RandAugment,
optional random erasing). Evaluation resizes the shorter side and takes a centre crop.

Images stay uint8 in [0, 255] and are never normalised here: the model step computes texture
descriptors (LBP, LDP) from the raw intensity range and normalises the RGB input itself.
All transforms are torchvision.transforms.v2 ops, which run on uint8 tensors without a float copy
for the geometric part (crop before resize, antialiased bilinear).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from lssat.errors import ConfigError


@dataclass
class AugmentConfig:
    """Training augmentation settings (``data.augment`` in a config).

    crop_scale / crop_ratio: area fraction and aspect range of RandomResizedCrop (faces want mild
    crops: scale 0.6 to 1). hflip: flip probability. color_jitter: strength for brightness, contrast
    and saturation (0 turns it off); hue: hue jitter (costly on CPU, off by default).
    randaugment_magnitude: None (off) or 0..30 (SSAT uses 9) with randaugment_ops ops per image.
    random_erasing: probability of erasing one rectangle (filled with zeros; SSAT uses 0.25).
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

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Build from a config mapping; an unknown key is a ConfigError naming it."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise ConfigError(f"data.augment: unknown setting {unknown[0]!r} (known: {known})")
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


def train_transform(image_size: int, aug: AugmentConfig) -> v2.Compose:
    """Geometric then photometric augmentation; uint8 (3, H, W) in, uint8 (3, S, S) out."""
    ops: list[torch.nn.Module] = [
        v2.RandomResizedCrop(image_size, scale=aug.crop_scale, ratio=aug.crop_ratio, antialias=True),
    ]
    if aug.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.color_jitter > 0 or aug.hue > 0:
        s = aug.color_jitter
        ops.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s, hue=aug.hue or None))
    if aug.randaugment_magnitude is not None:
        ops.append(v2.RandAugment(num_ops=aug.randaugment_ops, magnitude=aug.randaugment_magnitude))
    if aug.random_erasing > 0:
        ops.append(v2.RandomErasing(p=aug.random_erasing, value=0))
    return v2.Compose(ops)


def eval_transform(image_size: int, aug: AugmentConfig | None = None) -> v2.Compose:
    """Resize the shorter side, then centre-crop to image_size x image_size; uint8 in and out."""
    fraction = aug.eval_crop_fraction if aug is not None else 1.0
    resize = max(image_size, int(round(image_size / fraction)))
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size)])
