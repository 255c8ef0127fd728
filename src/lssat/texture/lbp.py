"""Local binary patterns (Ojala et al.) as batched torch operations, bit-exact with scikit-image.

Semantics follow `skimage.feature.local_binary_pattern` (scikit-image 0.26):

- neighbour p of P lies at row offset -R sin(2 pi p / P), column offset R cos(2 pi p / P), both
  rounded to 5 decimals (p = 0 is the right neighbour, then counter-clockwise);
- its value is bilinearly interpolated, with zeros outside the image;
- bit p is 1 when neighbour - centre >= 0, and carries weight 2^p.

Bit-exactness on integer images needs the same floating-point operations as scikit-image's
Cython loop, in float64, including the interpolation weights it derives per row and column. The
work is organised separably: each distinct column offset is interpolated once over the whole image
(one horizontal pass shared by all neighbours with that offset), then each neighbour needs one
vertical blend. A neighbour at an integer offset is a plain shifted view, with no arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from lssat.errors import InputError
from lssat.texture._accel import CompileMode, KernelRunner
from lssat.texture._input import compute_dtype, to_gray

METHODS = ("default", "ror", "uniform", "nri_uniform", "var")
MAX_P = 31  # codes are int32, as in scikit-image
_LUT_MAX_P = 16  # up to this P, code mappings are table look-ups


def check_lbp_params(P: int, R: float, method: str) -> None:
    """Raise InputError for a parameter outside what LBP supports."""
    if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or not 1 <= P <= MAX_P:
        raise InputError(f"LBP: P (number of neighbours) must be an integer in 1..{MAX_P}, got {P!r}")
    if isinstance(R, bool) or not isinstance(R, (int, float, np.number)) or not math.isfinite(R) or R <= 0:
        raise InputError(f"LBP: R (radius) must be a positive number, got {R!r}")
    if method not in METHODS:
        raise InputError(f"LBP: method must be one of {', '.join(METHODS)}, got {method!r}")


def neighbour_offsets(P: int, R: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the P neighbours, exactly as scikit-image computes them.

    scikit-image takes R as a C float, so R is rounded to single precision first.
    """
    R = float(np.float32(R))
    angles = 2 * np.pi * np.arange(P, dtype=np.float64) / P
    return np.round(-R * np.sin(angles), 5), np.round(R * np.cos(angles), 5)


def _axis_plan(n: int, offset: float) -> tuple[int, int, np.ndarray | None]:
    """Integer shifts of the lower and upper sample, and the fractional weights (None if zero)."""
    pos = np.arange(n, dtype=np.float64) + offset
    lo, hi = np.floor(pos), np.ceil(pos)
    frac = pos - lo
    lo_shift = lo - np.arange(n)
    hi_shift = hi - np.arange(n)
    # Offsets have 5 decimals, so the shift is the same for every row or column of any real image.
    assert (lo_shift == lo_shift[0]).all() and (hi_shift == hi_shift[0]).all()
    return int(lo_shift[0]), int(hi_shift[0]), (frac if frac.any() else None)


@dataclass(frozen=True)
class Plan:
    """Where each neighbour's samples come from, for one (P, R, H, W); hashable, so it can key caches.

    `columns` lists one horizontal pass per distinct column offset: (lo shift, hi shift, weight slot
    or -1 when the offset is an integer). `taps` lists per neighbour: (column pass, row lo shift, row
    hi shift, weight slot or -1). Weight slots index the tensors made by `plan_weights`.
    """

    P: int
    R: float
    height: int
    width: int
    pad: int
    columns: tuple[tuple[int, int, int], ...]
    taps: tuple[tuple[int, int, int, int], ...]


@lru_cache(maxsize=64)
def _plan_and_fracs(P: int, R: float, height: int, width: int) -> tuple[Plan, tuple[tuple[np.ndarray, int], ...]]:
    rows_off, cols_off = neighbour_offsets(P, R)
    fracs: list[tuple[np.ndarray, int]] = []  # (weights, axis: 2 columns / 1 rows)
    columns: dict[float, int] = {}
    column_specs, taps = [], []
    for p in range(P):
        key = float(cols_off[p])
        if key not in columns:
            lo, hi, frac = _axis_plan(width, key)
            slot = -1
            if frac is not None:
                fracs.append((frac, 2))
                slot = len(fracs) - 1
            columns[key] = len(column_specs)
            column_specs.append((lo, hi, slot))
        lo, hi, frac = _axis_plan(height, float(rows_off[p]))
        slot = -1
        if frac is not None:
            fracs.append((frac, 1))
            slot = len(fracs) - 1
        taps.append((columns[key], lo, hi, slot))
    plan = Plan(P, float(R), height, width, int(math.ceil(R)) + 1, tuple(column_specs), tuple(taps))
    return plan, tuple(fracs)


def plan_weights(plan: Plan, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
    """Per weight slot, a (2, ...) tensor holding (1 - frac, frac) shaped to broadcast on its axis."""
    _, fracs = _plan_and_fracs(plan.P, plan.R, plan.height, plan.width)
    out = []
    for frac, axis in fracs:
        shape = (2, 1, -1, 1) if axis == 1 else (2, 1, 1, -1)
        w = torch.as_tensor(np.stack([1.0 - frac, frac]), dtype=dtype, device=device)
        out.append(w.view(shape))
    return out


def _blend(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # (1 - frac) * a + frac * b: the same operations, in the same order, as scikit-image.
    return a * w[0] + b * w[1]


def neighbour_planes(padded: torch.Tensor, weights: list[torch.Tensor], plan: Plan) -> list[torch.Tensor]:
    """The P interpolated neighbour planes (B, H, W) of a zero-padded (B, H + 2 pad, W + 2 pad) image.

    `padded` holds grey levels in the dtype of `weights` (float64 for bit-exact parity). Pure tensor
    code with no data-dependent Python, so `torch.compile` turns it into one fused loop.
    """
    H, W, pad = plan.height, plan.width, plan.pad
    passes = []
    for lo, hi, slot in plan.columns:
        left = padded[:, :, pad + lo: pad + lo + W]
        if slot >= 0:
            left = _blend(left, padded[:, :, pad + hi: pad + hi + W], weights[slot])
        passes.append(left)
    planes = []
    for column, lo, hi, slot in plan.taps:
        rowwise = passes[column]
        top = rowwise[:, pad + lo: pad + lo + H]
        if slot >= 0:
            top = _blend(top, rowwise[:, pad + hi: pad + hi + H], weights[slot])
        planes.append(top)
    return planes


def pad_gray(gray: torch.Tensor, plan: Plan) -> torch.Tensor:
    """Zero-pad a (B, H, W) grey batch by the plan's margin (zeros outside, as scikit-image)."""
    return F.pad(gray, (plan.pad,) * 4)


def _centre(padded: torch.Tensor, plan: Plan) -> torch.Tensor:
    return padded[:, plan.pad: plan.pad + plan.height, plan.pad: plan.pad + plan.width]


def map_codes(codes: torch.Tensor, P: int, method: str) -> torch.Tensor:
    """Map default LBP codes to the ror, uniform or nri_uniform code of the same bit pattern.

    Written as elementwise operations on per-bit planes (no stacking), so that it vectorises
    inside a fused kernel; scikit-image's loop semantics, including its uniformity count, which
    looks at the P - 1 transitions between consecutive bits and not the wrap-around.
    """
    if method == "default":
        return codes
    c = codes.to(torch.int64 if P > 15 else torch.int32)  # rotations shift up to 2P bits
    if method == "ror":
        mask = (1 << P) - 1
        best = c
        for k in range(1, P):
            best = torch.minimum(best, ((c >> k) | (c << (P - k))) & mask)
        return best.to(codes.dtype)
    bits = [(c >> i) & 1 for i in range(P)]
    n_ones = bits[0]
    changes = torch.zeros_like(c)
    for i in range(1, P):
        n_ones = n_ones + bits[i]
        changes = changes + (bits[i] != bits[i - 1]).to(c.dtype)
    if method == "uniform":
        return torch.where(changes <= 2, n_ones, P + 1).to(codes.dtype)
    if method != "nri_uniform":
        raise InputError(f"LBP: no code mapping for method {method!r}")
    first_one = torch.full_like(c, P)
    first_zero = torch.full_like(c, P)
    for i in reversed(range(P)):
        first_one = torch.where(bits[i] == 1, i, first_one)
        first_zero = torch.where(bits[i] == 0, i, first_zero)
    rot = torch.where(first_one == 0, n_ones - first_zero, P - first_one)
    code = 1 + (n_ones - 1) * P + rot
    code = torch.where(n_ones == 0, 0, code)
    code = torch.where(n_ones == P, P * (P - 1) + 1, code)
    code = torch.where(changes > 2, P * (P - 1) + 2, code)
    return code.to(codes.dtype)


@lru_cache(maxsize=32)
def _code_table(P: int, method: str) -> torch.Tensor:
    return map_codes(torch.arange(1 << P, dtype=torch.int32), P, method)


def default_codes(padded: torch.Tensor, weights: list[torch.Tensor], plan: Plan) -> torch.Tensor:
    """Default LBP codes (B, H, W) int32 from a padded grey batch (see `pad_gray`).

    `padded` must already be in the weights' dtype when any neighbour is interpolated.
    """
    centre = _centre(padded, plan)
    code = torch.zeros(centre.shape, dtype=torch.int32, device=padded.device)
    for p, value in enumerate(neighbour_planes(padded, weights, plan)):
        code = code + (value >= centre).to(torch.int32) * (1 << p)
    return code


def local_variance(padded: torch.Tensor, weights: list[torch.Tensor], plan: Plan) -> torch.Tensor:
    """scikit-image's 'var': biased variance of the neighbours, NaN where it is zero."""
    # Accumulated neighbour by neighbour, in scikit-image's order, for identical rounding.
    total = torch.zeros_like(_centre(padded, plan))
    squares = torch.zeros_like(total)
    for value in neighbour_planes(padded, weights, plan):
        total = total + value
        squares = squares + value * value
    var = (squares - (total * total) / plan.P) / plan.P
    return torch.where(var != 0, var, torch.full_like(var, float("nan")))


def _codes_kernel(plan: Plan, method: str):
    def kernel(padded: torch.Tensor, weights: list[torch.Tensor], table: torch.Tensor | None) -> torch.Tensor:
        codes = default_codes(padded, weights, plan)
        if method == "default":
            return codes
        # A table look-up is fastest eagerly; inside a fused kernel, bit arithmetic vectorises.
        return table[codes] if table is not None else map_codes(codes, plan.P, method)
    return kernel


def pad_as(gray: torch.Tensor, plan: Plan, dtype: torch.dtype) -> torch.Tensor:
    """Zero-pad and convert in one pass (cheaper than `F.pad` followed by `.to`)."""
    B, H, W = gray.shape
    out = torch.zeros((B, H + 2 * plan.pad, W + 2 * plan.pad), dtype=dtype, device=gray.device)
    out[:, plan.pad: plan.pad + H, plan.pad: plan.pad + W] = gray
    return out


_EAGER_CHUNK_PIXELS = 1 << 19  # about 10 images of 224 x 224: the passes stay in cache
_runner = KernelRunner("LBP")


def lbp(images: torch.Tensor, P: int = 8, R: float = 1.0, method: str = "default",
        quantize: bool = True, compile: CompileMode = "auto") -> torch.Tensor:
    """Local binary pattern code maps of a batch of images.

    Args:
        images: (H, W), (B, H, W) or (B, C, H, W) with C in {1, 3}; uint8, or any integer or float
            dtype with values in [0, 255]; any device. Colour becomes ITU-R 601 luminance.
        P: number of neighbours on the circle (1..31).
        R: radius of the circle in pixels (> 0).
        method: "default" (codes 0..2^P - 1), "ror" (rotation-invariant minimum), "uniform"
            (0..P + 1), "nri_uniform" (0..P(P - 1) + 2) or "var" (local variance, NaN where flat).
        quantize: round grey levels to integers first (see `to_gray`).
        compile: "auto" (compile once it pays; see `lssat.texture._accel`), True or False.

    Returns:
        (B, 1, H, W): int32 codes, or float64 variances for "var" (float32 on devices without
        float64). Equal to scikit-image's `local_binary_pattern` on integer-valued images.
    """
    check_lbp_params(P, R, method)
    gray = to_gray(images, quantize=quantize)
    dtype = compute_dtype(gray.device)
    plan, _ = _plan_and_fracs(int(P), float(R), gray.shape[1], gray.shape[2])
    weights = plan_weights(plan, dtype, gray.device)
    # Interpolated neighbours need float64; integer offsets alone compare exactly in any dtype.
    padded = pad_as(gray, plan, dtype if weights or gray.is_floating_point() else gray.dtype)
    if method == "var":
        return local_variance(padded.to(dtype), weights, plan).unsqueeze(1)
    kernel = _codes_kernel(plan, method)
    table = _code_table(P, method).to(gray.device) if method != "default" and P <= _LUT_MAX_P else None

    def eager(padded, weights):
        step = max(1, _EAGER_CHUNK_PIXELS // (plan.height * plan.width))
        return torch.cat([kernel(padded[i:i + step], weights, table) for i in range(0, len(padded), step)])

    def make():
        return lambda padded, weights: kernel(padded, weights, None)

    key = (plan, method, tuple(padded.shape), padded.dtype, padded.device)
    codes = _runner(key, make, (padded, weights), eager, compile, padded.device)
    return codes.unsqueeze(1)
