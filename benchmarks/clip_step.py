"""Training step time of a clip model against the frame model of the same size, same pixels per step.

The frame model (`--backbone`, a timm ViT) takes batches of B x T images; the clip model
(``clip_<backbone>``: the same ViT inflated to T-frame clips of `--tubelet`-frame tubelets) takes
batches of B clips of T frames, so both read B x T x S x S pixels per step. One step = the engine's
step (`lssat.engine.schemes.step_losses`, as `lssat train` runs it: texture maps from the uint8 batch,
masked pass, decoder, unmasked pass, head), backward, AdamW step. Both are measured in the same run,
alternating, and the script prints each one's median step time, pixels per second and the ratio
clip / frame.

    python benchmarks/clip_step.py                                   # the synthetic-video preset's size, CPU
    python benchmarks/clip_step.py --backbone vit_small_patch16_224 --img 224 --kwargs '{}' --batch 2
    python benchmarks/clip_step.py --device cuda --batch 16

On a shared machine the ratio is steadier than the times (both suffer the same load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="vit_tiny_patch16_224")
    p.add_argument("--kwargs", default='{"patch_size": 8, "depth": 2, "embed_dim": 64, "num_heads": 2}',
                   help="timm architecture overrides (JSON), for both models")
    p.add_argument("--img", type=int, default=64)
    p.add_argument("--frames", type=int, default=4, help="frames per clip (T)")
    p.add_argument("--tubelet", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="clips per clip-model step (the frame model gets batch x T)")
    p.add_argument("--recipe", default="lssat-lbp")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(backbone: str, kwargs: dict, shape: tuple[int, ...], args, device):
    import torch

    from lssat.models.lssat import LSSATModel
    from lssat.tasks import build_task

    torch.manual_seed(0)
    task = build_task("deepfake")
    model = LSSATModel(backbone, task.num_outputs, args.recipe, args.img, backbone_kwargs=kwargs).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randint(0, 256, shape, dtype=torch.uint8, generator=g).to(device),
             "label": torch.randint(0, 2, (shape[0],), generator=g).to(device)}
    return model, task, opt, batch


def step(model, task, opt, batch, device, generator) -> None:
    import torch

    from lssat.engine.schemes import step_losses

    stage = "supervised" if not model.recipe.aux else "joint"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = step_losses(model, batch, task, stage, generator=generator)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()


def main() -> int:
    args = parse()
    os.environ.setdefault("LSSAT_TEXTURE_COMPILE_AFTER", "1e18")  # eager texture kernels (step.py's default)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kwargs = json.loads(args.kwargs)
    b, t, s = args.batch, args.frames, args.img
    runs = {
        "frame": build(args.backbone, kwargs, (b * t, 3, s, s), args, device),
        "clip": build(f"clip_{args.backbone}", {**kwargs, "clip": {"frames": t, "tubelet": args.tubelet}},
                      (b, t, 3, s, s), args, device),
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    pixels = b * t * s * s
    print(f"{args.backbone} {kwargs} {s}x{s}, recipe {args.recipe}, {name}; frame model: batch {b * t} images, "
          f"clip model: batch {b} clips of {t} frames (tubelet {args.tubelet}); {pixels} pixels per step; "
          f"median of {args.steps} steps after {args.warmup} warm-up, alternating")
    gens = {k: torch.Generator().manual_seed(0) for k in runs}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(args.warmup + args.steps):
        for key, (model, task, opt, batch) in runs.items():
            sync(device)
            start = time.perf_counter()
            step(model, task, opt, batch, device, gens[key])
            sync(device)
            if i >= args.warmup:
                times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    for key in runs:
        tokens = runs[key][0].backbone.num_patches
        print(f"  {key:5s} {med[key] * 1000:9.1f} ms/step  {b * t / med[key]:8.1f} frames/s  "
              f"{tokens} tokens per sample  (min {min(times[key]) * 1000:.1f}, max {max(times[key]) * 1000:.1f})")
    print(f"clip / frame step time, same pixels: {med['clip'] / med['frame']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
