"""The camera: white balance and exposure, sensor noise, quantisation and JPEG compression.

Images here are planar float32 (B, 3, H, W) in 0..255 until `finish`, which returns uint8
(B, H, W, 3) arrays as a reader of the JPEG files sees them, and the JPEG bytes (PIL encodes;
torchvision's libjpeg-turbo decodes when available, PIL otherwise: both give the same pixels).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

F32 = np.float32

try:  # torchvision deprecates its JPEG codec (for TorchCodec); PIL takes over once it is gone
    from torchvision.io import decode_jpeg as _tv_decode_jpeg
except ImportError:  # pragma: no cover
    _tv_decode_jpeg = None


def expose(images: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """Per-face white balance and exposure gains (``p["wb"]``, B x 3), in place; returns `images`."""
    torch.from_numpy(images).mul_(torch.from_numpy(p["wb"].astype(F32))[:, :, None, None])
    return images


@lru_cache(maxsize=4)
def _noise_tile(side: int) -> np.ndarray:
    """A fixed tile of standard normal noise, (3, side, side)."""
    return np.random.default_rng(0x5EED).standard_normal((3, side, side), dtype=F32)


def add_noise(images: np.ndarray, sigma: np.ndarray, keys: Sequence[Sequence[int]],
              luma: bool = False) -> np.ndarray:
    """Gaussian sensor noise of per-face `sigma`, in place.

    Each face takes its noise from a window of a fixed tile of normal noise (3 independent channels)
    at an offset drawn from a generator seeded by its key: deterministic per key, and about 15x
    cheaper than drawing fresh normals. `luma`: another sensor's noise instead (the shifted domain,
    `lssat.data.synthetic.domains`): one value for the three channels, in 2 x 2 grains.
    """
    size = images.shape[-1]
    side = max(512, 2 * size)
    tile = torch.from_numpy(_noise_tile(side))
    out = torch.from_numpy(images)
    for i, key in enumerate(keys):
        oy, ox = np.random.default_rng(list(key)).integers(0, side - size + 1, size=2)
        if luma:
            half = (size + 1) // 2
            grain = tile[0, oy:oy + half, ox:ox + half].repeat_interleave(2, 0).repeat_interleave(2, 1)
            out[i].add_(grain[None, :size, :size], alpha=float(sigma[i]))
        else:
            out[i].add_(tile[:, oy:oy + size, ox:ox + size], alpha=float(sigma[i]))
    return images


def encode_jpeg(image: np.ndarray, quality: int, planar: bool = False) -> bytes:
    """JPEG bytes of one uint8 image, H x W x 3 (or 3 x H x W if `planar`); PIL, 4:2:0 chroma."""
    if planar:
        pil = Image.merge("RGB", [Image.fromarray(np.ascontiguousarray(plane)) for plane in image])
    else:
        pil = Image.fromarray(image)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """A uint8 H x W x 3 array from JPEG bytes."""
    if _tv_decode_jpeg is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            chw = _tv_decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        return chw.permute(1, 2, 0).numpy()
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:  # pragma: no cover
        return np.asarray(im.convert("RGB"))


def quantize(images: np.ndarray) -> np.ndarray:
    """Planar float (B, 3, H, W) to planar uint8, rounded and clipped."""
    return torch.from_numpy(images).round().clamp_(0, 255).to(torch.uint8).numpy()


def finish(images: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Quantise and JPEG-compress each face at its quality.

    Returns the decoded uint8 (B, H, W, 3) images, what a reader of the written files sees, and
    the JPEG bytes.
    """
    q = quantize(images)
    data = [encode_jpeg(img, quality[i], planar=True) for i, img in enumerate(q)]
    if not data:
        return np.zeros((0, *images.shape[2:], 3), np.uint8), data
    return np.stack([decode_jpeg(d) for d in data]), data
