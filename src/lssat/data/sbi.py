"""Self-blended images (SBI; Shiohara and Yamasaki, CVPR 2022): fakes made from a real face alone.

A real face is blended with a transformed copy of itself inside a mask drawn from its landmarks,
so the fake carries the generic traces of face manipulation (a blending boundary, a colour and
frequency mismatch between the face and its surroundings, a slight misalignment) and no trace of
any one manipulation method. `self_blend` makes one; training draws them from real frames when
``data.sbi.enabled`` is set (`SBIConfig`; `SelfBlend` is what the DataModule's training batches call).

One self-blended image, following the paper's code (`self_blending`, `randaffine`, `dynamic_blend`):

1. the source: a copy of the face with colour jitter (an RGB shift with probability 0.3,
   brightness and contrast within 10%) and a frequency change (down-scaled by 2 or 4 and scaled
   back, or sharpened with strength 0.2..0.5), then moved by a small affine map (translation up
   to 3% across and 1.5% down, scale 0.95..1/0.95);
2. the mask: the convex hull of the landmarks (dlib's 68 points: jaw and brows), drawn at a random
   working size, moved with the source, elastically deformed (alpha 50, sigma 7 at 380 px,
   scaled), blurred, cut to its core (what stays at the maximum), blurred again and resized back.
   The paper works at 192..256 pixels a side with odd kernels of 5..25 and a second sigma of
   5..45; here everything is halved (96..128 pixels, kernels 3..13, sigma 2.5..22.5), which gives
   the same shapes 4x cheaper;
3. the blend: mask x ratio (drawn from 0.25, 0.5, 0.75, 1, 1, 1) x source + (1 - that) x face.

One difference from the paper: it sometimes transforms the target instead of the source (and then
trains on the changed real frame too); here the real frame is never changed, so a self-blended
image equals its real frame exactly wherever the returned mask is 0.

Landmarks (`LandmarkFinder`): the built-in synthetic faces give their own outline (jaw and brow
points, `SyntheticFaces.landmarks`); index records use their stored ``landmarks`` when there are
68 of them (dlib's scheme), else dlib's 68-point model shipped in face-recognition-models is run on
the image (optional extra ``pip install 'lssat[faces]'``) inside the record's ``box`` (crop
coordinates) or the whole image.

All random draws come from the `torch.Generator` passed in; training seeds one per batch from the
batch's place in the epoch (`lssat.data.sampling.batch_seed`), so resumed runs blend exactly as
uninterrupted ones.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from lssat.confkit import check_keys, field_names
from lssat.data.index import Record
from lssat.errors import ConfigError, DataError, MissingDependencyError

__all__ = ["SBIConfig", "LandmarkFinder", "SelfBlend", "hull_mask", "self_blend", "self_blend_batch"]

#: The method name of a self-blended training item (batch "method").
SBI_METHOD = "sbi"
_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
_SALT = 0x5B1  # keeps the blending draws apart from the augmentation draws of the same batch
FACES_EXTRA_HINT = "pip install 'lssat[faces]' (that is: pip install dlib-bin face-recognition-models)"


@dataclass
class SBIConfig:
    """Self-blended training fakes (``data.sbi``), for the deepfake task.

    `enabled`: draw them. `probability`: the chance that a real training frame is replaced by its
    self-blended image (labelled fake, method ``sbi``) in a batch. `real_only`: leave the
    manipulated (label 1) frames out of training, so it sees real frames and self-blended images
    only. Validation and test are never changed.
    """

    enabled: bool = False
    probability: float = 0.5
    real_only: bool = False

    def __post_init__(self) -> None:
        for name in ("enabled", "real_only"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"data.sbi.{name} must be true or false, got {getattr(self, name)!r}")
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0 < p <= 1:
            raise ConfigError(f"data.sbi.probability must be a number in (0, 1], got {p!r}")
        self.probability = float(p)
        if self.real_only and not self.enabled:
            raise ConfigError("data.sbi.real_only needs data.sbi.enabled: true (training would see no fakes)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SBIConfig:
        """Build from a config mapping; an unknown key is a ConfigError naming it."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"data.sbi must be a mapping (enabled, probability, real_only), got {data!r}")
        check_keys(data, field_names(cls), "data.sbi")
        return cls(**data)


# --------------------------------------------------------------------------- one image


def _uniform(generator: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=generator)


def _randint(generator: torch.Generator, lo: int, hi: int, n: int) -> torch.Tensor:
    """n integers in lo..hi (both included)."""
    return torch.randint(lo, hi + 1, (n,), generator=generator)


def _check_landmarks(landmarks: Any) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3 or not np.isfinite(points).all():
        raise DataError(f"landmarks must be at least 3 finite (x, y) points, got an array of shape {points.shape}")
    return points


def hull_mask(landmarks: Any, height: int, width: int) -> torch.Tensor:
    """The convex hull of (x, y) pixel points, filled (PIL's polygon fill, edges included):
    float32 (height, width) of 0 and 1; pixel (0, 0) has its centre at (0, 0).

    DataError for points that are not a (K >= 3, 2) finite array; an all-zero mask when they span
    no area.
    """
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    points = _check_landmarks(landmarks)
    try:
        hull = points[ConvexHull(points).vertices]
    except QhullError:
        return torch.zeros((height, width), dtype=torch.float32)
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in hull], fill=1)
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32).copy())


_WORK = 128  # side of the grid the masks are shaped on
_MAX_HALF = 9  # the widest blur kernel's half width on that grid (6 x 128 / 96, rounded up)


def _gauss_rows(sigma: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """(B, 2 * _MAX_HALF + 1) Gaussian kernels of per-sample sigma, cut at per-sample half widths."""
    i = torch.arange(-_MAX_HALF, _MAX_HALF + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (i[None, :] / sigma[:, None]) ** 2) * (i.abs()[None, :] <= half[:, None])
    return k / k.sum(dim=1, keepdim=True)


def _blur(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) blurred separably, sample i by kernels kx[i] across and ky[i] down (reflected
    at the borders, as OpenCV does)."""
    b, _, h, w = x.shape
    p = kx.shape[1] // 2
    out = F.conv2d(F.pad(x.reshape(1, b, h, w), (p, p, 0, 0), mode="reflect"), kx.view(b, 1, 1, -1), groups=b)
    out = F.conv2d(F.pad(out, (0, 0, p, p), mode="reflect"), ky.view(b, 1, -1, 1), groups=b)
    return out.reshape(b, 1, h, w)


def _source(target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The transformed copies (float (B, 3, H, W) in 0..255): RGB shift (p 0.3, +-20 per channel),
    brightness and contrast (albumentations' rule: x * alpha + beta * 255, alpha in 0.9..1.1, beta
    in -0.1..0.1), then down-scaled by 2 or 4 and back (bilinear) or sharpened (strength 0.2..0.5,
    lightness 0.5..1), rounded as a uint8 pipeline would."""
    b, _, h, w = target.shape
    shift = _uniform(generator, -20, 20, b, 3) * (torch.rand(b, 1, generator=generator) < 0.3)
    alpha, beta = _uniform(generator, 0.9, 1.1, b), _uniform(generator, -0.1, 0.1, b)
    x = ((target + shift[:, :, None, None]) * alpha.view(b, 1, 1, 1) + beta.view(b, 1, 1, 1) * 255).clamp(0, 255)
    down = torch.rand(b, generator=generator) < 0.5
    by4 = torch.rand(b, generator=generator) < 0.5
    strength, lightness = _uniform(generator, 0.2, 0.5, b), _uniform(generator, 0.5, 1.0, b)
    out = x.clone()
    for factor, which in ((2, down & ~by4), (4, down & by4)):
        if bool(which.any()):
            small = F.interpolate(x[which], size=(max(1, h // factor), max(1, w // factor)), mode="bilinear",
                                  align_corners=False)
            out[which] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    sharp = ~down
    if bool(sharp.any()):
        n = int(sharp.sum())
        kernel = torch.full((n, 3, 3), -1.0)
        kernel[:, 1, 1] = 8.0 + lightness[sharp]
        identity = torch.zeros(3, 3)
        identity[1, 1] = 1.0
        a = strength[sharp].view(n, 1, 1)
        kernel = ((1 - a) * identity + a * kernel).repeat_interleave(3, dim=0).view(n * 3, 1, 3, 3)
        padded = F.pad(x[sharp].reshape(1, n * 3, h, w), (1, 1, 1, 1), mode="replicate")
        out[sharp] = F.conv2d(padded, kernel, groups=n * 3).view(n, 3, h, w)
    return out.clamp_(0, 255).round_()


def _elastic(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """albumentations' ElasticTransform(alpha=50, sigma=7) at 380 px, scaled to the masks' grid.
    The displacement field is smooth, so it is drawn and smoothed at a quarter of the size (and
    scaled up by the 4x weaker smoothing: smoothed noise is 1/sigma as strong)."""
    b, _, h, w = mask.shape
    s = max(h, w) / 380.0
    sigma, alpha = 7.0 * s, 50.0 * s
    qs = sigma / 4
    half = torch.full((2 * b,), min(_MAX_HALF, int(round(4 * qs))))
    k = _gauss_rows(torch.full((2 * b,), qs), half)
    noise = torch.rand((2 * b, 1, h // 4, w // 4), generator=generator) * 2 - 1
    shift = F.interpolate(_blur(noise, k, k).view(b, 2, h // 4, w // 4), size=(h, w), mode="bilinear",
                          align_corners=False) * (alpha * qs / sigma)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack([(xs + shift[:, 0] + 0.5) / w * 2 - 1, (ys + shift[:, 1] + 0.5) / h * 2 - 1], dim=-1)
    return F.grid_sample(mask, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blend_masks(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The paper's get_blend_mask, per sample: at a working size of (96..128)^2 (half the paper's
    192..256), blur (odd kernel 3..13, OpenCV's sigma for it), keep the core (what stays at the
    maximum), blur again (odd kernel 3..13, sigma 2.5..22.5); done on the fixed grid with the
    kernels scaled to it. (B, 1, _WORK, _WORK) in and out; all zeros where a mask is."""
    b = mask.shape[0]
    scale_y = _WORK / _randint(generator, 96, 128, b).float()
    scale_x = _WORK / _randint(generator, 96, 128, b).float()
    k1 = (3 + 2 * _randint(generator, 0, 5, b)).float()
    k2 = (3 + 2 * _randint(generator, 0, 5, b)).float()
    sigma2 = _randint(generator, 5, 45, b).float() / 2
    sigma1 = 0.3 * ((k1 - 1) * 0.5 - 1) + 0.8

    def kernels(k: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = (k - 1) / 2
        return (_gauss_rows(sigma * scale_x, torch.round(half * scale_x)),
                _gauss_rows(sigma * scale_y, torch.round(half * scale_y)))

    blurred = _blur(mask, *kernels(k1, sigma1))
    top = blurred.amax(dim=(1, 2, 3), keepdim=True)
    core = torch.where((blurred >= top) & (top > 0), torch.ones_like(blurred), torch.zeros_like(blurred))
    blurred = _blur(core, *kernels(k2, sigma2))
    top = blurred.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(top > 0, blurred / top.clamp_min(1e-12), torch.zeros_like(blurred))


def self_blend_batch(images: torch.Tensor, landmarks: Sequence[Any],
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-blended images of a batch of faces of one size and their blending masks.

    `images`: uint8 (B, 3, H, W); `landmarks`: per image, (K, 2) x, y pixel coordinates of the
    face (their hull is the blending region). Returns uint8 (B, 3, H, W) and float32 (B, H, W) in
    [0, 1]. Each result equals its image exactly wherever its mask is 0; an all-zero mask
    (landmarks spanning no area, or outside the image) leaves the image unchanged. Every draw
    comes from `generator`, in batch order.
    """
    if (not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4
            or images.shape[1] != 3):
        raise DataError(f"self_blend: expected uint8 images (B, 3, H, W), got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
    b, _, h, w = images.shape
    if len(landmarks) != b:
        raise DataError(f"self_blend: {b} images but {len(landmarks)} sets of landmarks")
    points = [_check_landmarks(p) for p in landmarks]
    target = images.to(torch.float32)
    source = _source(target, generator)
    # a small move of each source, and of its mask with it: translation up to 3% across and 1.5%
    # down, scale 0.95..1/0.95 (affine_grid maps output to input points: (p - 2t) / scale)
    tx, ty = _uniform(generator, -0.03, 0.03, b), _uniform(generator, -0.015, 0.015, b)
    scale = _uniform(generator, 0.95, 1 / 0.95, b)
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([1 / scale, zero, -2 * tx / scale], 1),
                         torch.stack([zero, 1 / scale, -2 * ty / scale], 1)], 1)
    source = F.grid_sample(source, F.affine_grid(theta, [b, 3, h, w], align_corners=False), mode="bilinear",
                           padding_mode="border", align_corners=False)
    to_grid = np.array([_WORK / w, _WORK / h])
    mask = torch.stack([hull_mask(p * to_grid + (to_grid - 1) / 2, _WORK, _WORK) for p in points])[:, None]
    mask = F.grid_sample(mask, F.affine_grid(theta, [b, 1, _WORK, _WORK], align_corners=False), mode="bilinear",
                         padding_mode="zeros", align_corners=False)
    mask = _blend_masks(_elastic(mask, generator), generator)
    mask = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False,
                         antialias=h < _WORK or w < _WORK).clamp_(0, 1)
    ratio = torch.tensor(_BLEND_RATIOS)[_randint(generator, 0, len(_BLEND_RATIOS) - 1, b)]
    m = mask * ratio.view(b, 1, 1, 1)
    blended = (m * source + (1 - m) * target).round_().clamp_(0, 255).to(torch.uint8)
    return blended, m[:, 0]


def self_blend(image: torch.Tensor, landmarks: Any, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A self-blended image of `image` (uint8 (3, H, W)) and its blending mask (float32 (H, W) in
    [0, 1]): `self_blend_batch` of one image. `landmarks`: (K, 2) x, y pixel coordinates."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise DataError(f"self_blend: expected a uint8 image (3, H, W), got "
                        f"{getattr(image, 'dtype', type(image).__name__)} {tuple(getattr(image, 'shape', ()))}")
    blended, mask = self_blend_batch(image[None], [landmarks], generator)
    return blended[0], mask[0]


# --------------------------------------------------------------------------- landmarks


def dlib68_model_path() -> Path:
    """dlib's 68-point landmark model file of the `face-recognition-models` package (found without
    importing it: its __init__ needs `pkg_resources`, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("data.sbi: records without 68 landmarks need dlib's 68-point model of "
                                     f"face-recognition-models: {FACES_EXTRA_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise MissingDependencyError("face-recognition-models is installed but has no "
                                 f"models/shape_predictor_68_face_landmarks.dat; reinstall it: {FACES_EXTRA_HINT}")


def _dlib():
    try:
        import dlib
    except ImportError:
        raise MissingDependencyError("data.sbi: records without 68 landmarks need dlib's 68-point landmark "
                                     f"model: {FACES_EXTRA_HINT}") from None
    return dlib


class LandmarkFinder:
    """The face landmarks of one split's records (pixel x, y of the decoded image), cached per record.

    From the image source when it has ``landmarks(records, positions)`` (the synthetic faces),
    else the record's own 68 landmarks, else dlib's 68-point model run on the image.
    """

    def __init__(self, records: Sequence[Record], images: Any) -> None:
        self.records = records
        self.images = images
        self._cache: dict[int, np.ndarray] = {}
        self._predictor = None

    def needs_dlib(self, positions: Sequence[int]) -> bool:
        """Whether some of these records would need dlib (no built-in geometry, no 68 landmarks)."""
        if hasattr(self.images, "landmarks"):
            return False
        return any(len(self.records[p].landmarks or []) != 68 for p in positions)

    def check(self, positions: Sequence[int]) -> None:
        """MissingDependencyError now, rather than in a loader worker, when dlib is needed and absent."""
        if self.needs_dlib(positions):
            _dlib()
            dlib68_model_path()

    def prefetch(self, positions: Sequence[int]) -> None:
        """Ask the image source for the landmarks of these positions at once (when it has them)."""
        many = getattr(self.images, "landmarks", None)
        todo = sorted({int(p) for p in positions} - set(self._cache))
        if many is None or not todo:
            return
        for p, points in zip(todo, many([self.records[p] for p in todo], todo)):
            self._cache[p] = np.asarray(points, dtype=np.float64)

    def __call__(self, position: int, image: torch.Tensor) -> np.ndarray:
        """The landmarks of the record at `position`, whose decoded image is `image` (3, H, W)."""
        position = int(position)
        if position not in self._cache:
            record = self.records[position]
            if hasattr(self.images, "landmarks"):
                self.prefetch([position])
            elif len(record.landmarks or []) == 68:
                self._cache[position] = _check_landmarks(record.landmarks)
            else:
                self._cache[position] = self._predict(record, image)
        return self._cache[position]

    def _predict(self, record: Record, image: torch.Tensor) -> np.ndarray:
        dlib = _dlib()
        if self._predictor is None:
            self._predictor = dlib.shape_predictor(str(dlib68_model_path()))
        _, h, w = image.shape
        x0, y0, x1, y1 = record.box if record.box is not None and len(record.box) == 4 else (0, 0, w - 1, h - 1)
        rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        shape = self._predictor(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), rect)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)


# --------------------------------------------------------------------------- training batches


class SelfBlend:
    """What a training batch calls to replace some of its real frames by self-blended images.

    `records`, `images`: the train split's records and image source; `seed`: the data seed.
    Per batch, one generator (seeded from the batch's augmentation seed, or from the data seed and
    the positions for plain positions) draws, for every position in order, whether it is blended
    (probability `config.probability`, real records only), then each blend in order.
    """

    def __init__(self, config: SBIConfig, records: Sequence[Record], images: Any, seed: int = 0) -> None:
        self.config = config
        self.records = records
        self.seed = int(seed)
        self.landmarks = LandmarkFinder(records, images)

    def generator(self, positions: Sequence[int], batch_seed: int | None) -> torch.Generator:
        """The batch's blending generator."""
        words = [_SALT, int(batch_seed)] if batch_seed is not None else [_SALT, self.seed, *map(int, positions)]
        seed = int(np.random.SeedSequence([w % 2**64 for w in words]).generate_state(1, np.uint64)[0] >> np.uint64(1))
        return torch.Generator().manual_seed(seed)

    def __call__(self, images: Sequence[Any], positions: Sequence[int],
                 batch_seed: int | None) -> tuple[list[Any], list[bool]]:
        """Blend the chosen real frames of a batch: `images` are uint8 (3, H, W) tensors, or
        anything else (a failed image) which passes through. Returns the images and, per item,
        whether it is now a self-blended fake."""
        generator = self.generator(positions, batch_seed)
        draws = torch.rand(len(positions), generator=generator).tolist()
        chosen = [u < self.config.probability and self.records[int(p)].label == 0
                  for u, p in zip(draws, positions)]
        self.landmarks.prefetch([p for p, c in zip(positions, chosen) if c])
        out, fake = list(images), [False] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}  # images of one size are blended together
        for i, image in enumerate(images):
            if chosen[i] and isinstance(image, torch.Tensor):
                groups.setdefault(tuple(image.shape[-2:]), []).append(i)
        for members in groups.values():
            batch = torch.stack([images[i] for i in members])
            points = [self.landmarks(int(positions[i]), images[i]) for i in members]
            blended, masks = self_blend_batch(batch, points, generator)
            for i, x, m in zip(members, blended, masks):
                if bool((m > 0).any()):
                    out[i], fake[i] = x, True
        return out, fake
