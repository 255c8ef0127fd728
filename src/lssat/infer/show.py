"""Look inside a trained model: input, masked input, texture target, reconstruction, saliency.

`show_picture(predictor, image, output)` draws one row of panels for one face:

1. the face crop the model sees (aligned as for training, resized to its input);
2. the masked input: the `mask_input` image (RGB or a texture map) with the masked patches grey
   (masking drawn with a fixed seed, at the recipe's mask ratio);
3. per reconstruction target: the target (RGB, or the LDP / LBP code map scaled to [0, 1]);
4. per target: the model's reconstruction, predicted patches where masked and the target where
   visible (as the MAE paper draws it); a histogram target has no image and is skipped;
5. the saliency of the primary prediction over the crop: attention rollout (Abnar & Zuidema
   2020: head-averaged attention plus identity, multiplied through the layers, CLS row) for the
   ViT family, gradient x input (summed over channels, absolute) otherwise or on request.

Recipes without a reconstruction branch (supervised, HMTL) show panels 1 and 5 only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lssat.errors import ConfigError, InputError

SALIENCY = ("auto", "rollout", "gradxinput")


def target_logit(logits: torch.Tensor, kind: str, names: list[str], target: str | None) -> tuple[torch.Tensor, str]:
    """The logit the saliency explains: the named class/attribute, else the predicted class, the
    most likely attribute, or the fake logit."""
    if kind == "deepfake":
        return logits[0, 0], "fake"
    if target is not None:
        if target not in names:
            raise InputError(f"--target {target!r} is not one of the model's names: {', '.join(names)}")
        i = names.index(target)
    else:
        i = int(logits[0].argmax())
    return logits[0, i], names[i]


def gradient_x_input(model: torch.nn.Module, raw: torch.Tensor, pick) -> np.ndarray:
    """|sum over channels of d logit / d x * x|, x the encoder's input (the normalised RGB image, or
    the texture image for a texture-classified recipe), (H, W). Taken at the stem, so it is defined
    whatever the classified input is."""
    bb = model.backbone
    inputs: list[torch.Tensor] = []

    def grab(_module, args):
        x = args[0].detach().requires_grad_(True)
        inputs.append(x)
        return (x, *args[1:])

    stems = [bb.stem_module(), *bb.stems.values()]
    handles = [m.register_forward_pre_hook(grab) for m in stems]
    try:
        with torch.enable_grad():
            logit = pick(model(raw))
            (grad,) = torch.autograd.grad(logit, inputs[0])  # the first stem call: the classify pass
    finally:
        for h in handles:
            h.remove()
    return (grad * inputs[0]).sum(1)[0].abs().detach().cpu().numpy()


def attention_rollout(model: torch.nn.Module, raw: torch.Tensor) -> np.ndarray:
    """Attention rollout over the unmasked pass of a timm VisionTransformer, (grid_h, grid_w)."""
    bb = model.backbone
    blocks = list(bb.model.blocks)
    maps: list[torch.Tensor] = []

    def hook(attn, args, _output):
        x = args[0]
        b, n, c = x.shape
        qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        maps.append(((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1).mean(1))  # (B, N, N)

    handles = [blk.attn.register_forward_hook(hook) for blk in blocks]
    try:
        with torch.no_grad():
            model(raw)
    finally:
        for h in handles:
            h.remove()
    rollout = None
    for a in maps[: len(blocks)]:  # a fusion model may run the encoder twice: keep the classify pass
        a = a[0] + torch.eye(a.shape[-1])
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    prefix = bb.num_prefix_tokens
    cls = rollout[0, prefix:] if prefix else rollout[prefix:].mean(0)
    return cls.reshape(bb.grid_size).cpu().numpy()


def _supports_rollout(model: torch.nn.Module) -> bool:
    bb = model.backbone
    blocks = getattr(bb.model, "blocks", None)
    return bb.family == "vit" and blocks is not None and all(hasattr(b.attn, "qkv") for b in blocks)


def _masked_view(image: np.ndarray, mask: np.ndarray, patch: int, grid: tuple[int, int]) -> np.ndarray:
    """An (H, W, C) float image in [0, 1] with the masked patches (mask 1) set to grey."""
    out = image.copy()
    for idx in np.flatnonzero(mask):
        r, c = divmod(int(idx), grid[1])
        out[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = 0.5
    return out


def _paste(target: np.ndarray, recon: np.ndarray, mask: np.ndarray, patch: int, grid: tuple[int, int]) -> np.ndarray:
    out = target.copy()
    for idx in np.flatnonzero(mask):
        r, c = divmod(int(idx), grid[1])
        sl = (slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch))
        out[sl] = recon[sl]
    return out


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).detach().cpu().numpy().clip(0, 1)


def panels(predictor: Any, crop: torch.Tensor, seed: int = 0, saliency: str = "auto",
           target: str | None = None) -> tuple[list[tuple[str, np.ndarray, str | None]], str]:
    """The panels (title, image, colormap) for a (3, S, S) uint8 crop, and a caption."""
    if saliency not in SALIENCY:
        raise ConfigError(f"saliency must be one of {', '.join(SALIENCY)}, got {saliency!r}")
    model = predictor.model
    raw = crop.unsqueeze(0).to(predictor.device, torch.float32)
    out: list[tuple[str, np.ndarray, str | None]] = [("input", crop.permute(1, 2, 0).numpy(), None)]
    r = model.recipe
    if model.mae is not None:
        bb = model.backbone
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            res = model.training_losses(raw, lambda logits, _t: logits.sum() * 0, None, generator=g,
                                        return_reconstructions=True)
        mask = res["mask"][0].cpu().numpy()
        images = model.reconstruction_images(res["reconstructions"])
        shown = _image_of(model, r.mask_input, raw)
        out.append((f"masked {r.mask_input} ({r.mask_ratio:.0%})", _masked_view(shown, mask, bb.patch_size, bb.grid_size),
                    None if r.mask_input == "rgb" else "gray"))
        for name in r.targets:
            if name not in images:
                continue  # histogram targets have no image
            tgt = _image_of(model, name, raw)
            rec = images[name]
            rec = _hwc(rec * model.rgb_std + model.rgb_mean) if name == "rgb" else _hwc(rec)
            cmap = None if name == "rgb" else "gray"
            out.append((f"target {name}", tgt, cmap))
            out.append((f"reconstruction {name}", _paste(tgt, rec, mask, bb.patch_size, bb.grid_size), cmap))
    with torch.no_grad():
        logits = model(raw)
    _, picked = target_logit(logits, predictor.kind, predictor.names, target)
    method = saliency if saliency != "auto" else ("rollout" if _supports_rollout(model) else "gradxinput")
    if method == "rollout":
        if not _supports_rollout(model):
            raise ConfigError(f"attention rollout needs a ViT backbone; this one is {model.backbone.family}")
        sal = attention_rollout(model, raw)
        title = "attention rollout"
    else:
        sal = gradient_x_input(model, raw, lambda lg: target_logit(lg, predictor.kind, predictor.names, target)[0])
        title = f"gradient x input ({picked})"
    sal = torch.nn.functional.interpolate(torch.as_tensor(sal)[None, None].float(), size=raw.shape[-2:],
                                          mode="bilinear", align_corners=False)[0, 0].numpy()
    sal = (sal - sal.min()) / (np.ptp(sal) or 1.0)
    out.append((title, sal, "inferno"))
    pred = predictor.make_prediction(predictor.task.probabilities(logits).reshape(1, -1)[0].cpu().numpy())
    score = pred.to_dict()
    detail = f"p(fake) = {score['fake_probability']:.3f}" if pred.kind == "deepfake" else \
        f"{pred.label} ({max(pred.scores):.3f})"
    caption = f"{r.label} | {predictor.kind}: {detail}"
    return out, caption


def _image_of(model: torch.nn.Module, kind: str, raw: torch.Tensor) -> np.ndarray:
    """The `kind` image of a raw batch as (H, W, C) in [0, 1]: RGB, or a texture map."""
    if kind == "rgb":
        return (raw[0].permute(1, 2, 0) / 255.0).cpu().numpy()
    img, _ = model.image_input(kind, raw)
    return (img[0, :1].permute(1, 2, 0) * 0.5 + 0.5).cpu().numpy()


def show_picture(predictor: Any, image: Any, output: str | os.PathLike, faces: str = "auto", seed: int = 0,
                 saliency: str = "auto", target: str | None = None) -> Path:
    """Draw the panels for one image (path or in-memory) into `output` (PNG); returns the path.
    The caption says what the model was trained on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lssat.infer.predictor import as_rgb, read_image

    rgb = read_image(Path(image)) if isinstance(image, (str, os.PathLike)) else as_rgb(image)
    crop, note = predictor.face_crops(rgb, faces)
    if crop is None:
        raise InputError(f"{image if isinstance(image, (str, os.PathLike)) else 'image'}: {note} "
                         f"(use --faces crop for a face crop)")
    items, caption = panels(predictor, crop, seed, saliency, target)
    fig, axes = plt.subplots(1, len(items), figsize=(2.6 * len(items), 3.0), squeeze=False)
    for ax, (title, img, cmap) in zip(axes[0], items):
        if cmap == "inferno":
            ax.imshow(crop.permute(1, 2, 0).numpy())
            ax.imshow(img, cmap=cmap, alpha=0.55)
        else:
            ax.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap=cmap,
                      vmin=0, vmax=1 if img.dtype != np.uint8 else 255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    trained = getattr(predictor, "provenance", None) or {}
    if trained.get("synthetic"):
        caption += " | trained on synthetic cartoon faces"
    elif trained.get("dataset"):
        caption += f" | trained on {trained['dataset']}"
    fig.suptitle(caption + (f" [{note}]" if note else ""), fontsize=10)
    fig.tight_layout()
    from lssat.texture.picture import save_figure

    return save_figure(fig, output, dpi=100)
