"""The masked-autoencoder auxiliary branch: decoder, per-target predictions and masked losses.

One prediction head per target (METHOD.md section 3); the reconstruction loss is the mean of the
per-target losses, each averaged over the masked patches only:

- "regression" targets (RGB patches, or a texture code map scaled to [0, 1]): mean squared error
  per patch over its p*p*C values (optionally on per-patch normalised targets, MAE's norm_pix_loss);
- "index" targets (texture code index per pixel): the head gives p*p x num_codes logits per patch,
  cross-entropy per pixel, averaged over the patch;
- "histogram" targets (per-patch code histogram summing to 1): the head gives num_codes logits,
  the loss is KL(target || softmax(logits)), zero for a perfect prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lssat.models.backbones import BackboneAdapter
from lssat.models.decoder import LightHead, MAEDecoder
from lssat.models.masking import PatchMask

KINDS = ("regression", "index", "histogram")


@dataclass(frozen=True)
class TargetSpec:
    """What the decoder predicts for one target.

    Attributes:
        name: "rgb", "ldp" or "lbp".
        kind: "regression", "index" or "histogram".
        width: prediction values per patch.
        classes: number of codes (index and histogram kinds).
    """

    name: str
    kind: str
    width: int
    classes: int = 0


def target_spec(name: str, encoding: str, patch_size: int, num_codes: int = 0) -> TargetSpec:
    """The spec of target `name` ("rgb" or a texture) under a texture target encoding."""
    pixels = patch_size * patch_size
    if name == "rgb":
        return TargetSpec(name, "regression", pixels * 3)
    if encoding == "scaled":
        return TargetSpec(name, "regression", pixels, num_codes)
    if encoding == "index":
        return TargetSpec(name, "index", pixels * num_codes, num_codes)
    if encoding == "histogram":
        return TargetSpec(name, "histogram", num_codes, num_codes)
    raise ValueError(f"unknown target encoding {encoding!r}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-patch values (B, N) over the patches where mask == 1."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def per_patch_loss(pred: torch.Tensor, target: torch.Tensor, spec: TargetSpec, norm_pix: bool = False) -> torch.Tensor:
    """(B, N) loss of each patch's prediction against its target; see the module docstring."""
    if spec.kind == "regression":
        pred, target = pred.float(), target.float()
        if norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return ((pred - target) ** 2).mean(dim=-1)
    b, n = pred.shape[:2]
    if spec.kind == "index":
        logits = pred.reshape(b * n * (spec.width // spec.classes), spec.classes)
        ce = F.cross_entropy(logits.float(), target.reshape(-1).long(), reduction="none")
        return ce.reshape(b, n, -1).mean(dim=-1)
    if spec.kind == "histogram":
        log_q = F.log_softmax(pred.float(), dim=-1)
        return F.kl_div(log_q, target.float(), reduction="none").sum(dim=-1)
    raise ValueError(f"unknown target kind {spec.kind!r}")


class MAEBranch(nn.Module):
    """Decoder plus losses for the masked pass of a backbone.

    Token-dropping backbones get an `MAEDecoder` over the visible tokens; mask-token backbones get
    a `LightHead` over their per-patch final features.

    Args:
        backbone: the encoder adapter (its masking style and geometry pick the decoder).
        specs: one TargetSpec per reconstruction target.
        width, depth, num_heads, mlp_ratio: MAE decoder size (None = by encoder width).
        norm_pix: per-patch target normalisation for regression targets.
    """

    def __init__(
        self,
        backbone: BackboneAdapter,
        specs: list[TargetSpec],
        *,
        width: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float = 4.0,
        norm_pix: bool = False,
    ) -> None:
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.norm_pix = norm_pix
        self.masking = backbone.masking
        outputs = {s.name: s.width for s in specs}
        if backbone.masking == "drop":
            self.decoder: nn.Module = MAEDecoder(
                backbone.num_features, backbone.grid_size, backbone.num_prefix_tokens, outputs,
                width=width, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
            )
        else:
            self.decoder = LightHead(backbone.num_features, outputs)

    @property
    def feature_dim(self) -> int:
        """Width of `aux_feature`."""
        return int(self.decoder.width)

    def predict(self, backbone: BackboneAdapter, features: torch.Tensor, mask: PatchMask) -> dict[str, torch.Tensor]:
        """Predictions (B, N, width) per target from the masked pass's encoder output."""
        features = backbone.decoder_input(features)
        if self.masking == "drop":
            return self.decoder(features, mask.restore)
        return self.decoder(backbone.patch_features(features))

    def aux_feature(self, features: torch.Tensor) -> torch.Tensor:
        """Fusion-SSAT's pooled auxiliary feature: the mean over patches of the decoder's
        normalised hidden tokens, run on an unmasked encoding (no mask tokens)."""
        if self.masking != "drop":
            raise ValueError("the auxiliary feature needs the MAE decoder (a token-dropping backbone)")
        return self.decoder.hidden(features, None).mean(dim=1)

    def losses(
        self, preds: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """{"recon_<name>": masked loss per target, "recon_loss": their mean}."""
        out: dict[str, torch.Tensor] = {}
        for name, spec in self.specs.items():
            out[f"recon_{name}"] = masked_mean(per_patch_loss(preds[name], targets[name], spec, self.norm_pix), mask)
        out["recon_loss"] = torch.stack([out[f"recon_{n}"] for n in self.specs]).mean()
        return out
