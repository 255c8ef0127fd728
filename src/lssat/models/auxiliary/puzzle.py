"""HMTL puzzling (Pourmirzaei et al., arXiv 2105.06421): predict where each shuffled tile came from.

The image is cut into grid x grid tiles (2x2 or 3x3), the tiles are permuted by a random permutation
per sample and reassembled. For each tile position one softmax head predicts the original index of
the tile now at that position (the T heads are stored as one linear layer with T x T outputs). When
the image side is not a multiple of the grid, the leftover right/bottom border is not shuffled.
The loss is, as in HMTL, the sum over tile positions of each head's cross-entropy (weight 1 each;
each averaged over the batch), or with reduction "mean" their mean (T times smaller). Dropout
(HMTL: 0.2) is applied to the pooled feature before the heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shuffle_tiles(
    images: torch.Tensor, grid: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle grid x grid tiles of each image independently.

    Returns the shuffled images (same shape and dtype) and the labels (B, grid*grid) long:
    `labels[b, i]` is the original (row-major) index of the tile placed at position i.
    """
    b, c, h, w = images.shape
    th, tw = h // grid, w // grid
    t = grid * grid
    noise_device = generator.device if generator is not None else images.device
    perm = torch.argsort(torch.rand(b, t, generator=generator, device=noise_device), dim=1).to(images.device)
    region = images[:, :, : th * grid, : tw * grid]
    tiles = region.reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(b, t, c, th, tw)
    index = perm.view(b, t, 1, 1, 1).expand(-1, -1, c, th, tw)
    moved = torch.gather(tiles, 1, index)
    rebuilt = moved.reshape(b, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, th * grid, tw * grid)
    out = images.clone()
    out[:, :, : th * grid, : tw * grid] = rebuilt
    return out, perm


class PuzzleAux(nn.Module):
    """Tile-position heads on a pooled feature.

    Args:
        in_dim: width of the pooled feature of the shuffled image.
        grid: 2 or 3 (tiles per side).
        reduction: "sum" (HMTL) or "mean" over tile positions.
        dropout: dropout on the pooled feature before the heads.
    """

    def __init__(self, in_dim: int, grid: int, reduction: str = "sum", dropout: float = 0.0) -> None:
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"puzzle reduction must be sum or mean, got {reduction!r}")
        self.grid = grid
        self.tiles = grid * grid
        self.reduction = reduction
        self.drop = nn.Dropout(dropout)
        self.heads = nn.Linear(in_dim, self.tiles * self.tiles)
        nn.init.trunc_normal_(self.heads.weight, std=0.02)
        nn.init.zeros_(self.heads.bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, T, T) logits: position x original tile index."""
        return self.heads(self.drop(pooled)).reshape(-1, self.tiles, self.tiles)

    def losses(self, pooled: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"puzzle_loss": cross-entropy summed (or averaged) over positions, "puzzle_acc": detached
        accuracy}."""
        logits = self(pooled)
        loss = F.cross_entropy(logits.reshape(-1, self.tiles).float(), labels.reshape(-1))  # mean over B x T
        if self.reduction == "sum":
            loss = loss * self.tiles
        acc = (logits.argmax(dim=-1) == labels).float().mean().detach()
        return {"puzzle_loss": loss, "puzzle_acc": acc}
