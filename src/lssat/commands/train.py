"""`lssat train`: train, validate, test and record one run from a config."""

from __future__ import annotations

import argparse


class _HelpWithKeys(argparse.Action):
    """-h/--help that adds the presets and the config's top-level keys (`lssat.config.keys_help`):
    built only when asked for, since it imports the config tree (torch), which `lssat --help` must not."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from lssat.config import keys_help

        parser.print_help()
        print(f"\n{keys_help()}")  # printed as it is: argparse would re-wrap its lines
        parser.exit()


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", add_help=False,
        help="train a model from a config (preset or YAML) and write a run folder",
        description="Train, validate and test one run. The config is a preset name (see "
        "docs/training.md) or a YAML file; later --config sources and KEY=VALUE overrides win. "
        "The run folder is OUTPUT_DIR/RUN_ID, RUN_ID being a hash of the resolved config. "
        "Give the KEY=VALUE overrides together, after or before the options.",
    )
    parser.add_argument("-h", "--help", action=_HelpWithKeys,
                        help="show this help, the presets and the config's top-level keys, and exit")
    parser.add_argument("--config", "-c", action="append", required=True, metavar="FILE_OR_PRESET",
                        help="a YAML file or a preset (e.g. synthetic-deepfake, backbones/vit-small); repeatable")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. trainer.epochs=10 data.batch_size=32 recipe=ssat")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                        help="continue from the run folder's last checkpoint, or from CHECKPOINT "
                        "(a last.ckpt or a run folder)")
    parser.add_argument("-o", "--output", dest="output_dir", default=None,
                        help="the folder run folders go in (config output_dir)")
    parser.add_argument("--output-dir", dest="output_dir", help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument("--wait", action="store_true",
                        help="if another process is training this run (its folder is locked), wait for it "
                        "instead of exiting with status 2")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from lssat.config import load_config

    from pathlib import Path

    overrides = list(args.overrides)
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        overrides.insert(0, args.resume)  # `--resume key=value ...`: the override is not a checkpoint
        args.resume = True
    if args.output_dir is not None:
        overrides.append(f"output_dir={args.output_dir}")
    cfg = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(f"# run id {cfg.run_id}")
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0

    from lssat.engine.run import train

    result = train(cfg, resume=args.resume, wait=getattr(args, "wait", False))
    if result.is_global_zero and result.record.get("requeued"):
        print(f"run {result.record['run_id']}: {result.record['error']}")
    elif result.is_global_zero:
        print(summary(result.record, result.folder))
    return 0


def summary(record: dict, folder) -> str:
    """A few lines: run folder, best validation and test headline, cost."""
    headline = record["task"]["headline"]
    val = (record["metrics"].get("val") or {}).get(headline)
    test = (record["metrics"].get("test") or {}).get(headline)
    cost = record["cost"]
    ips = cost.get("train_images_per_second")

    def fmt(x):
        return "n/a" if x is None else f"{x:.4f}"

    lines = [f"run {record['run_id']}: {record['status']} -> {folder}",
             f"  {headline}: val {fmt(val)} (checkpoint {record['checkpoint']['tested']}, "
             f"epoch {record['checkpoint']['epoch']}), test {fmt(test)}",
             f"  {cost['parameters']:,} parameters, wall time {cost['wall_time_s']:.1f} s"
             + (f", {ips:.1f} training images/s" if ips else "")]
    return "\n".join(lines)
