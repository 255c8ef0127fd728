"""Texture descriptor throughput against scikit-image and a plain tensor copy, measured in one run.

A batch of 64 grayscale 224 x 224 uint8 images (crops of scikit-image's photographs, so flat areas,
edges and ties occur as in real faces) goes through:

- scikit-image's `local_binary_pattern` (P=8, R=1, uniform) in a Python loop: the reference;
- a plain copy of the batch as float32 (the form a training step holds it in): the memory floor;
  the copy of the uint8 batch is printed too;
- lssat's LBP (P=8, R=1, uniform) and LDP (k=3), eager and compiled (`compile=True`; the
  one-off compile time is printed separately and excluded from the throughput).

Prints images per second and the ratios the targets are stated in: LBP / scikit-image (target
>= 25x), float32 copy / LBP (target <= 10x), LDP time / LBP time (target <= 2x).

    .venv/bin/python benchmarks/texture.py [--batch 64] [--size 224] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def make_batch(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(batch):
        img = Image.fromarray(sources[i % len(sources)]).convert("L")
        w, h = img.size
        side = int(rng.integers(size, min(w, h) + 1))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        out.append(np.asarray(img.crop((x0, y0, x0 + side, y0 + side)).resize((size, size))))
    return torch.from_numpy(np.stack(out))


def timed(fn, repeats: int, sync=lambda: None) -> float:
    """Best-of-`repeats` seconds per call, after one warm-up call."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from skimage.feature import local_binary_pattern

    from lssat.texture import lbp, ldp

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = make_batch(args.batch, args.size)
    images = batch.numpy()
    x = batch.to(device)
    xf = x.float()
    n = args.batch

    rows = []
    t_sk = timed(lambda: [local_binary_pattern(im, 8, 1, "uniform") for im in images], 1)
    rows.append(("scikit-image LBP loop (1 thread)", t_sk))
    t_copy = timed(lambda: xf.clone(), args.repeats * 4, sync)
    rows.append(("copy of the float32 batch", t_copy))
    rows.append(("copy of the uint8 batch", timed(lambda: x.clone(), args.repeats * 4, sync)))
    t_lbp_eager = timed(lambda: lbp(x, 8, 1.0, "uniform", compile=False), args.repeats, sync)
    rows.append(("lssat LBP eager", t_lbp_eager))
    t_ldp_eager = timed(lambda: ldp(x, 3, compile=False), args.repeats, sync)
    rows.append(("lssat LDP eager", t_ldp_eager))

    start = time.perf_counter()
    lbp(x, 8, 1.0, "uniform", compile=True)
    sync()
    compile_lbp = time.perf_counter() - start
    start = time.perf_counter()
    ldp(x, 3, compile=True)
    sync()
    compile_ldp = time.perf_counter() - start
    t_lbp = timed(lambda: lbp(x, 8, 1.0, "uniform", compile=True), args.repeats, sync)
    rows.append(("lssat LBP compiled", t_lbp))
    t_ldp = timed(lambda: ldp(x, 3, compile=True), args.repeats, sync)
    rows.append(("lssat LDP compiled", t_ldp))

    print(f"batch {n} x {args.size}x{args.size} grayscale on {device} "
          f"({torch.get_num_threads()} threads, torch {torch.__version__})")
    for name, seconds in rows:
        print(f"  {name:36s} {n / seconds:12,.0f} images/s  ({seconds * 1e3:8.2f} ms/batch)")
    print(f"  one-off compile: LBP {compile_lbp:.1f} s, LDP {compile_ldp:.1f} s")
    for label, t in (("eager", t_lbp_eager), ("compiled", t_lbp)):
        print(f"LBP {label:8s}: {t_sk / t:6.1f}x scikit-image (target >= 25x), "
              f"{t / t_copy:6.1f}x the float32 copy time (target <= 10x)")
    print(f"LDP / LBP time: eager {t_ldp_eager / t_lbp_eager:.2f}, compiled {t_ldp / t_lbp:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
