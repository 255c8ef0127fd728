"""Training step time per recipe, against the supervised step measured in the same run.

One training step = the engine's step (`lssat.engine.schemes.step_losses`: texture maps computed
from the uint8 batch inside the step, masked pass, decoder, unmasked pass, head), backward, AdamW
step, as `lssat train` runs it (bf16 autocast on a GPU that supports it, float32 on a CPU).
Prints each recipe's median step time, images per second and ratio to supervised (target:
lssat-ldp <= 1.4x), then the supervised step's achieved FLOP/s (forward + backward FLOPs counted
with torch.utils.flop_counter, about 3x the forward) against this machine's measured float32
matmul peak (best of a few large torch.mm).

    python benchmarks/step.py                       # vit_small_patch16_224, 224x224, batch 8, CPU
    python benchmarks/step.py --device cuda --batch 64
    python benchmarks/step.py --texture-compile first   # CPU: LDP/LBP kernels through torch.compile

On a shared machine, run it twice and compare; the ratios are steadier than the times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="vit_small_patch16_224")
    p.add_argument("--img", type=int, default=224)
    p.add_argument("--batch", type=int, default=None, help="default 8 on a CPU, 64 on a GPU")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--recipes", default="supervised,ssat,lssat-ldp,rrlnrc")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--texture-compile", choices=("auto", "never", "first"), default="never",
                   help="CPU texture kernels: eager (never), compiled before timing (first), or lssat's default")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return p.parse_args()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, n: int | None = None, repeats: int = 5) -> float:
    """Best float32 FLOP/s of an n x n x n torch.mm (2 n^3 FLOPs)."""
    import torch

    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def build(recipe: str, args, device):
    import torch

    from lssat.engine import optim
    from lssat.models.lssat import LSSATModel
    from lssat.tasks import build_task

    torch.manual_seed(0)
    task = build_task("deepfake")
    model = LSSATModel(args.backbone, task.num_outputs, recipe, args.img).to(device)
    opt = optim.build_optimizer(model, 1e-4, 0.05, (0.9, 0.999))
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randint(0, 256, (args.batch, 3, args.img, args.img), dtype=torch.uint8,
                                    generator=g).to(device),
             "label": torch.randint(0, 2, (args.batch,), generator=g).to(device)}
    return model, task, opt, batch


def step(model, task, opt, batch, device, generator):
    import torch

    from lssat.engine.schemes import step_losses

    stage = "supervised" if not model.recipe.aux else "joint"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = step_losses(model, batch, task, stage, generator=generator)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()


def time_recipe(recipe: str, args, device) -> list[float]:
    import torch

    model, task, opt, batch = build(recipe, args, device)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(args.warmup + args.steps):
        sync(device)
        start = time.perf_counter()
        step(model, task, opt, batch, device, gen)
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return times


def step_flops(args, device) -> tuple[int, int]:
    """(forward + backward FLOPs of one supervised training step, 3 x forward FLOPs)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from lssat.engine.schemes import step_losses
    from lssat.models.lssat import flops_per_image

    model, task, _, batch = build("supervised", args, device)
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        out = step_losses(model, batch, task, "supervised")
        out["loss"].backward()
    return int(counter.get_total_flops()), 3 * flops_per_image(model) * args.batch


def main() -> int:
    args = parse()
    if args.texture_compile != "auto":
        os.environ["LSSAT_TEXTURE_COMPILE_AFTER"] = "0" if args.texture_compile == "first" else "1e18"
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.batch = args.batch or (64 if device.type == "cuda" else 8)
    if args.texture_compile == "first":
        args.warmup = max(args.warmup, 3)  # the first steps compile the texture kernels
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if "supervised" not in recipes:
        recipes.insert(0, "supervised")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{args.backbone} {args.img}x{args.img}, batch {args.batch}, {name}, "
          f"{'bf16 autocast' if device.type == 'cuda' else 'float32'}, texture compile: {args.texture_compile}; "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    results = {}
    for recipe in recipes:
        times = time_recipe(recipe, args, device)
        results[recipe] = statistics.median(times)
        print(f"  {recipe:12s} {results[recipe] * 1000:9.1f} ms/step  {args.batch / results[recipe]:8.1f} img/s  "
              f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})", flush=True)
    base = results["supervised"]
    print("ratio to supervised: " + ", ".join(f"{r} {t / base:.2f}x" for r, t in results.items()))
    if "lssat-ldp" in results:
        ratio = results["lssat-ldp"] / base
        print(f"lssat-ldp / supervised = {ratio:.2f} (target <= 1.4): {'met' if ratio <= 1.4 else 'NOT met'}")
    counted, approx = step_flops(args, device)
    peak = matmul_peak(device)
    achieved = counted / base
    print(f"supervised step: {counted / 1e9:.1f} GFLOP counted (forward+backward; 3 x forward = "
          f"{approx / 1e9:.1f}), {achieved / 1e9:.1f} GFLOP/s achieved")
    print(f"float32 matmul peak {peak / 1e9:.1f} GFLOP/s: the step reaches {100 * achieved / peak:.0f}% of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
