"""Local directional patterns (Jabid, Kabir and Chae, AVSS 2010) as batched torch operations.

Orientation and bit order, fixed here and tested on images with a known edge direction:

- The 8 Kirsch compass masks are indexed i = 0..7 counter-clockwise from East, like LBP's
  neighbours: 0 E, 1 NE, 2 N, 3 NW, 4 W, 5 SW, 6 S, 7 SE. Mask i puts +5 on the three ring cells
  centred on direction i, -3 on the other five ring cells, 0 at the centre.
- Masks are applied by correlation, as written (what `F.conv2d` does; `scipy.signal.convolve2d`
  would flip them): response_i(r, c) = sum_{u,v} M_i[u, v] * I(r + u - 1, c + v - 1), where row
  index u = 0 is the row above. So the East mask responds most to an image bright on the right.
- Bit i of the code is 1 when |response_i| is among the k largest; equal magnitudes are ranked by
  the lower direction index first, so every code has exactly k bits set (C(8, 3) = 56 codes for
  the default k = 3). The code is sum_i bit_i 2^i.
- Pixels outside the image count as 0, as for LBP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lssat.errors import InputError
from lssat.texture._accel import CompileMode, KernelRunner
from lssat.texture._input import to_gray

DIRECTIONS = ("E", "NE", "N", "NW", "W", "SW", "S", "SE")
# Ring cells (row offset, column offset) in direction order, counter-clockwise from East.
_RING = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def kirsch_masks() -> torch.Tensor:
    """The 8 Kirsch compass masks as an (8, 3, 3) int tensor, in direction order."""
    masks = torch.zeros(8, 3, 3, dtype=torch.int64)
    for i in range(8):
        for j, (dr, dc) in enumerate(_RING):
            near = min((j - i) % 8, (i - j) % 8) <= 1
            masks[i, dr + 1, dc + 1] = 5 if near else -3
    return masks


def check_ldp_params(k: int) -> None:
    """Raise InputError unless 1 <= k <= 7."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 7:
        raise InputError(f"LDP: k (number of strongest directions) must be an integer in 1..7, got {k!r}")


def kirsch_strengths(padded: torch.Tensor) -> list[torch.Tensor]:
    """|Kirsch response| per direction, eight (B, H, W) planes, from a 1-pixel zero-padded batch.

    Mask i weighs its three ring cells by +5 and the other five by -3, so with S_i the sum of those
    three cells and T the sum of all eight, response_i = 5 S_i - 3 (T - S_i) = 8 S_i - 3 T: two
    additions per direction instead of a 3 x 3 correlation.
    """
    H, W = padded.shape[1] - 2, padded.shape[2] - 2
    ring = [padded[:, 1 + dr: 1 + dr + H, 1 + dc: 1 + dc + W] for dr, dc in _RING]
    pairs = [ring[i] + ring[(i + 1) % 8] for i in range(8)]
    total3 = (pairs[0] + pairs[2] + pairs[4] + pairs[6]) * 3
    return [((pairs[i] + ring[i - 1]) * 8 - total3).abs() for i in range(8)]


def _k_largest(values: list[torch.Tensor], k: int) -> torch.Tensor:
    """Per pixel, the k-th largest of the planes: a streaming insertion, 2k - 1 min/max per plane."""
    top = [torch.full_like(values[0], -1) for _ in range(k)]
    for value in values:
        top = [torch.maximum(top[0], value)] + [
            torch.maximum(top[j], torch.minimum(top[j - 1], value)) for j in range(1, k)
        ]
    return top[-1]


def ldp_codes(padded: torch.Tensor, k: int) -> torch.Tensor:
    """LDP codes (B, H, W) int32 from a 1-pixel zero-padded grey batch (int32 or float64).

    Integer strengths get unique keys 8 |response| + (7 - i), so equal strengths rank by lower
    direction index and the bits are simply the keys at or above the k-th largest. Float strengths
    (unquantised input) set the bits above the k-th largest, then those equal to it in direction
    order until k bits are set.
    """
    strengths = kirsch_strengths(padded)
    if not padded.is_floating_point():
        keys = [value * 8 + (7 - i) for i, value in enumerate(strengths)]
        kth = _k_largest(keys, k)
        code = torch.zeros(kth.shape, dtype=torch.int32, device=kth.device)
        for i, key in enumerate(keys):
            code = code + (key >= kth).to(torch.int32) * (1 << i)
        return code
    kth = _k_largest(strengths, k)
    need = torch.full(kth.shape, k, dtype=torch.int32, device=kth.device)
    for value in strengths:
        need = need - (value > kth).to(torch.int32)
    code = torch.zeros(kth.shape, dtype=torch.int32, device=kth.device)
    for i, value in enumerate(strengths):
        tie = (value == kth) & (need > 0)
        need = need - tie.to(torch.int32)
        code = code + ((value > kth) | tie).to(torch.int32) * (1 << i)
    return code


_EAGER_CHUNK_PIXELS = 1 << 19
_runner = KernelRunner("LDP")


def ldp(images: torch.Tensor, k: int = 3, quantize: bool = True,
        compile: CompileMode = "auto") -> torch.Tensor:
    """Local directional pattern code maps of a batch of images.

    Args:
        images: (H, W), (B, H, W) or (B, C, H, W) with C in {1, 3}; uint8, or any integer or float
            dtype with values in [0, 255]; any device. Colour becomes ITU-R 601 luminance.
        k: number of strongest directions whose bits are set (1..7).
        quantize: round grey levels to integers first (see `lssat.texture._input.to_gray`).
        compile: "auto" (compile once it pays; see `lssat.texture._accel`), True or False.

    Returns:
        (B, 1, H, W) int32 codes, each with exactly k of its 8 bits set.
    """
    check_ldp_params(k)
    gray = to_gray(images, dtype=torch.float32, quantize=quantize)
    padded = F.pad(gray, (1, 1, 1, 1))
    # Integer grey levels rank exactly in int32; float ones (quantize=False) in float64.
    padded = padded.to(torch.float64 if padded.is_floating_point() else torch.int32)
    if padded.is_floating_point() and quantize:
        padded = padded.to(torch.int32)

    def kernel(padded: torch.Tensor) -> torch.Tensor:
        return ldp_codes(padded, k)

    def eager(padded: torch.Tensor) -> torch.Tensor:
        H, W = padded.shape[1] - 2, padded.shape[2] - 2
        step = max(1, _EAGER_CHUNK_PIXELS // (H * W))
        return torch.cat([kernel(padded[i:i + step]) for i in range(0, len(padded), step)])

    key = (k, tuple(padded.shape), padded.dtype, padded.device)
    return _runner(key, lambda: kernel, (padded,), eager, compile, padded.device).unsqueeze(1)
