"""timm backbones behind one adapter interface for masked and unmasked passes.

An adapter wraps a `timm` model and splits its forward pass in two:

- `embed(x) -> tokens`: stem (patch embedding) plus prefix tokens (CLS, distillation, registers)
  and the absolute position embedding, shape (B, num_prefix_tokens + N_embed, D).
- `encode(tokens, keep=None, mask=None) -> features`: the rest of the network.

Two masking styles, one per family (see `FAMILIES`):

- "drop" (MAE): plain ViT families (ViT, DeiT, EVA, CaiT). `encode(tokens, keep=idx)` runs the
  encoder over the prefix tokens and the visible patch tokens only.
- "token" (SimMIM): families whose layers need the full grid (Swin, ConvNeXt, BEiT's relative
  position bias). `encode(tokens, mask=m)` replaces the masked patch tokens by a learned mask token
  (plus the position embedding, where the model has one) and runs the full grid.

`patch_size` / `grid_size` are the masking and reconstruction unit: the patch embedding for ViT-like
families, the final feature map's stride for hierarchical ones (Swin, ConvNeXt), whose stem tokens are
masked in blocks of (stride / stem stride)^2, as SimMIM does with its 32-pixel mask patches.

`pool(features)` is timm's own pre-logits pooling (`forward_head(pre_logits=True)`), with the CLS
token forced for the token-dropping families when the model has one and the user did not choose
`global_pool`; hierarchical families and BEiT average their final tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lssat.errors import ConfigError, InputError
from lssat.models.masking import upsample_mask


class BackboneAdapter(nn.Module):
    """Common interface over a timm model; see the module docstring."""

    masking: str = ""
    family: str = ""

    def __init__(self, model: nn.Module, img_size: int) -> None:
        super().__init__()
        self.model = model
        self.img_size = img_size
        self.stems = nn.ModuleDict()

    # --- geometry -------------------------------------------------------------------------
    patch_size: int
    grid_size: tuple[int, int]
    embed_dim: int
    num_prefix_tokens: int

    @property
    def num_patches(self) -> int:
        """Patches in the masking grid."""
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_features(self) -> int:
        """Width of `pool` and `patch_features` outputs."""
        return int(self.model.num_features)

    # --- forward pieces ---------------------------------------------------------------------
    def stem_module(self) -> nn.Module:
        """The model's own input stem (patch embedding)."""
        raise NotImplementedError

    def after_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Prefix tokens and position embedding on the stem's output; returns (B, P + N, D)."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor, stem: str | None = None) -> torch.Tensor:
        """Stem (the default one, or a named extra stem from `add_stem`) + prefix + position."""
        module = self.stem_module() if stem is None else self.stems[stem]
        return self.after_stem(module(x))

    def encode(
        self, tokens: torch.Tensor, keep: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Run the encoder; `keep` (drop-style) or `mask` (token-style) selects the masked pass."""
        raise NotImplementedError

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, num_features) pooled feature of an unmasked pass."""
        return self.model.forward_head(features, pre_logits=True)

    def patch_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, num_features): one feature per masking-grid patch, in patch order."""
        raise NotImplementedError

    def decoder_input(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder tokens as the reconstruction branch reads them: normalised per token, as MAE
        normalises before decoder_embed. timm models that pool by averaging (EVA-02, BEiT, a ViT with
        global_pool avg) have `norm` = Identity and keep that LayerNorm as `fc_norm`, applied after
        pooling; here it is applied to every token instead."""
        model = self.model
        fc_norm = getattr(model, "fc_norm", None)
        if isinstance(getattr(model, "norm", None), nn.Identity) and isinstance(fc_norm, nn.Module) \
                and not isinstance(fc_norm, nn.Identity):
            return fc_norm(features)
        return features

    def forward(self, x: torch.Tensor, stem: str | None = None) -> torch.Tensor:
        """Unmasked pass: pooled features of a normalised image batch."""
        return self.pool(self.encode(self.embed(x, stem)))

    def add_stem(self, key: str, in_chans: int) -> None:
        """Add a copy of the stem taking `in_chans` channels (weights of its first conv summed over
        input channels, as timm does for 1-channel inputs); select it with `embed(x, stem=key)`."""
        stem = copy.deepcopy(self.stem_module())
        parent, attr, conv = _first_conv(stem)
        new = nn.Conv2d(
            in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None,
        )
        with torch.no_grad():
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True).repeat(1, in_chans, 1, 1) / in_chans)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        setattr(parent, attr, new)
        self.stems[key] = stem


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            return module.get_submodule(parent_name) if parent_name else module, attr, child
    raise ConfigError(f"{type(module).__name__}: no Conv2d in the stem to give its own input channels")


def _with_visible(tokens: torch.Tensor, keep: torch.Tensor | None, prefix: int) -> torch.Tensor:
    """Prefix tokens + the patch tokens at `keep` (all of them when keep is None)."""
    if keep is None:
        return tokens
    patches = tokens[:, prefix:]
    index = keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1])
    return torch.cat([tokens[:, :prefix], torch.gather(patches, 1, index)], dim=1)


class _DropAdapter(BackboneAdapter):
    """Plain ViT-like encoders: patch tokens can be dropped (MAE)."""

    masking = "drop"

    def __init__(self, model: nn.Module, img_size: int) -> None:
        super().__init__(model, img_size)
        embed = model.patch_embed
        self.patch_size = _square(embed.patch_size, "patch size")
        if tuple(embed.proj.stride) != tuple(embed.proj.kernel_size):
            raise ConfigError(f"{type(model).__name__}: overlapping patch embedding cannot be masked")
        if img_size % self.patch_size:
            raise ConfigError(f"{self.family}: img_size {img_size} is not a multiple of its patch size {self.patch_size}")
        self.grid_size = tuple(int(g) for g in embed.grid_size)
        self.embed_dim = int(model.embed_dim)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 1))

    def stem_module(self) -> nn.Module:
        return self.model.patch_embed

    def patch_features(self, features: torch.Tensor) -> torch.Tensor:
        return features[:, self.num_prefix_tokens:]

    def _check(self, mask: torch.Tensor | None) -> None:
        if mask is not None:
            raise InputError(f"{self.family} drops masked tokens: pass keep= indices, not mask=")


class VitAdapter(_DropAdapter):
    """timm VisionTransformer (vit_*, deit*, incl. the distilled DeiT with its extra token)."""

    family = "vit"

    def after_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.model._pos_embed(x)

    def encode(self, tokens, keep=None, mask=None):
        self._check(mask)
        x = self.model.norm_pre(_with_visible(tokens, keep, self.num_prefix_tokens))
        return self.model.norm(self.model.blocks(x))


class EvaAdapter(_DropAdapter):
    """timm Eva (eva02_*, eva_*): rotary embeddings are gathered with the kept tokens."""

    family = "eva"

    def __init__(self, model: nn.Module, img_size: int) -> None:
        super().__init__(model, img_size)
        if model.patch_drop is not None:
            raise ConfigError("eva: patch_drop_rate is not supported (the masked pass drops patches)")

    def after_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.model._pos_embed(x)[0]

    def _rope(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor | None:
        rope_module = self.model.rope
        if rope_module is None:
            return None
        if hasattr(rope_module, "feat_shape"):
            rope = rope_module.get_embed()
        else:
            rope = rope_module.get_embed(shape=self.grid_size)
        if keep is None:
            return rope
        from timm.layers import apply_keep_indices_nlc

        rope = apply_keep_indices_nlc(x, rope, keep)
        # same layout fix-up as timm's Eva._pos_embed after patch dropout
        return rope.transpose(0, 1) if getattr(self.model, "rope_mixed", False) else rope.unsqueeze(1)

    def encode(self, tokens, keep=None, mask=None):
        self._check(mask)
        x = self.model.norm_pre(_with_visible(tokens, keep, self.num_prefix_tokens))
        rope = self._rope(x, keep)
        mixed = getattr(self.model, "rope_mixed", False) and rope is not None
        for i, blk in enumerate(self.model.blocks):
            x = blk(x, rope=rope[i] if mixed else rope)
        return self.model.norm(x)


class CaitAdapter(_DropAdapter):
    """timm Cait (cait_*): self-attention over patches, then class-attention blocks for the CLS.

    `embed` prepends the (position-free) CLS token so that every drop adapter has the same layout.
    """

    family = "cait"

    def __init__(self, model: nn.Module, img_size: int) -> None:
        super().__init__(model, img_size)
        self.num_prefix_tokens = 1

    def after_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model.pos_drop(x + self.model.pos_embed)
        return torch.cat([self.model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)

    def encode(self, tokens, keep=None, mask=None):
        self._check(mask)
        x = _with_visible(tokens, keep, 1)
        cls, x = x[:, :1], self.model.blocks(x[:, 1:])
        for blk in self.model.blocks_token_only:
            cls = blk(x, cls)
        return self.model.norm(torch.cat([cls, x], dim=1))


class _TokenAdapter(BackboneAdapter):
    """Encoders that need every position: masked patches become a learned mask token (SimMIM)."""

    masking = "token"

    def __init__(
        self, model: nn.Module, img_size: int, *, embed_dim: int, prefix: int, stem_stride: int, out_stride: int
    ) -> None:
        super().__init__(model, img_size)
        self.embed_dim = embed_dim
        self.num_prefix_tokens = prefix
        if img_size % out_stride:
            raise ConfigError(f"{self.family}: img_size {img_size} is not a multiple of its stride {out_stride}")
        self.patch_size = out_stride
        self.grid_size = (img_size // out_stride, img_size // out_stride)
        self.stem_grid = (img_size // stem_stride, img_size // stem_stride)
        self.mask_factor = out_stride // stem_stride
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def mask_position(self) -> torch.Tensor | float:
        """Position embedding added to a mask token (0 when the model has none)."""
        return 0.0

    def run(self, tokens: torch.Tensor) -> torch.Tensor:
        """The encoder after the stem, on the full token grid."""
        raise NotImplementedError

    def remove_mask_token(self) -> None:
        """Drop the mask token (a model that never masks), so every parameter gets a gradient."""
        self.mask_token = None

    def encode(self, tokens, keep=None, mask=None):
        if keep is not None:
            raise InputError(f"{self.family} masks with a mask token: pass mask=, not keep=")
        return self.run(tokens if mask is None else self._masked(tokens, mask))

    def _masked(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mask_token is None:
            raise InputError(f"{self.family}: this backbone was built without a mask token")
        p = self.num_prefix_tokens
        m = upsample_mask(mask, self.grid_size, self.mask_factor).unsqueeze(-1).to(tokens.dtype)
        patches = tokens[:, p:] * (1.0 - m) + (self.mask_token + self.mask_position()) * m
        return torch.cat([tokens[:, :p], patches], dim=1)

    def encode_unmasked_and_masked(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(encode(tokens), encode(tokens, mask=mask))` in one pass over the stacked batch.

        The encoder has no batch-coupled layer, so this is the same computation; for tiny models on
        a CPU, whose step time is per-operation overhead rather than arithmetic, it halves the
        encoder's share of an SSAT step."""
        both = self.run(torch.cat([tokens, self._masked(tokens, mask)], dim=0))
        return both[: len(tokens)], both[len(tokens):]


class SwinAdapter(_TokenAdapter):
    """timm SwinTransformer / SwinTransformerV2 (swin_*, swinv2_*); features are NHWC maps."""

    family = "swin"

    def __init__(self, model: nn.Module, img_size: int) -> None:
        info = model.feature_info
        super().__init__(
            model, img_size, embed_dim=int(model.embed_dim), prefix=0,
            stem_stride=info[0]["reduction"], out_stride=info[-1]["reduction"],
        )

    def stem_module(self) -> nn.Module:
        return self.model.patch_embed

    def after_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1, 2)
        pos = getattr(self.model, "absolute_pos_embed", None)
        return x if pos is None else x + pos.flatten(1, -2)

    def mask_position(self):
        pos = getattr(self.model, "absolute_pos_embed", None)
        return 0.0 if pos is None else pos.flatten(1, -2)

    def run(self, tokens):
        x = tokens.reshape(tokens.shape[0], *self.stem_grid, tokens.shape[-1])
        return self.model.norm(self.model.layers(x))

    def patch_features(self, features):
        return features.flatten(1, 2)


class ConvNeXtAdapter(_TokenAdapter):
    """timm ConvNeXt (convnext*, incl. ConvNeXt-V2); features are NCHW maps."""

    family = "convnext"

    def __init__(self, model: nn.Module, img_size: int) -> None:
        # strides from the convolutions themselves: timm's feature_info assumes a 4-pixel stem
        stem_stride = _conv_stride(model.stem)
        super().__init__(
            model, img_size, embed_dim=int(model.feature_info[0]["num_chs"]), prefix=0,
            stem_stride=stem_stride, out_stride=stem_stride * _conv_stride(model.stages),
        )

    def stem_module(self) -> nn.Module:
        return self.model.stem

    def after_stem(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)

    def run(self, tokens):
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *self.stem_grid)
        return self.model.norm_pre(self.model.stages(x))

    def patch_features(self, features):
        return features.flatten(2).transpose(1, 2)


class BeitAdapter(_TokenAdapter):
    """timm Beit (beit_*, beitv2_*): relative position bias needs the full grid, so mask tokens."""

    family = "beit"

    def __init__(self, model: nn.Module, img_size: int) -> None:
        patch = _square(model.patch_embed.patch_size, "patch size")
        super().__init__(
            model, img_size, embed_dim=int(model.embed_dim), prefix=1, stem_stride=patch, out_stride=patch
        )

    def stem_module(self) -> nn.Module:
        return self.model.patch_embed

    def after_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.model.pos_embed is not None:
            x = x + self.model.pos_embed
        return self.model.pos_drop(x)

    def mask_position(self):
        pos = self.model.pos_embed
        return 0.0 if pos is None else pos[:, 1:]

    def run(self, tokens):
        bias = self.model.rel_pos_bias() if self.model.rel_pos_bias is not None else None
        x = tokens
        for blk in self.model.blocks:
            x = blk(x, shared_rel_pos_bias=bias)
        return self.model.norm(x)

    def patch_features(self, features):
        return features[:, 1:]


@dataclass(frozen=True)
class Family:
    """A supported backbone family: name prefixes, adapter, timm classes it accepts."""

    name: str
    prefixes: tuple[str, ...]
    adapter: type[BackboneAdapter]
    classes: tuple[str, ...]
    takes_img_size: bool = True


FAMILIES: tuple[Family, ...] = (
    Family("vit", ("vit_",), VitAdapter, ("VisionTransformer",)),
    Family("deit", ("deit_", "deit3_"), VitAdapter, ("VisionTransformer", "VisionTransformerDistilled")),
    Family("eva", ("eva02_", "eva_"), EvaAdapter, ("Eva",)),
    Family("cait", ("cait_",), CaitAdapter, ("Cait",)),
    Family("swin", ("swin_", "swinv2_"), SwinAdapter, ("SwinTransformer", "SwinTransformerV2")),
    Family("convnext", ("convnext_", "convnextv2_"), ConvNeXtAdapter, ("ConvNeXt",), takes_img_size=False),
    Family("beit", ("beit_", "beitv2_"), BeitAdapter, ("Beit",)),
)


def supported_families() -> str:
    """One line naming the supported families and their masking style."""
    return ", ".join(
        f"{f.name} ({'/'.join(p + '*' for p in f.prefixes)}; {f.adapter.masking})" for f in FAMILIES
    )


def family_of(name: str) -> Family:
    """The family of a timm model name; ConfigError listing the supported ones otherwise.
    A clip backbone (``clip_<name>``, `lssat.models.clip`) has the family of the ViT it inflates."""
    if name.startswith("clip_"):
        name = name[len("clip_"):]
    for fam in FAMILIES:
        if name.startswith(fam.prefixes):
            return fam
    raise ConfigError(f"backbone {name!r}: unsupported family; supported: {supported_families()}")


INITS = ("mae", "timm")


def sincos_pos_embed(dim: int, grid_size: tuple[int, int], prefix: int = 0) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position embedding (`get_2d_sincos_pos_embed` of models_mae / SSAT),
    (1, prefix + H*W, dim), zeros for the prefix tokens. The first half of the channels encodes the
    column, the second half the row, each as [sin, cos] over dim/4 frequencies 1/10000^(i/(dim/4))."""
    if dim % 4:
        raise ConfigError(f"model width {dim} must be a multiple of 4 for a sin-cos position embedding")
    rows, cols = grid_size
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    col, row = torch.meshgrid(torch.arange(cols, dtype=torch.float64), torch.arange(rows, dtype=torch.float64),
                              indexing="xy")

    def half(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([half(col), half(row)], dim=1)
    return torch.cat([torch.zeros(prefix, dim, dtype=torch.float64), table]).float().unsqueeze(0)


def init_mae(adapter: BackboneAdapter) -> None:
    """Re-initialise a from-scratch backbone as MAE / SSAT do (models_mae.initialize_weights).

    Token-dropping families (ViT, DeiT, EVA, CaiT): a fixed 2-D sin-cos absolute position embedding
    (not trained), the patch embedding initialised as a Linear (xavier-uniform on its flattened
    weight), CLS / distillation / register tokens normal(0.02), every Linear xavier-uniform with zero
    bias, LayerNorms weight 1 and bias 0. Other layers (LayerScale, rotary tables) keep timm's init.

    Mask-token families (Swin, ConvNeXt, BEiT) are left as timm builds them: timm's init of those
    models is their own SimMIM / FCMAE / BEiT code's (truncated normal 0.02, BEiT's per-layer rescale).
    """
    if adapter.masking != "drop":
        return
    model = adapter.model
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    proj = model.patch_embed.proj
    with torch.no_grad():
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        if proj.bias is not None:
            nn.init.zeros_(proj.bias)
    for token in ("cls_token", "dist_token", "reg_token"):
        param = getattr(model, token, None)
        if isinstance(param, nn.Parameter):
            nn.init.normal_(param, std=0.02)
    pos = getattr(model, "pos_embed", None)
    if isinstance(pos, nn.Parameter):
        prefix = pos.shape[1] - adapter.num_patches  # the prefix tokens that carry a position (0 or more)
        with torch.no_grad():
            pos.copy_(sincos_pos_embed(pos.shape[-1], adapter.grid_size, prefix))
        pos.requires_grad_(False)


def create_backbone(
    name: str,
    img_size: int = 224,
    *,
    pretrained: bool = False,
    weights: str | Path | None = None,
    allow_hub: bool = False,
    init: str = "timm",
    **timm_kwargs: Any,
) -> BackboneAdapter:
    """Create a timm model of a supported family wrapped in its adapter.

    Args:
        name: timm model name, e.g. "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224".
        img_size: square input size; passed to timm where the family takes it.
        pretrained: load pretrained weights; from `weights` if given, else from the hub, which is
            only allowed with `allow_hub=True` (nothing is downloaded otherwise).
        weights: local checkpoint (.pth / .safetensors) for this architecture; timm's checkpoint
            filter adapts position embeddings and drops the classifier. Every other key and shape
            must match the model and every weight be finite, else an InputError names the file and
            the first mismatching key (nothing is loaded partly).
        allow_hub: permit downloading pretrained weights from the Hugging Face hub.
        init: "timm" (timm's own init) or "mae" (`init_mae`) for a backbone trained from scratch;
            pretrained weights are never re-initialised (init is ignored when they are loaded).
        **timm_kwargs: architecture overrides forwarded to `timm.create_model` (depth, embed_dim,
            patch_size, window_size, ...).
    """
    import timm

    if name.startswith("clip_"):  # a ViT inflated to clips (lssat.models.clip)
        from lssat.models.clip import create_clip_backbone

        return create_clip_backbone(name, img_size, pretrained=pretrained, weights=weights, allow_hub=allow_hub,
                                    init=init, **timm_kwargs)
    fam = family_of(name)
    if init not in INITS:
        raise ConfigError(f"model.init must be one of {', '.join(INITS)}, got {init!r}")
    if "num_classes" in timm_kwargs:
        raise ConfigError(f"backbone {name!r}: num_classes is set by the task head, not the backbone")
    kwargs: dict[str, Any] = {"num_classes": 0, **timm_kwargs}
    if fam.takes_img_size:
        kwargs["img_size"] = img_size
    local = None
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"backbone weights {str(path)!r}: file not found")
        if path.suffix.lower() in (".npz", ".npy"):  # JAX weights: timm's own reader
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        else:
            local = path
    elif pretrained:
        if not allow_hub:
            raise ConfigError(
                f"backbone {name!r}: pretrained=True needs a local weights file, "
                "or allow_hub=True to download from the hub"
            )
        kwargs["pretrained"] = True
    try:
        model = timm.create_model(name, **kwargs)
    except (RuntimeError, TypeError, ValueError, AssertionError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"backbone {name!r}: timm could not build it: {first}") from err
    cls = type(model).__name__
    if cls not in fam.classes:
        raise ConfigError(
            f"backbone {name!r}: timm class {cls} is not a supported {fam.name} variant "
            f"(expected {', '.join(fam.classes)})"
        )
    if local is not None:
        _load_local_weights(model, local, name)
    if fam.adapter.masking == "drop" and "global_pool" not in timm_kwargs:
        if getattr(model, "cls_token", None) is not None:
            model.global_pool = "token"  # the SSAT head reads the CLS token
    adapter = fam.adapter(model, img_size)
    if init == "mae" and not (pretrained or weights is not None):
        init_mae(adapter)
    return adapter


def _load_local_weights(model: nn.Module, path: Path, name: str) -> None:
    """Load a local weights file into a timm model as timm would (its reader: safetensors or torch's
    weights-only unpickler; the model's checkpoint filter, which resizes position embeddings; the
    classifier dropped), but refuse weights that do not fit or are not finite: timm would load
    what matches and leave the rest at random with only a log line."""
    import sys

    from timm.models import load_state_dict

    from lssat.models.weights import first_mismatch, first_non_finite, unreadable

    where = f"backbone weights {str(path)!r}"
    try:
        state = load_state_dict(str(path), weights_only=True)
    except OSError:
        raise  # permission denied and the like: the command line names the file and the problem
    except Exception as err:  # noqa: BLE001 - zip, pickle and safetensors errors of many kinds
        raise InputError(f"{where}: cannot load them: {unreadable(err)}") from None
    if not isinstance(state, dict):
        raise InputError(f"{where}: not a state dict of tensors")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as err:  # noqa: BLE001 - a filter meeting keys of another architecture
            raise InputError(f"{where}: do not fit {name} ({_first_line(err)})") from None
    classifiers = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    for classifier in (classifiers,) if isinstance(classifiers, str) else classifiers:
        state.pop(f"{classifier}.weight", None)
        state.pop(f"{classifier}.bias", None)
    problem = first_mismatch(state, model.state_dict())
    if problem:
        raise InputError(f"{where}: do not fit {name}: {problem}")
    bad = first_non_finite(state)
    if bad:
        raise InputError(f"{where}: weight {bad!r} is not finite (nan or inf)")
    model.load_state_dict(state)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


def _conv_stride(module: nn.Module) -> int:
    """Product of the strides of every Conv2d in a module (square strides)."""
    stride = 1
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            stride *= _square(m.stride, "conv stride")
    return stride


def _square(size: Any, what: str) -> int:
    if isinstance(size, int):
        return size
    a, b = tuple(size)
    if a != b:
        raise ConfigError(f"non-square {what} {a}x{b} is not supported")
    return int(a)
