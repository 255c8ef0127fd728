"""Training augmentation of a whole uint8 batch at once, with per-sample random parameters.

The in-memory path (`lssat.data.memory`) augments batches with these instead of running the
per-image torchvision v2 pipeline of `lssat.data.transforms.train_transform`, with the same
semantics, in the same order:

- random resized crop: the crop boxes are drawn per sample by torchvision's RandomResizedCrop rule
  (10 tries of area fraction in `crop_scale` and log-uniform aspect in `crop_ratio`, else the
  central fallback crop), then each crop is resized to S x S by the same antialiased uint8
  bilinear kernel (one call for the whole batch when all boxes are equal, e.g. augmentation off;
  so those batches are bit for bit what the per-item path gives);
- horizontal flip with probability `hflip` per sample;
- colour jitter: brightness, contrast, saturation factors uniform in [1 - s, 1 + s] and hue in
  [-hue, hue], drawn per sample, applied in a random order per sample, each rounding back to uint8
  as torchvision does (brightness, contrast and saturation batched; hue per sample with
  torchvision's own kernel).

RandAugment, timm's auto-augment and random erasing have no batched form; `unbatched_options`
names them (colour jitter is off when timm's `aa` is set, as in the per-item path). All draws
come from the `torch.Generator` passed in, never from the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch.nn.functional import interpolate
from torchvision.transforms.v2 import functional as TF

from lssat.data.transforms import AugmentConfig

__all__ = ["BatchAugment", "apply_jitter", "color_jitter", "crop_boxes", "resized_crops", "unbatched_options"]


def unbatched_options(aug: AugmentConfig) -> list[str]:
    """The augmentation settings in use that have no batched implementation (as config names)."""
    names = []
    if aug.randaugment_magnitude is not None:
        names.append("data.augment.randaugment_magnitude")
    if aug.random_erasing > 0:
        names.append("data.augment.random_erasing")
    if aug.aa is not None:
        names.append("data.augment.aa")
    if aug.reprob > 0:
        names.append("data.augment.reprob")
    return names


def crop_boxes(heights: torch.Tensor, widths: torch.Tensor, scale: tuple[float, float],
               ratio: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop boxes (top, left, height, width), int64 (B, 4), one per image of size (H_i, W_i).

    The rule of torchvision's RandomResizedCrop.make_params, vectorised: up to 10 tries of a target
    area (area x U(scale)) and aspect (exp U(log ratio)); the first try that fits is taken at a
    uniform position, else the central crop of the aspect clamped to `ratio` (whole image if it fits).
    """
    b = heights.shape[0]
    h_img, w_img = heights.double(), widths.double()
    area = (h_img * w_img)[:, None]
    u_area = torch.rand(b, 10, generator=generator, dtype=torch.float64)
    u_ratio = torch.rand(b, 10, generator=generator, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u_ratio)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= w_img[:, None]) & (h > 0) & (h <= h_img[:, None])
    found = fits.any(dim=1)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    w_try, h_try = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # fallback: central crop with the aspect clamped to the ratio range
    in_ratio = w_img / h_img
    r_min, r_max = min(ratio), max(ratio)
    w_fb = torch.where(in_ratio > r_max, torch.round(h_img * r_max), w_img)
    h_fb = torch.where(in_ratio < r_min, torch.round(w_img / r_min), h_img)
    w_box = torch.where(found, w_try, w_fb)
    h_box = torch.where(found, h_try, h_fb)
    u_top = torch.rand(b, generator=generator, dtype=torch.float64)
    u_left = torch.rand(b, generator=generator, dtype=torch.float64)
    top = torch.where(found, torch.floor(u_top * (h_img - h_box + 1)), torch.floor((h_img - h_box) / 2))
    left = torch.where(found, torch.floor(u_left * (w_img - w_box + 1)), torch.floor((w_img - w_box) / 2))
    return torch.stack([top, left, h_box, w_box], dim=1).to(torch.int64)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box (top, left, height, width) resized to size x size, antialiased bilinear, uint8.

    The same kernel as torchvision's resized_crop on uint8 (so the same values); one call for the
    batch when every box is the same, else one call per image.
    """
    if images.shape[0] == 0:
        return images.new_empty((0, images.shape[1], size, size))
    if bool((boxes == boxes[0]).all()):
        t, l, h, w = boxes[0].tolist()
        return _resize(images[:, :, t:t + h, l:l + w], size).contiguous()
    out = images.new_empty((images.shape[0], images.shape[1], size, size))
    for i, (t, l, h, w) in enumerate(boxes.tolist()):
        out[i] = _resize(images[i:i + 1, :, t:t + h, l:l + w].contiguous(), size)[0]  # contiguous: 2x faster
    return out


def _resize(crops: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision v2 resize_image for uint8 CPU bilinear + antialias (no-op when already the size)."""
    if crops.shape[-2:] == (size, size):
        return crops
    if crops.device.type != "cpu":  # torchvision's dispatch handles dtypes the native kernel lacks
        return TF.resize(crops, [size, size], antialias=True)
    return interpolate(crops, size=[size, size], mode="bilinear", align_corners=False, antialias=True)


def _hue(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return torch.stack([TF.adjust_hue(x, float(f)) for x, f in zip(images, factor.flatten().tolist())])


def color_jitter(images: torch.Tensor, strength: float, hue: float, generator: torch.Generator) -> torch.Tensor:
    """v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=hue) per sample.

    Factors are drawn per sample (uniform in [max(0, 1 - strength), 1 + strength], hue in
    [-hue, hue]) and the adjustments in use run in a random order per sample, each rounding back
    to uint8 as torchvision does; an adjustment whose strength is 0 is skipped, as torchvision
    does. Returns a new tensor.

    Brightness, contrast and saturation are all x * k + (mean or gray) * (1 - k) for one k per
    sample, so each step of the order is one pass over the whole batch (k = 1 for the samples
    whose op at that step is another one, which leaves them unchanged); values stay in float,
    floored and clamped after each step exactly where torchvision casts back to uint8.
    """
    b = images.shape[0]
    ops = [op for op, on in (("brightness", strength > 0), ("contrast", strength > 0),
                              ("saturation", strength > 0), ("hue", hue > 0)) if on]
    if b == 0 or not ops:
        return images.clone()
    order = torch.argsort(torch.rand(b, len(ops), generator=generator), dim=1)
    lo = max(0.0, 1.0 - strength)
    factor = {op: lo + (1.0 + strength - lo) * torch.rand(b, generator=generator) for op in ops if op != "hue"}
    if "hue" in ops:
        factor["hue"] = hue * (2.0 * torch.rand(b, generator=generator) - 1.0)
    return apply_jitter(images, ops, order, factor)


def apply_jitter(images: torch.Tensor, ops: list[str], order: torch.Tensor,
                 factor: dict[str, torch.Tensor]) -> torch.Tensor:
    """Colour adjustments with given parameters: sample i gets ops[order[i, 0]], then ops[order[i, 1]], ...
    with factor[op][i] (ops among brightness, contrast, saturation, hue). uint8 in, new uint8 out."""
    b = images.shape[0]
    x = images.float()
    one = torch.ones(b)
    for step in range(len(ops)):
        at = {op: order[:, step] == i for i, op in enumerate(ops)}
        if "hue" in at and bool(at["hue"].any()):
            chosen = torch.nonzero(at["hue"]).flatten()
            x[chosen] = _hue(x.index_select(0, chosen).to(torch.uint8), factor["hue"][chosen]).float()
        k = one.clone()
        for op in ("brightness", "contrast", "saturation"):
            if op in at:
                k = torch.where(at[op], factor[op], k)
        k4 = k.view(-1, 1, 1, 1)
        gray = None
        if "contrast" in at or "saturation" in at:
            r, g, bl = x.unbind(dim=1)
            gray = r.mul(0.2989).add_(g, alpha=0.587).add_(bl, alpha=0.114).floor_().unsqueeze(1)
        out = x.mul(k4)
        if "contrast" in at:
            c = torch.where(at["contrast"], 1.0 - k, 0.0).view(-1, 1, 1, 1)
            out.add_(gray.mean(dim=(1, 2, 3), keepdim=True).mul(c))
        if "saturation" in at:
            s = torch.where(at["saturation"], 1.0 - k, 0.0).view(-1, 1, 1, 1)
            out.add_(gray.mul(s))
        x = out.clamp_(0, 255).floor_()
    return x.to(torch.uint8)


class BatchAugment:
    """The batched training augmentation of an AugmentConfig: uint8 (B, 3, H, W) -> uint8 (B, 3, S, S).

    Crop (per-sample boxes), flip, colour jitter; with `tail` (the unbatched options, see
    `unbatched_options`) they then run per image through torchvision, under the global RNG forked
    and seeded from `generator` so the run stays reproducible and the caller's RNG untouched.
    """

    def __init__(self, image_size: int, aug: AugmentConfig, tail: bool = False) -> None:
        self.image_size = image_size
        self.aug = aug
        self.tail = None
        if tail and unbatched_options(aug):
            from torchvision.transforms import v2

            ops: list[torch.nn.Module] = []
            if aug.randaugment_magnitude is not None:
                ops.append(v2.RandAugment(num_ops=aug.randaugment_ops, magnitude=aug.randaugment_magnitude))
            if aug.random_erasing > 0:
                ops.append(v2.RandomErasing(p=aug.random_erasing, value=0))
            if aug.aa is not None or aug.reprob > 0:
                from lssat.data.transforms import TimmPhotometric

                ops.append(TimmPhotometric(image_size, aug))
            self.tail = v2.Compose(ops)

    def __call__(self, images: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        """Augment a batch; image i's content is its top-left heights[i] x widths[i] (the rest is padding)."""
        aug = self.aug
        boxes = crop_boxes(heights, widths, aug.crop_scale, aug.crop_ratio, generator)
        out = resized_crops(images, boxes, self.image_size)
        if aug.hflip > 0:
            flip = torch.nonzero(torch.rand(out.shape[0], generator=generator) < aug.hflip).flatten()
            if flip.numel():
                out[flip] = out.index_select(0, flip).flip(-1)
        if (aug.color_jitter > 0 or aug.hue > 0) and aug.aa is None:
            out = color_jitter(out, aug.color_jitter, aug.hue, generator)
        if self.tail is not None and out.shape[0]:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would reseed CUDA too
                out = torch.stack([self.tail(x) for x in out])
        return out
