"""Clip-level (video) models: a ViT over space-time tubelets, tube masking, per-tubelet targets.

A clip backbone is named ``clip_<timm ViT name>`` (e.g. ``clip_vit_tiny_patch16_224``): the timm
ViT of that name (any `model.kwargs` architecture override, local or hub weights) is built as for a
frame model, then *inflated* as VideoMAE inflates an image ViT:

- the patch embedding becomes a `Conv3d` over tubelets of ``tubelet`` frames x p x p; its kernel is
  the image kernel repeated over time and divided by ``tubelet`` (a static clip embeds as its frame);
- the learned position embedding of the patches is repeated over the ``frames / tubelet`` tubelet
  steps (space-time positions; the CLS position is kept), or, with ``pos_embed: sincos`` or a fixed
  image table (``model.init: mae``), replaced by a fixed separable space-time table (`space_time_table`:
  MAE's 2-D sin-cos of the patch grid plus a sinusoid of the tubelet step);
- CLS token, timm transformer blocks, final norm and pooling are the image model's own.

So with ``frames: 1, tubelet: 1`` the clip model computes exactly the image model's features.

Clip options live in ``model.kwargs.clip`` (and so travel with the model's architecture in every
checkpoint): ``frames`` (T, default 8), ``tubelet`` (default 2), ``pos_embed`` (learned | sincos),
``masking`` (tube | running_cell), ``mask_ratio`` (default 0.9, VideoMAE's; null: the recipe's) and
``rgb_target`` (pixels | difference).

Token order is tubelet-step major: token ``k * N + n`` is spatial patch ``n`` (row-major over the
patch grid) of tubelet step ``k``. The adapter's `grid_size` is that token grid flattened to 2-D
(``(T/t * gh, gw)``), so every piece written for a patch grid (decoder, masks) sees one token per
tubelet; `spatial_grid` and `time_steps` give the factors.

Masking: ``tube`` (VideoMAE) draws one spatial mask per clip and applies it to every tubelet step;
``running_cell`` (VideoMAE V2's running cell) splits the spatial grid into 2 x 2 cells, keeps
round(4 x (1 - ratio)) positions of each cell (at least 1) and moves the kept positions one place
round the cell at every tubelet step, with a random phase per clip and cell.

Reconstruction targets are per tubelet, built by the frame model's own code (`LSSATModel.
reconstruction_targets`: normalised RGB pixels, LDP / LBP code targets in the recipe's encoding) on
every frame, then concatenated over the tubelet's frames (frame, then pixel, then channel); the
``histogram`` encoding takes the code histogram of the tubelet's pixels (the mean of its frames').
With ``rgb_target: difference`` the RGB target of a frame is its normalised pixels minus the
previous frame's (the clip's first frame keeps its pixels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lssat.confkit import check_keys, field_names
from lssat.errors import ConfigError, InputError
from lssat.models.auxiliary.mae import TargetSpec
from lssat.models.backbones import BackboneAdapter, VitAdapter
from lssat.models.lssat import LSSATModel
from lssat.models.masking import PatchMask, num_kept

PREFIX = "clip_"
POS_EMBEDS = ("learned", "sincos")
MASKINGS = ("tube", "running_cell")
RGB_TARGETS = ("pixels", "difference")


def is_clip_backbone(name: str) -> bool:
    """Whether a backbone name is a clip backbone (``clip_<timm ViT name>``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


@dataclasses.dataclass(frozen=True)
class ClipOptions:
    """``model.kwargs.clip``: the clip geometry and its masked-pass options (see the module notes)."""

    frames: int = 8
    tubelet: int = 2
    pos_embed: str = "learned"
    masking: str = "tube"
    mask_ratio: float | None = 0.9
    rgb_target: str = "pixels"

    def __post_init__(self) -> None:
        for key in ("frames", "tubelet"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.kwargs.clip.{key} must be an integer >= 1, got {value!r}")
        if self.frames % self.tubelet:
            raise ConfigError(f"model.kwargs.clip.frames ({self.frames}) must be a multiple of "
                              f"model.kwargs.clip.tubelet ({self.tubelet})")
        for key, allowed in (("pos_embed", POS_EMBEDS), ("masking", MASKINGS), ("rgb_target", RGB_TARGETS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"model.kwargs.clip.{key} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, key)!r}")
        r = self.mask_ratio
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < 1):
            raise ConfigError(f"model.kwargs.clip.mask_ratio must be null or a number in (0, 1), got {r!r}")

    @classmethod
    def from_value(cls, value: Any) -> ClipOptions:
        """From the ``clip`` mapping (None: the defaults); unknown keys are a ConfigError naming them."""
        if value is None:
            return cls()
        if isinstance(value, ClipOptions):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"model.kwargs.clip must be a mapping of clip options, got {value!r}")
        check_keys(value, field_names(cls), "model.kwargs.clip")
        return cls(**dict(value))


def space_time_table(dim: int, steps: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed separable space-time positions (as the spatiotemporal MAE of Feichtenhofer et al.):
    MAE's 2-D sin-cos table of the patch grid plus a 1-D sinusoid of the tubelet step, the latter
    shifted so that step 0 adds nothing (one step gives exactly MAE's table). (steps * gh * gw, dim)."""
    from lssat.models.backbones import sincos_pos_embed

    space = sincos_pos_embed(dim, grid)[0]  # (gh * gw, dim)
    time = sinusoid_table(steps, dim)
    time = time - time[:1]
    return (time.unsqueeze(1) + space.unsqueeze(0)).reshape(steps * space.shape[0], dim)


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed 1-D sinusoid position table, (positions, dim): sin on even, cos on odd channels."""
    pos = torch.arange(positions, dtype=torch.float64).unsqueeze(1)
    div = torch.pow(10000.0, 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)
    table = pos / div
    table[:, 0::2] = torch.sin(table[:, 0::2])
    table[:, 1::2] = torch.cos(table[:, 1::2])
    return table.float()


class TubeletEmbed(nn.Module):
    """Tubelet patch embedding: (B, T, C, H, W) -> (B, T/t * H/p * W/p, D) by a Conv3d (t x p x p)."""

    def __init__(self, proj: nn.Conv3d, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        self.norm = norm if norm is not None else nn.Identity()

    @classmethod
    def inflate(cls, conv: nn.Conv2d, tubelet: int, norm: nn.Module | None = None) -> TubeletEmbed:
        """From an image patch embedding: the kernel repeated over `tubelet` frames, divided by `tubelet`."""
        proj = nn.Conv3d(conv.in_channels, conv.out_channels, (tubelet, *conv.kernel_size),
                         (tubelet, *conv.stride), bias=conv.bias is not None)
        with torch.no_grad():
            proj.weight.copy_(conv.weight.unsqueeze(2).repeat(1, 1, tubelet, 1, 1) / tubelet)
            if conv.bias is not None:
                proj.bias.copy_(conv.bias)
        return cls(proj, norm)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 5:
            raise InputError(f"a clip backbone takes (B, T, C, H, W) clips, got shape {tuple(clips.shape)}")
        x = self.proj(clips.transpose(1, 2))  # (B, D, T', gh, gw)
        return self.norm(x.flatten(2).transpose(1, 2))


class ClipVitAdapter(VitAdapter):
    """A timm VisionTransformer inflated to clips (see the module notes); drops masked tokens (MAE)."""

    family = "clip"

    def __init__(self, image: VitAdapter, options: ClipOptions) -> None:
        BackboneAdapter.__init__(self, image.model, image.img_size)
        model = image.model
        if getattr(model, "dynamic_img_size", False):
            raise ConfigError("clip backbones do not support timm's dynamic_img_size")
        t, steps = options.tubelet, options.frames // options.tubelet
        self.options = options
        self.num_frames, self.tubelet_size, self.time_steps = options.frames, t, steps
        self.patch_size = image.patch_size
        self.spatial_grid = tuple(image.grid_size)
        self.grid_size = (steps * self.spatial_grid[0], self.spatial_grid[1])
        self.embed_dim = image.embed_dim
        self.num_prefix_tokens = image.num_prefix_tokens
        pe = model.patch_embed
        model.patch_embed = TubeletEmbed.inflate(pe.proj, t, pe.norm)
        if model.pos_embed is not None:
            old = model.pos_embed.data
            prefix = 0 if model.no_embed_class else self.num_prefix_tokens
            cls_pos, patch_pos = old[:, :prefix], old[:, prefix:]
            # init "mae" fixes a 2-D sin-cos table, which repeated over time would carry no time:
            # a fixed table then becomes the fixed space-time table, as with pos_embed sincos
            if options.pos_embed == "learned" and model.pos_embed.requires_grad:
                patch_pos = patch_pos.repeat(1, steps, 1)
                model.pos_embed = nn.Parameter(torch.cat([cls_pos, patch_pos], dim=1))
            else:
                # a frozen parameter, as MAE's init leaves the image table: saved with the weights, so
                # a model rebuilt without init "mae" (inference) loads the same table
                table = space_time_table(old.shape[-1], steps, self.spatial_grid).to(old)
                model.pos_embed = nn.Parameter(torch.cat([torch.zeros_like(cls_pos), table.unsqueeze(0)], 1),
                                               requires_grad=False)

    @property
    def num_patches(self) -> int:
        """Tokens of a clip: tubelet steps x spatial patches."""
        return self.time_steps * self.spatial_grid[0] * self.spatial_grid[1]

    def add_stem(self, key: str, in_chans: int) -> None:
        """A copy of the tubelet embedding taking `in_chans` channels (kernel summed over channels)."""
        import copy

        stem = copy.deepcopy(self.stem_module())
        conv = stem.proj
        new = nn.Conv3d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, bias=conv.bias is not None)
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True).repeat(1, in_chans, 1, 1, 1) / in_chans)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        stem.proj = new
        self.stems[key] = stem


def split_clip_kwargs(kwargs: dict[str, Any]) -> tuple[ClipOptions, dict[str, Any]]:
    """(clip options, the timm architecture overrides) of a clip backbone's kwargs."""
    rest = dict(kwargs)
    return ClipOptions.from_value(rest.pop("clip", None)), rest


def create_clip_backbone(name: str, img_size: int = 224, **kwargs: Any) -> ClipVitAdapter:
    """A clip backbone: the timm ViT `name` without its ``clip_`` prefix (built by
    `backbones.create_backbone` with the same weights options and overrides), inflated to clips.

    `kwargs`: ``clip`` (a `ClipOptions` mapping) plus `create_backbone`'s own keyword arguments.
    """
    from lssat.models.backbones import create_backbone, family_of

    image_name = name[len(PREFIX):]
    fam = family_of(image_name)
    if fam.adapter is not VitAdapter:
        raise ConfigError(f"backbone {name!r}: clip backbones inflate a plain ViT (vit_*, deit_*), "
                          f"not the {fam.name} family")
    options, rest = split_clip_kwargs(kwargs)
    image = create_backbone(image_name, img_size, **rest)
    return ClipVitAdapter(image, options)


# ---------------------------------------------------------------------------------------- masking
def _mask_from_keep(keep: torch.Tensor, num_tokens: int) -> PatchMask:
    """The PatchMask of per-sample kept token indices (visible first in the shuffled order)."""
    b = keep.shape[0]
    device = keep.device
    mask = torch.ones(b, num_tokens, device=device)
    mask.scatter_(1, keep, 0.0)
    # the shuffled order: kept tokens (in the order given), then the masked ones in token order
    rest = torch.argsort(mask, dim=1, stable=True)[:, keep.shape[1]:]
    shuffle = torch.cat([keep, rest], dim=1)
    return PatchMask(keep=keep, mask=mask, restore=torch.argsort(shuffle, dim=1))


def tube_masking(batch: int, time_steps: int, spatial: int, ratio: float = 0.9, *,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None) -> PatchMask:
    """VideoMAE's tube masking: one random spatial mask per clip, the same at every tubelet step.

    Keeps `masking.num_kept(spatial, ratio)` patches of each step (so time_steps times that many
    tokens). Token order: step-major (see the module notes). Draws as `masking.random_masking`
    (noise on the generator's device).
    """
    keep_n = num_kept(spatial, ratio)
    noise_device = generator.device if generator is not None else (device or "cpu")
    noise = torch.rand(batch, spatial, generator=generator, device=noise_device)
    target = torch.device(device) if device is not None else noise.device
    keep_s = torch.argsort(noise.to(target), dim=1)[:, :keep_n]
    steps = torch.arange(time_steps, device=target).view(1, -1, 1) * spatial
    keep = (keep_s.unsqueeze(1) + steps).reshape(batch, -1)
    return _mask_from_keep(keep, time_steps * spatial)


def running_cell_masking(batch: int, time_steps: int, grid: tuple[int, int], ratio: float = 0.9, *,
                         generator: torch.Generator | None = None,
                         device: torch.device | str | None = None) -> PatchMask:
    """VideoMAE V2's running-cell masking on 2 x 2 cells (see the module notes); needs an even grid."""
    gh, gw = grid
    if gh % 2 or gw % 2:
        raise ConfigError(f"running_cell masking needs an even patch grid, got {gh}x{gw}")
    keep_per_cell = min(max(round(4 * (1.0 - ratio)), 1), 3)
    noise_device = generator.device if generator is not None else (device or "cpu")
    cells = (gh // 2) * (gw // 2)
    phase = torch.randint(0, 4, (batch, cells), generator=generator, device=noise_device)
    target = torch.device(device) if device is not None else phase.device
    phase = phase.to(target)
    # cell positions in running order: (0,0) -> (0,1) -> (1,1) -> (1,0)
    ring = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 0]], device=target)
    cy, cx = torch.meshgrid(torch.arange(gh // 2, device=target), torch.arange(gw // 2, device=target), indexing="ij")
    cy, cx = cy.reshape(1, 1, -1, 1), cx.reshape(1, 1, -1, 1)
    step = torch.arange(time_steps, device=target).view(1, -1, 1, 1)
    offs = torch.arange(keep_per_cell, device=target).view(1, 1, 1, -1)
    slot = (phase.view(batch, 1, cells, 1) + step + offs) % 4  # (B, T', cells, k)
    y = cy * 2 + ring[slot][..., 0]
    x = cx * 2 + ring[slot][..., 1]
    keep = (step * gh * gw + y * gw + x).reshape(batch, -1)
    return _mask_from_keep(keep, time_steps * gh * gw)


# ---------------------------------------------------------------------------------------- the model
def tubelet_spec(spec: TargetSpec, tubelet: int) -> TargetSpec:
    """A frame target's spec widened to a tubelet of `tubelet` frames (histograms keep their width)."""
    if spec.kind == "histogram":
        return spec
    return dataclasses.replace(spec, width=spec.width * tubelet)


class ClipModel(LSSATModel):
    """An `LSSATModel` over clips: `LSSATModel("clip_...", ...)` builds one (same arguments).

    Batches are (B, T, 3, H, W) (uint8 or float in [0, 255]); every recipe without puzzle or
    in-painting branches works (supervised, ssat, lssat-ldp, lssat-lbp, rrlnrc, fusion, mldp, ...).
    """

    backbone: ClipVitAdapter

    def __init__(self, backbone_name: str, num_outputs: int, recipe: Any = "ssat", img_size: int = 224,
                 **kwargs: Any) -> None:
        super().__init__(backbone_name, num_outputs, recipe, img_size, **kwargs)
        r, bb = self.recipe, self.backbone
        self.clip_options = bb.options
        extra = sorted(set(r.aux) - {"mae"})
        if extra:
            raise ConfigError(f"recipe {r.name}: the {', '.join(extra)} branch has no clip form; clip models "
                              f"take recipes whose only auxiliary branch is mae")
        if self.mae is not None:
            decoder = self.mae.decoder
            pos = sinusoid_table(bb.num_patches, decoder.width)
            pos = torch.cat([torch.zeros(bb.num_prefix_tokens, decoder.width), pos], dim=0).unsqueeze(0)
            decoder.pos_embed = pos.to(decoder.pos_embed)

    @property
    def num_frames(self) -> int:
        """Frames per clip (T)."""
        return self.backbone.num_frames

    def target_specs(self) -> list[TargetSpec]:
        return [tubelet_spec(s, self.backbone.tubelet_size) for s in super().target_specs()]

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Check a batch of clips; float32 (B, T, 3, H, W) in [0, 255] on the model's device."""
        t = self.num_frames
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            raise InputError(f"a clip model takes clips (B, {t}, 3, H, W), not images {tuple(images.shape)}: "
                             f"score videos with it")
        if not isinstance(images, torch.Tensor) or images.ndim != 5 or images.shape[2] not in (1, 3):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"clips must be a (B, {t}, 3, H, W) tensor, got {shape}")
        if images.shape[1] != t:
            raise InputError(f"clips have {images.shape[1]} frames, the model takes {t}")
        b = images.shape[0]
        flat = super().prepare(images.flatten(0, 1))
        return flat.unflatten(0, (b, t))

    def image_input(self, kind: str, raw: torch.Tensor, cache: dict[str, torch.Tensor] | None = None):
        x, stem = super().image_input(kind, raw.flatten(0, 1), cache)
        return x.unflatten(0, raw.shape[:2]), stem

    def reconstruction_targets(self, raw: torch.Tensor, cache: dict[str, torch.Tensor] | None = None):
        """Per-target (B, T/t * N, D) targets per tubelet, in token order (see the module notes)."""
        b, t_all = raw.shape[:2]
        bb = self.backbone
        t, steps = bb.tubelet_size, bb.time_steps
        per_frame = super().reconstruction_targets(raw.flatten(0, 1), cache)
        out = {}
        for name, value in per_frame.items():
            v = value.unflatten(0, (b, t_all))  # (B, T, N, D)
            if name == "rgb" and self.clip_options.rgb_target == "difference":
                v = torch.cat([v[:, :1], v[:, 1:] - v[:, :-1]], dim=1)
            n, d = v.shape[2:]
            v = v.reshape(b, steps, t, n, d)
            if self.mae.specs[name].kind == "histogram":
                out[name] = v.mean(dim=2).reshape(b, steps * n, d)
            else:
                out[name] = v.permute(0, 1, 3, 2, 4).reshape(b, steps * n, t * d)
        return out

    def draw_mask(self, batch: int, generator: torch.Generator | None, device: torch.device) -> PatchMask:
        bb = self.backbone
        o = self.clip_options
        ratio = o.mask_ratio if o.mask_ratio is not None else self.recipe.mask_ratio
        if o.masking == "running_cell":
            return running_cell_masking(batch, bb.time_steps, bb.spatial_grid, ratio, generator=generator,
                                        device=device)
        spatial = bb.spatial_grid[0] * bb.spatial_grid[1]
        return tube_masking(batch, bb.time_steps, spatial, ratio, generator=generator, device=device)

    def reconstruction_images(self, reconstructions):
        raise ConfigError("reconstruction pictures are drawn for frame models only, not clip models")

    def example_input(self, size: int | None = None) -> torch.Tensor:
        """A grey clip of one sample (for FLOP counts and exports)."""
        size = size or self.img_size
        return torch.full((1, self.num_frames, 3, size, size), 128.0, device=self.rgb_mean.device)



def check_clip_config(backbone: str, kwargs: Mapping[str, Any], clip_data: Any) -> None:
    """A run's model and data agree on clips: a clip backbone needs ``data.clip`` with as many frames
    as ``model.kwargs.clip.frames``; a frame backbone takes no ``data.clip``. ConfigError otherwise."""
    if not is_clip_backbone(backbone):
        if clip_data is not None:
            raise ConfigError(f"data.clip is set but model.backbone {backbone!r} is a frame model; use a clip "
                              f"backbone (clip_{backbone}) or remove data.clip")
        if "clip" in kwargs:
            raise ConfigError(f"model.kwargs.clip applies to clip backbones (clip_...), not {backbone!r}")
        return
    options = ClipOptions.from_value(kwargs.get("clip"))
    if clip_data is None:
        raise ConfigError(f"model.backbone {backbone!r} takes clips: set data.clip (frames: {options.frames})")
    if clip_data.frames != options.frames:
        raise ConfigError(f"data.clip.frames ({clip_data.frames}) differs from model.kwargs.clip.frames "
                          f"({options.frames}): the model takes clips of its own length")
