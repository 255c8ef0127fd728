"""Data loading speed: images per second for synthetic generation, decoding, augmentation and the DataModule.

Makes N JPEG face-sized crops (224x224, quality 90, cut from scikit-image's bundled photographs) and
an index in a temporary folder, then measures, in this one run:

- synthetic face generation at 112x112 (when `lssat.data.synthetic` is installed): rendered in
  batches as the DataModule fetches them, one by one, and through the DataModule;
- JPEG decoding alone, PIL versus torchvision's decode_jpeg (what the loader uses);
- the training transforms alone (default settings, and SSAT's RandAugment m9 + erasing 0.25);
- the DataModule delivering 224x224 training batches with 0 and 2 worker processes, steady state
  (persistent workers, after a warm-up epoch) and the first epoch including worker start-up, with
  the CPU time per image summed over the main and worker processes;
- the in-memory path (``data.in_memory``) against the per-item path, both with 0 workers, on JPEGs
  stored at 32x32 and 64x64 (the benchmark grid's sizes): training batches with the default
  augmentation and validation passes, steady state, with the ratio memory / per-item.

Ratios are against the single-process decode + augment loop measured in the same run. On a shared
machine the wall-clock rates fall with the load; the CPU time per image and the capacity derived
from it (cores x 1000 / CPU ms) do not.

    python benchmarks/data.py                 # 500 images, batch 64
    python benchmarks/data.py --n 1000 --workers 0 2 4
    python benchmarks/data.py --only-memory    # just the in-memory rows (32 and 64 px)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_jpegs(folder: Path, n: int, size: int = 224, seed: int = 0) -> Path:
    """N JPEG crops of the bundled sample photographs and an index over them; returns the index path."""
    import skimage.data

    from lssat.data.index import IndexHeader, Record, write_index

    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(size // 2, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
        crop.save(folder / f"{i:05d}.jpg", quality=90)
        records.append(Record(path=f"{i:05d}.jpg", split="train", label=i % 4))
    index = folder / "index.jsonl"
    header = IndexHeader(dataset="bench", task="expression", classes=["a", "b", "c", "d"])
    write_index(index, header, records, data_root=folder)
    return index


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_decode(paths: list[Path]) -> dict[str, float]:
    """Images per second decoding JPEG files to uint8 CHW tensors (best of 3 passes)."""
    from lssat.data.loading import decode_image_file

    def pil(path: Path) -> torch.Tensor:
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)

    out = {}
    for name, fn in (("PIL", pil), ("torchvision decode_jpeg (used)", decode_image_file)):
        best = min(_timed(lambda: [fn(p) for p in paths]) for _ in range(3))
        out[name] = rate(len(paths), best)
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_transforms(paths: list[Path], size: int) -> dict[str, float]:
    """Images per second of the training transforms alone on decoded images."""
    from lssat.data.loading import decode_image_file
    from lssat.data.transforms import AugmentConfig, train_transform

    images = [decode_image_file(p) for p in paths]
    settings = {
        "train transforms (default: crop, flip, jitter)": AugmentConfig(),
        "train transforms (+ RandAugment m9, erasing 0.25)": AugmentConfig(randaugment_magnitude=9,
                                                                           random_erasing=0.25),
        "train transforms (paper: timm rand-m9-mstd0.5-inc1, pixel erasing 0.25)": AugmentConfig(
            aa="rand-m9-mstd0.5-inc1", reprob=0.25, color_jitter=0.0),
    }
    out = {}
    for name, aug in settings.items():
        transform = train_transform(size, aug)
        best = min(_timed(lambda: [transform(x) for x in images]) for _ in range(2))
        out[name] = rate(len(images), best)
    return out


def bench_baseline(paths: list[Path], size: int) -> float:
    """Single process, one image at a time: decode + default training transforms."""
    from lssat.data.loading import decode_image_file
    from lssat.data.transforms import AugmentConfig, train_transform

    transform = train_transform(size, AugmentConfig())
    best = min(_timed(lambda: [transform(decode_image_file(p)) for p in paths]) for _ in range(2))
    return rate(len(paths), best)


def _cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of this process and the given worker processes (Linux /proc)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def bench_datamodule(index: Path, size: int, batch_size: int, workers: int, epochs: int,
                     augment: dict | None = None) -> tuple[float, float, float | None]:
    """(steady-state images/s, first-epoch images/s, CPU ms per image) of DataModule training batches.

    CPU time counts the main process and the worker processes, so it does not depend on how busy
    the machine is; 1000 x cores / (CPU ms per image) is the rate those cores could sustain.
    """
    from lssat.data.datamodule import FaceDataModule

    dm = FaceDataModule({"index": str(index), "image_size": size, "batch_size": batch_size,
                         "num_workers": workers, "augment": augment or {}})
    return _run_epochs(dm, size, epochs)


def _run_epochs(dm, size: int, epochs: int) -> tuple[float, float, float | None]:
    dm.setup()
    loader = dm.train_dataloader()
    first, cpu = None, None
    total, seconds, cpu_total = 0, 0.0, 0.0
    for epoch in range(epochs):
        iterator = iter(loader)
        pids = [w.pid for w in getattr(iterator, "_workers", [])]
        cpu_start, start = _cpu_seconds(pids), time.perf_counter()
        n = 0
        for batch in iterator:
            assert batch["image"].dtype == torch.uint8 and batch["image"].shape[-1] == size
            n += batch["image"].shape[0]
        elapsed = time.perf_counter() - start
        cpu_end = _cpu_seconds(pids)
        if epoch == 0:
            first = rate(n, elapsed)
            continue
        total, seconds = total + n, seconds + elapsed
        if cpu_start is not None and cpu_end is not None and cpu_total is not None:
            cpu_total += cpu_end - cpu_start
        else:
            cpu_total = None
    del loader
    if cpu_total is not None and total:
        cpu = 1000 * cpu_total / total
    return (rate(total, seconds) if seconds else first), first, cpu


def bench_in_memory(n: int, size: int, batch_size: int, epochs: int) -> dict[str, tuple[float, float, float]]:
    """Per-item vs in-memory DataModule at `size` (JPEGs stored at that size, 0 workers, 1 thread):
    {"train" | "val": (per-item images/s, in-memory images/s, ratio)}, steady state (after epoch 1)."""
    from lssat.data.datamodule import FaceDataModule

    out: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lssat-bench-memory-") as tmp:
        index = make_jpegs(Path(tmp), n, size)
        rates: dict[str, list[float]] = {"train": [], "val": []}
        for in_memory in (False, True):
            dm = FaceDataModule({"index": str(index), "image_size": size, "batch_size": batch_size,
                                 "num_workers": 0, "in_memory": in_memory})
            dm.setup()
            assert dm.in_memory("train") is in_memory
            rates["train"].append(_run_epochs(dm, size, epochs)[0])
            rates["val"].append(_eval_rate(dm, epochs))
        for split, (per_item, memory) in rates.items():
            out[split] = (per_item, memory, memory / per_item)
    return out


def _eval_rate(dm, epochs: int) -> float:
    """Steady-state images/s of evaluation passes over the train records (as a val split would be)."""
    from lssat.data.sampling import FixedSampler

    loader = dm._loader("train", FixedSampler(range(len(dm.records("train")))))
    if dm.in_memory("train"):  # an eval-mode in-memory dataset over the same records
        from lssat.data.memory import MemoryBatches

        memory = MemoryBatches(dm.dataset("train"), range(len(dm.records("train"))), dm.config.image_size,
                               eval_crop=dm.config.augment)
        loader = type(loader)(memory, batch_size=loader.batch_size, sampler=loader.sampler, num_workers=0,
                              collate_fn=loader.collate_fn)
    else:
        from lssat.data.transforms import eval_transform

        dm.dataset("train").transform = eval_transform(dm.config.image_size, dm.config.augment)
    total, seconds = 0, 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        n = sum(batch["image"].shape[0] for batch in loader)
        if epoch:
            total, seconds = total + n, seconds + time.perf_counter() - start
    return rate(total, seconds)


def bench_synthetic(size: int, n: int, batch_size: int) -> dict[str, float] | None:
    """Synthetic faces per second at `size`: rendered in batches (as the DataModule fetches them)
    and one by one; None when `lssat.data.synthetic` is not installed."""
    try:
        from lssat.data.synthetic import SyntheticFaces
    except ImportError:
        return None
    faces = SyntheticFaces("expression", "train", n, size, 0)
    faces[0]
    batched = _timed(lambda: [faces.__getitems__(list(range(i, min(n, i + batch_size))))
                              for i in range(0, n, batch_size)])
    single = _timed(lambda: [faces[i] for i in range(n // 4)])
    return {f"synthetic faces {size}x{size}, batches of {batch_size}, 1 process": rate(n, batched),
            f"synthetic faces {size}x{size}, one by one, 1 process": rate(n // 4, single)}


def bench_synthetic_datamodule(size: int, n: int, batch_size: int, workers: int, epochs: int
                               ) -> tuple[float, float, float | None]:
    """The DataModule over the synthetic source: (steady images/s, first epoch, CPU ms per image)."""
    from lssat.data.datamodule import FaceDataModule

    dm = FaceDataModule({"synthetic": {"task": "expression", "train": n, "val": 0, "test": 0},
                         "image_size": size, "batch_size": batch_size, "num_workers": workers})
    return _run_epochs(dm, size, epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="number of JPEG files (default 500)")
    parser.add_argument("--size", type=int, default=224, help="image size of the batches (default 224)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per DataModule run; the first is warm-up")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process for the single-process rows (default 1)")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[32, 64],
                        help="image sizes of the in-memory vs per-item rows (default 32 64; none: skip)")
    parser.add_argument("--only-memory", action="store_true", help="only the in-memory vs per-item rows")
    parser.add_argument("--no-video", dest="video", action="store_false",
                        help="skip the video preprocessing rows (benchmarks/preprocess.py; needs lssat[faces])")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.n} JPEGs {args.size}x{args.size}, "
          f"batch {args.batch_size}")
    if args.memory_sizes:
        _print_memory_rows(args)
    if args.only_memory:
        return
    rows: list[tuple[str, float | None, float | None, str]] = []
    synth = bench_synthetic(112, 256, args.batch_size)
    if synth is None:
        rows.append(("synthetic faces 112x112", None, None, "lssat.data.synthetic not installed"))
    else:
        rows += [(name, value, None, "") for name, value in synth.items()]
        for workers in args.workers:
            steady, _, cpu = bench_synthetic_datamodule(112, 512, args.batch_size, workers, args.epochs)
            rows.append((f"DataModule synthetic 112x112 (render + augment), {workers} workers", steady, cpu, ""))
    with tempfile.TemporaryDirectory(prefix="lssat-bench-data-") as tmp:
        index = make_jpegs(Path(tmp), args.n, args.size)
        paths = sorted(Path(tmp).glob("*.jpg"))
        for name, value in bench_decode(paths).items():
            rows.append((f"decode {name}", value, None, ""))
        for name, value in bench_transforms(paths, args.size).items():
            rows.append((name, value, None, ""))
        baseline = bench_baseline(paths, args.size)
        rows.append(("baseline: decode + default transforms, 1 process", baseline, None, ""))
        settings = {"default": {}, "RandAugment m9 + erasing 0.25": {"randaugment_magnitude": 9,
                                                                     "random_erasing": 0.25}}
        for label, augment in settings.items():
            for workers in args.workers:
                steady, first, cpu = bench_datamodule(index, args.size, args.batch_size, workers, args.epochs, augment)
                rows.append((f"DataModule {label}, {workers} workers", steady, cpu, ""))
                if workers and label == "default":
                    rows.append((f"DataModule {label}, {workers} workers, first epoch", first, None,
                                 "incl. worker start-up"))
    width = max(len(r[0]) for r in rows)
    cores = os.cpu_count() or 1
    print(f"{'what':{width}s}  images/s  vs baseline  CPU ms/image  {cores}-core capacity")
    for name, value, cpu, note in rows:
        if value is None:
            print(f"{name:{width}s}       n/a  {note}")
            continue
        cpu_text = f"{cpu:12.2f}  {1000 * cores / cpu:8.0f} img/s" if cpu else " " * 26
        print(f"{name:{width}s}  {value:8.0f}  {value / baseline:9.2f}x  {cpu_text}  {note}".rstrip())
    print(f"(load average {os.getloadavg()[0]:.1f} on {cores} CPUs: wall-clock rates drop when the machine is "
          "shared; CPU ms/image does not)")
    if args.video:
        print()
        _preprocess_benchmark().main(["--widths", "224", "480", "--repeats", "2"])


def _print_memory_rows(args: argparse.Namespace) -> None:
    print(f"in-memory vs per-item DataModule, {args.n} JPEGs stored at the image size, batch {args.batch_size}, "
          f"0 workers, {args.threads} thread(s), steady state:")
    print(f"{'what':40s}  per-item img/s  in-memory img/s  speed-up")
    for size in args.memory_sizes:
        for split, (per_item, memory, ratio) in bench_in_memory(args.n, size, args.batch_size, args.epochs).items():
            what = f"{split} {size}x{size}" + (" (default augment)" if split == "train" else " (eval pass)")
            print(f"{what:40s}  {per_item:14.0f}  {memory:15.0f}  {ratio:7.1f}x")
    print(f"(load average {os.getloadavg()[0]:.1f})")
    print()


def _preprocess_benchmark():
    """benchmarks/preprocess.py, loaded as a module: video preprocessing frames per second."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("preprocess_benchmark", Path(__file__).with_name("preprocess.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
