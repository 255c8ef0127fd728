"""Reconstruction decoders: the MAE decoder (token-dropping backbones) and a SimMIM light head
(mask-token backbones). Both predict, for every patch of the masking grid, one vector per target.

MAE decoder (He et al., `models_mae.py`): linear embedding of the encoder tokens to the decoder
width, learned mask tokens appended for the dropped patches, tokens un-shuffled to patch order,
fixed 2-D sin-cos position embedding (zeros on prefix tokens), timm transformer blocks, LayerNorm,
then one linear prediction head per target.

Light head (Xie et al., SimMIM): the encoder already saw mask tokens at every position, so each
final-grid feature is mapped by one linear layer per target to the prediction of its patch. This is
SimMIM's 1x1 convolution to `stride^2 * channels` followed by pixel shuffle, kept in patch layout
(`masking.unpatchify` turns it into an image).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from lssat.errors import ConfigError


def default_decoder_size(encoder_dim: int) -> tuple[int, int, int]:
    """(width, depth, heads) by encoder width: ViT-T/S (<= 384): 128 wide, 2 blocks;
    ViT-B/L/H: 512 wide, 8 blocks; 16 heads and MLP ratio 4 in both (METHOD.md section 2)."""
    if encoder_dim <= 384:
        return 128, 2, 16
    return 512, 8, 16


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MAEDecoder(nn.Module):
    """MAE decoder over prefix + visible encoder tokens; predicts every patch for every target.

    Args:
        encoder_dim: width of the encoder's output tokens.
        grid_size: patch grid (rows, cols) of the masking grid.
        num_prefix_tokens: prefix tokens (CLS, ...) leading the encoder output.
        outputs: target name -> prediction width per patch.
        width, depth, num_heads: decoder size; None = `default_decoder_size(encoder_dim)`.
        mlp_ratio: MLP hidden ratio of the decoder blocks.
    """

    def __init__(
        self,
        encoder_dim: int,
        grid_size: tuple[int, int],
        num_prefix_tokens: int,
        outputs: dict[str, int],
        width: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
        from timm.models.vision_transformer import Block

        d_width, d_depth, d_heads = default_decoder_size(encoder_dim)
        width = width or d_width
        depth = depth or d_depth
        num_heads = num_heads or (d_heads if width % d_heads == 0 else _largest_divisor(width, d_heads))
        if width % 4 or width % num_heads:
            raise ConfigError(
                f"decoder.width {width} must be a multiple of 4 (sin-cos embedding) and of num_heads {num_heads}"
            )
        self.width, self.depth, self.num_heads = width, depth, num_heads
        self.grid_size = tuple(grid_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.embed = nn.Linear(encoder_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        pos = build_sincos2d_pos_embed(list(self.grid_size), dim=width)
        pos = torch.cat([torch.zeros(num_prefix_tokens, width), pos], dim=0).unsqueeze(0)
        self.register_buffer("pos_embed", pos, persistent=False)
        norm = functools.partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(width, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth)
        )
        self.norm = norm(width)
        self.heads = nn.ModuleDict({name: nn.Linear(width, dim) for name, dim in outputs.items()})
        self.apply(_init_linear)
        nn.init.normal_(self.mask_token, std=0.02)

    def hidden(self, features: torch.Tensor, restore: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised decoder tokens of the patches, (B, N, width), in patch order.

        `features` are the encoder outputs (prefix + visible tokens, in the kept order); `restore`
        the masking's restore indices, or None when every patch is present (unmasked encoding).
        """
        p = self.num_prefix_tokens
        x = self.embed(features)
        prefix, patches = x[:, :p], x[:, p:]
        n = self.grid_size[0] * self.grid_size[1]
        if restore is not None:
            missing = n - patches.shape[1]
            fill = self.mask_token.expand(x.shape[0], missing, -1).to(patches.dtype)
            patches = torch.cat([patches, fill], dim=1)
            index = restore.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
            patches = torch.gather(patches, 1, index)
        elif patches.shape[1] != n:
            raise ValueError(f"decoder got {patches.shape[1]} patch tokens without restore indices, expected {n}")
        x = torch.cat([prefix, patches], dim=1) + self.pos_embed.to(x.dtype)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, p:]

    def forward(self, features: torch.Tensor, restore: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-target predictions, each (B, N, outputs[name])."""
        h = self.hidden(features, restore)
        return {name: head(h) for name, head in self.heads.items()}


class LightHead(nn.Module):
    """SimMIM-style prediction from per-patch final features: one linear layer per target.

    Args:
        in_dim: width of the backbone's per-patch final features.
        outputs: target name -> prediction width per patch.
    """

    def __init__(self, in_dim: int, outputs: dict[str, int]) -> None:
        super().__init__()
        self.width = in_dim
        self.heads = nn.ModuleDict({name: nn.Linear(in_dim, dim) for name, dim in outputs.items()})
        self.apply(_init_linear)

    def forward(self, patch_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, N, in_dim) -> per-target predictions (B, N, outputs[name])."""
        return {name: head(patch_features) for name, head in self.heads.items()}


def _largest_divisor(width: int, at_most: int) -> int:
    return next(h for h in range(min(at_most, width), 0, -1) if width % h == 0)
