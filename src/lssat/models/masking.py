"""Per-sample random patch masking and the patch layout shared by masking, decoder and targets.

Masking follows MAE (`models_mae.random_masking`): one uniform noise value per patch, `argsort`
of the noise gives a random permutation per sample, the first `num_keep` patches of it are kept.
Every sample keeps the same number of patches, so the visible tokens stack into one tensor.

Patch order everywhere in lssat is row-major over the patch grid (patch row, patch column), and
row-major inside a patch; `patchify` puts the channel last inside a patch (`(p, q, c)`), as MAE does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lssat.errors import ConfigError, InputError


@dataclass(frozen=True)
class PatchMask:
    """The result of one random masking draw.

    Attributes:
        keep: (B, num_keep) long indices of the visible patches, in the drawn (random) order.
        mask: (B, N) float, 1 = masked, 0 = visible, in patch order.
        restore: (B, N) long; `restore[b, i]` is the position of patch `i` in the shuffled order
            (visible patches first, then masked ones), used to un-shuffle decoder tokens.
    """

    keep: torch.Tensor
    mask: torch.Tensor
    restore: torch.Tensor

    @property
    def num_keep(self) -> int:
        """Number of visible patches per sample."""
        return int(self.keep.shape[1])


def num_kept(num_patches: int, ratio: float) -> int:
    """Visible patches per sample for a mask ratio: `int(N * (1 - ratio))`, clamped to [1, N - 1]."""
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"mask_ratio: {ratio} is outside (0, 1)")
    if num_patches < 2:
        raise ConfigError(f"masking needs at least 2 patches, the patch grid has {num_patches}")
    return min(max(int(num_patches * (1.0 - ratio)), 1), num_patches - 1)


def random_masking(
    batch: int,
    num_patches: int,
    ratio: float = 0.75,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> PatchMask:
    """Draw an independent random mask per sample.

    Args:
        batch: number of samples B.
        num_patches: patches per sample N.
        ratio: fraction of patches to mask, in (0, 1).
        generator: optional seeded generator; the noise is drawn on the generator's device and
            moved to `device`, so a CPU generator gives the same mask on any device.
        device: where the returned tensors live (default: the generator's device, else CPU).
    """
    keep_n = num_kept(num_patches, ratio)
    noise_device = generator.device if generator is not None else (device or "cpu")
    noise = torch.rand(batch, num_patches, generator=generator, device=noise_device)
    target = torch.device(device) if device is not None else noise.device
    noise = noise.to(target)
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    keep = shuffle[:, :keep_n]
    mask = torch.ones(batch, num_patches, device=target)
    mask[:, :keep_n] = 0.0
    mask = torch.gather(mask, 1, restore)
    return PatchMask(keep=keep, mask=mask, restore=restore)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), patches row-major, channel last inside a patch."""
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise InputError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = images.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, N, p*p*C) -> (B, C, gh*p, gw*p)."""
    b = patches.shape[0]
    gh, gw = grid
    p = patch_size
    x = patches.reshape(b, gh, gw, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(b, channels, gh * p, gw * p)


def upsample_mask(mask: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """A (B, gh*gw) patch mask -> (B, (gh*f)*(gw*f)) mask on a grid `factor` times finer."""
    b = mask.shape[0]
    m = mask.reshape(b, grid[0], grid[1])
    m = m.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)
    return m.reshape(b, -1)


def mask_to_image(mask: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """A (B, N) patch mask -> (B, 1, H, W) pixel mask (for visualisation)."""
    b = mask.shape[0]
    m = upsample_mask(mask, grid, patch_size)
    return m.reshape(b, 1, grid[0] * patch_size, grid[1] * patch_size)
