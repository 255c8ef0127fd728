"""HMTL in-painting (Pourmirzaei et al.): blank a random rectangle, reconstruct the image there.

Per sample, one axis-aligned rectangle with sides drawn uniformly in [min_frac, max_frac] of the image
side, at a uniform position, is filled with the ImageNet mean colour. The encoder runs on the holed
image; a linear head maps each per-patch feature to the patch's RGB in [0, 1] (SimMIM-style).

Loss: L1 over the hole's pixels. The paper's perceptual loss needs pretrained weights, which lssat
never downloads: give `perceptual_weights`, a local file holding torchvision VGG16 `features`
weights (keys "features.N.*" of a whole VGG16 state dict, or "N.*"), and the loss adds
`perceptual_weight` x the L1 distance between VGG16 relu3_3 features of the composite image (the
prediction inside the hole, the original outside) and of the original image.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lssat.errors import ConfigError
from lssat.models.masking import unpatchify

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_VGG_LAYERS = 16  # VGG16 features up to relu3_3


def random_boxes(
    batch: int, height: int, width: int, min_frac: float, max_frac: float,
    *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
) -> torch.Tensor:
    """(B, 1, H, W) float mask, 1 inside one random rectangle per sample."""
    gen_device = generator.device if generator is not None else "cpu"
    u = torch.rand(batch, 4, generator=generator, device=gen_device).cpu()
    frac = min_frac + (max_frac - min_frac) * u[:, :2]
    hs = (frac[:, 0] * height).round().clamp(1, height).long()
    ws = (frac[:, 1] * width).round().clamp(1, width).long()
    tops = (u[:, 2] * (height - hs + 1)).floor().long().clamp(max=height - 1)
    lefts = (u[:, 3] * (width - ws + 1)).floor().long().clamp(max=width - 1)
    rows = torch.arange(height).view(1, height, 1)
    cols = torch.arange(width).view(1, 1, width)
    inside_r = (rows >= tops.view(-1, 1, 1)) & (rows < (tops + hs).view(-1, 1, 1))
    inside_c = (cols >= lefts.view(-1, 1, 1)) & (cols < (lefts + ws).view(-1, 1, 1))
    return (inside_r & inside_c).unsqueeze(1).float().to(device or "cpu")


def build_perceptual_net() -> nn.Sequential:
    """Untrained VGG16 `features` up to relu3_3 (the layout the weights file must match)."""
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["D"])[:_VGG_LAYERS]


def load_perceptual_net(path: str | Path) -> nn.Sequential:
    """VGG16 relu3_3 feature extractor with weights from a local file, frozen, in eval mode."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"inpaint.perceptual_weights {str(path)!r}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input error
        raise ConfigError(f"inpaint.perceptual_weights {str(path)!r}: cannot read: {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = build_perceptual_net()
    wanted = net.state_dict().keys()
    picked = {}
    for key, value in state.items():
        short = key[len("features."):] if key.startswith("features.") else key
        if short in wanted:
            picked[short] = value
    missing = sorted(set(wanted) - set(picked))
    if missing:
        raise ConfigError(
            f"inpaint.perceptual_weights {str(path)!r}: not VGG16 features weights (missing {missing[0]}, ...)"
        )
    try:
        net.load_state_dict(picked)
    except RuntimeError as err:
        raise ConfigError(f"inpaint.perceptual_weights {str(path)!r}: shapes do not match VGG16") from err
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class InpaintAux(nn.Module):
    """Hole filling head and loss.

    Args:
        feature_dim: width of the backbone's per-patch features.
        patch_size: pixels per patch side of the backbone's grid.
        grid_size: the patch grid (rows, cols).
        min_frac, max_frac: rectangle side range as a fraction of the image side.
        perceptual_weights: optional VGG16 features weights file (see the module docstring).
        perceptual_weight: weight of the perceptual term.
    """

    def __init__(
        self, feature_dim: int, patch_size: int, grid_size: tuple[int, int], *,
        min_frac: float = 0.25, max_frac: float = 0.5,
        perceptual_weights: str | Path | None = None, perceptual_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid_size = tuple(grid_size)
        self.min_frac, self.max_frac = min_frac, max_frac
        self.head = nn.Linear(feature_dim, patch_size * patch_size * 3)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.perceptual_weight = perceptual_weight
        # kept out of the module tree: frozen, never saved in checkpoints
        self._perceptual = [load_perceptual_net(perceptual_weights)] if perceptual_weights else []
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def make_holes(
        self, raw: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 255] -> (holed images, (B, 1, H, W) hole mask)."""
        b, _, h, w = raw.shape
        hole = random_boxes(b, h, w, self.min_frac, self.max_frac, generator=generator, device=raw.device)
        fill = (self.mean * 255.0).to(raw.dtype)
        return raw * (1 - hole) + fill * hole, hole

    def reconstruct(self, patch_features: torch.Tensor) -> torch.Tensor:
        """(B, N, feature_dim) -> (B, 3, H, W) predicted image in [0, 1] units."""
        return unpatchify(self.head(patch_features), self.patch_size, self.grid_size, 3)

    def losses(
        self, patch_features: torch.Tensor, images01: torch.Tensor, hole: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """{"inpaint_loss", "inpaint_l1", and "inpaint_perceptual" when weights were given}."""
        pred = self.reconstruct(patch_features).float()
        target = images01.float()
        l1 = ((pred - target).abs() * hole).sum() / (hole.sum() * 3).clamp_min(1.0)
        out = {"inpaint_l1": l1}
        total = l1
        if self._perceptual:
            net = self._perceptual[0].to(pred.device)
            composite = target * (1 - hole) + pred * hole
            feats = net((composite - self.mean) / self.std)
            with torch.no_grad():
                ref = net((target - self.mean) / self.std)
            out["inpaint_perceptual"] = (feats - ref).abs().mean()
            total = total + self.perceptual_weight * out["inpaint_perceptual"]
        out["inpaint_loss"] = total
        return out
