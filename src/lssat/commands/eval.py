"""`lssat eval`: re-evaluate a checkpoint on a split of an index or of the synthetic faces."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (run folder, .safetensors or .ckpt) and print its metrics",
        description="Load a checkpoint written by `lssat train` and compute the task's metrics on one "
        "split. Without --index the data the run was trained on is used.",
    )
    parser.add_argument("checkpoint", help="a run folder (its best checkpoint), a .safetensors or a .ckpt file")
    parser.add_argument("--index", default=None, metavar="INDEX",
                        help="an index file, or 'synthetic' for the built-in synthetic faces")
    parser.add_argument("--split", choices=("val", "test"), default="test")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, mps (default auto)")
    parser.add_argument("-o", "--output", default=None, help="also write the metrics to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--metrics", choices=("lssat", "deepfakebench"), default="lssat",
                        help="deepfake models: also print acc, auc, eer, ap and video_auc as DeepfakeBench "
                        "defines them (docs/metrics.md); default lssat's only")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lssat.engine.run import evaluate
    from lssat.fileio import dumps_json

    result = evaluate(args.checkpoint, args.index, args.split, batch_size=args.batch_size,
                      num_workers=args.num_workers, accelerator=args.accelerator, progress=not args.quiet,
                      deepfakebench=args.metrics == "deepfakebench")
    metrics = result["metrics"]
    print(f"{result['checkpoint']} (run {result['run_id']}, epoch {result['epoch']}) on {result['data']} "
          f"{result['split']}:")
    for key, value in metrics.items():
        if isinstance(value, float):
            mark = "  <- headline" if key == result["headline"] else ""
            print(f"  {key:28s} {value:.4f}{mark}")
        elif isinstance(value, int) and not isinstance(value, bool):
            print(f"  {key:28s} {value}")
    for note in metrics.get("notes", []):
        print(f"  note: {note}")
    if "deepfakebench" in result:
        print("as DeepfakeBench defines them (docs/metrics.md):")
        for key, value in result["deepfakebench"].items():
            print(f"  {key:28s} {value:.4f}")
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps_json(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0
