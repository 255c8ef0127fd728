"""Reconstruction targets built from texture code maps, per patch, in MAE's patch order.

Three encodings of a (B, 1, H, W) code map with patch size p (N = (H / p) * (W / p) patches,
numbered row-major over the patch grid; inside a patch, pixels row-major, as MAE's `patchify`):

- ``scaled``: the code divided by the descriptor's largest code, (B, N, p*p) floats in [0, 1];
  a regression target for a mean-squared error (the papers' default).
- ``index``: the code's position in the sorted table of valid codes, (B, N, p*p) int64 in
  [0, num_codes); a classification target for cross-entropy (codes are categorical).
- ``histogram``: per patch, the fraction of pixels holding each valid code, (B, N, num_codes)
  floats summing to 1; a distribution target (e.g. KL divergence).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from lssat.errors import InputError
from lssat.texture.lbp import _LUT_MAX_P, _code_table, check_lbp_params
from lssat.texture.ldp import check_ldp_params

ENCODINGS = ("scaled", "index", "histogram")


@dataclass(frozen=True)
class CodeSpace:
    """The valid codes of one descriptor setting, sorted ascending."""

    name: str
    codes: tuple[int, ...]

    @property
    def num_codes(self) -> int:
        return len(self.codes)

    @property
    def max_code(self) -> int:
        return self.codes[-1]

    def index_table(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """A lookup table from code to its index, -1 for codes outside the space."""
        return _index_table(self.codes).to(device)


@lru_cache(maxsize=32)
def _index_table(codes: tuple[int, ...]) -> torch.Tensor:
    table = torch.full((codes[-1] + 1,), -1, dtype=torch.int64)
    table[torch.tensor(codes)] = torch.arange(len(codes))
    return table


@lru_cache(maxsize=32)
def lbp_code_space(P: int = 8, method: str = "uniform") -> CodeSpace:
    """Valid codes of LBP with P neighbours and the given method ('var' has none: it is not a code)."""
    check_lbp_params(P, 1.0, method)
    if method == "uniform":
        codes = tuple(range(P + 2))
    elif method == "nri_uniform":
        codes = tuple(range(P * (P - 1) + 3))
    elif method == "var":
        raise InputError("LBP: method 'var' gives variances, not codes; it has no code space")
    elif P > _LUT_MAX_P:
        raise InputError(f"LBP: code spaces of method {method!r} need P <= {_LUT_MAX_P}, got P={P}")
    elif method == "default":
        codes = tuple(range(1 << P))
    else:  # ror: the rotation-minimal codes
        codes = tuple(sorted(set(_code_table(P, "ror").tolist())))
    return CodeSpace(f"lbp-{method}-P{P}", codes)


@lru_cache(maxsize=8)
def ldp_code_space(k: int = 3) -> CodeSpace:
    """Valid LDP codes: the 8-bit values with exactly k bits set (56 for k = 3)."""
    check_ldp_params(k)
    return CodeSpace(f"ldp-k{k}", tuple(c for c in range(256) if bin(c).count("1") == k))


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), MAE's order: patches row-major, then pixels, then channels."""
    if x.dim() != 4:
        raise InputError(f"patchify: expected (B, C, H, W), got shape {tuple(x.shape)}")
    B, C, H, W = x.shape
    p = patch_size
    if p < 1 or H % p or W % p:
        raise InputError(f"patchify: image size {H}x{W} is not divisible by the patch size {p}")
    h, w = H // p, W // p
    x = x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, N, p*p*C) -> (B, C, H, W)."""
    B, N, D = x.shape
    p = patch_size
    h, w = height // p, width // p
    C = D // (p * p)
    if N != h * w or C * p * p != D:
        raise InputError(f"unpatchify: {N} patches of {D} values do not tile a {height}x{width} image")
    x = x.reshape(B, h, w, p, p, C).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, C, height, width)


def scaled_map(codes: torch.Tensor, space: CodeSpace) -> torch.Tensor:
    """A code map as float32 in [0, 1] (code / largest code): the texture image used as an input."""
    return codes.to(torch.float32) / float(space.max_code)


def code_index(codes: torch.Tensor, space: CodeSpace, check: bool | None = None) -> torch.Tensor:
    """Each code's index in the space's table (int64).

    With `check` (default: on CPU only, since on an accelerator it would stall every training step
    on a host sync), codes outside the space raise InputError.
    """
    check = codes.device.type == "cpu" if check is None else check
    if check and codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > space.max_code):
        raise InputError(f"code map holds codes outside {space.name} (0..{space.max_code})")
    index = space.index_table(codes.device)[codes.long()]
    if check and bool((index < 0).any()):
        raise InputError(f"code map holds codes that are not valid in {space.name}")
    return index


def encode_targets(codes: torch.Tensor, space: CodeSpace, encoding: str, patch_size: int) -> torch.Tensor:
    """Per-patch reconstruction targets of a (B, 1, H, W) code map; see the module docstring."""
    if encoding not in ENCODINGS:
        raise InputError(f"target encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if codes.dim() != 4 or codes.shape[1] != 1:
        raise InputError(f"expected a (B, 1, H, W) code map, got shape {tuple(codes.shape)}")
    if encoding == "scaled":
        return patchify(scaled_map(codes, space), patch_size)
    index = patchify(code_index(codes, space), patch_size)
    if encoding == "index":
        return index
    B, N, D = index.shape
    counts = torch.zeros(B, N, space.num_codes, dtype=torch.float32, device=codes.device)
    counts.scatter_add_(2, index, torch.ones_like(index, dtype=torch.float32))
    return counts / D
