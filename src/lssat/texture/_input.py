"""Input checking and grayscale conversion shared by the texture descriptors."""

from __future__ import annotations

import torch

from lssat.errors import InputError

# ITU-R BT.601 luma weights (what PIL's convert("L") and OpenCV's cvtColor use).
LUMA_601 = (0.299, 0.587, 0.114)


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it (needed for bit-exact parity), else float32 (e.g. MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def to_gray(images: torch.Tensor, dtype: torch.dtype | None = None, quantize: bool = True,
            name: str = "images") -> torch.Tensor:
    """Check a batch of images and turn it into (B, H, W) grayscale in [0, 255].

    Single-channel integer images keep their dtype (cheaper to pad and move); anything that needs
    arithmetic (colour, floats) comes back in `dtype` (default: float64 where the device has it).

    Accepts (H, W), (B, H, W) or (B, C, H, W) with C in {1, 3}, any integer or floating dtype with
    values in [0, 255]. Colour is converted with the ITU-R 601 weights. With `quantize` (the default)
    grey levels are rounded to integers, as an 8-bit grayscale image would hold them: local binary
    patterns compare neighbours for equality, and floating-point noise would otherwise flip bits in
    flat regions.
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.dim() == 2:
        images = images.unsqueeze(0)
    elif images.dim() == 4:
        channels = images.shape[1]
        if channels not in (1, 3):
            raise InputError(f"{name}: expected 1 or 3 channels in (B, C, H, W), got C={channels}")
    elif images.dim() != 3:
        raise InputError(
            f"{name}: expected a tensor of shape (H, W), (B, H, W) or (B, C, H, W), got {tuple(images.shape)}"
        )
    if images.numel() == 0:
        raise InputError(f"{name}: empty image batch of shape {tuple(images.shape)}")
    if images.dtype == torch.bool or images.is_complex():
        raise InputError(f"{name}: expected integer or floating values in [0, 255], got {images.dtype}")
    dtype = dtype or compute_dtype(images.device)
    if images.is_floating_point() and bool(torch.isnan(images).any()):
        raise InputError(f"{name}: image values contain NaN")
    if not images.is_floating_point() and (images.dim() == 3 or images.shape[1] == 1):
        return (images if images.dim() == 3 else images[:, 0]).contiguous()
    x = images.to(dtype)
    blended = False
    if x.dim() == 4:
        if x.shape[1] == 3:
            r, g, b = x.unbind(1)
            x = r * LUMA_601[0] + g * LUMA_601[1] + b * LUMA_601[2]
            blended = True
        else:
            x = x[:, 0]
    if quantize and (blended or images.is_floating_point()):
        x = torch.round(x)
    return x.contiguous()
