"""`lssat bench`: run a benchmark spec (every cell through the training engine) and write its report."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from lssat.errors import ConfigError


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="run a backbone benchmark (backbones x tasks x recipes x seeds) and write its report",
        description="Train every cell of a benchmark spec into one run folder each, store the run records "
        "in BENCH_DIR/results.jsonl and write BENCH_DIR/report.md and report.html. Resumable: rerunning the "
        "same command skips finished cells and reruns failed or interrupted ones.",
    )
    parser.add_argument("spec", nargs="?", default="default",
                        help="a preset (default, quick, paper) or a spec YAML file (default: default)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="settings applied to every cell's training config, e.g. trainer.epochs=1")
    parser.add_argument("-o", "--output", help="benchmark folder (default: bench-<spec name>)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for a ${NAME} placeholder of the spec, e.g. --set ffpp_index=/data/ffpp.jsonl")
    parser.add_argument("--launcher", choices=("local", "subprocess", "slurm"), default="local",
                        help="local: cells in this process, or on --jobs worker processes (default); "
                        "subprocess: each cell "
                        "in its own process; slurm: a Slurm job array via submitit (pip install 'lssat[slurm]')")
    parser.add_argument("--devices", help="devices per cell (trainer.devices), e.g. 2 for DDP on 2 GPUs")
    parser.add_argument("--strategy", help="trainer.strategy per cell, e.g. ddp")
    parser.add_argument("--accelerator", help="trainer.accelerator per cell, e.g. gpu")
    parser.add_argument("--threads", type=int, help="torch threads while training (overrides runner.threads)")
    parser.add_argument("--seeds", type=_seed_list, metavar="S,S,...",
                        help="train with these seeds instead of the spec's, e.g. --seeds 3,4,5 -o bench-default-b "
                             "to check with `lssat report bench-default --reproduce bench-default-b` that the "
                             "answers survive other seeds")
    parser.add_argument("-j", "--jobs", type=_jobs, metavar="N",
                        help="local launcher: train N cells at once, each on its own CPU worker process with "
                        "--threads torch threads (default 1); 1 trains them one after another in this process "
                        "(default: auto, one worker per usable core). Cells that want a GPU or several devices "
                        "run one at a time; rerunning resumes cells that were running when it stopped")
    parser.add_argument("--slurm", dest="slurm", action="append", default=[], metavar="KEY=VALUE",
                        help="a submitit executor parameter, e.g. --slurm slurm_partition=gpu --slurm "
                        "timeout_min=600 --slurm gpus_per_node=1")
    parser.add_argument("--no-wait", action="store_true", help="slurm: submit and return; collect with "
                        "`lssat report DIR` (or rerun `lssat bench`) when the jobs have finished")
    parser.add_argument("--skip-failed", action="store_true", help="do not rerun cells that failed before")
    parser.add_argument("--wait", dest="wait_lock", action="store_true",
                        help="if another lssat bench is running in BENCH_DIR (the folder is locked), wait for it "
                        "to finish and then go on, instead of exiting with status 2")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and their state; train nothing")
    parser.set_defaults(func=run)
    return parser


def _pairs(items: list[str], what: str) -> dict[str, object]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: expected NAME=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else value
    return out


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct non-negative integers, got {text!r}")
    return seeds


def _jobs(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or auto, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1 or auto, got {text!r}")
    return value


def _terminate(signum, frame):  # Slurm and `kill` send SIGTERM: stop like Ctrl-C
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from lssat.bench.adapter import read_record
    from lssat.bench.launchers import run_dir_of
    from lssat.bench.runner import check_configs, run_benchmark
    from lssat.bench.spec import load_spec
    from lssat.bench.store import ResultsStore

    overrides = list(args.overrides)
    for key in ("devices", "strategy", "accelerator"):
        if getattr(args, key) is not None:
            overrides.append(f"trainer.{key}={getattr(args, key)}")
    spec = load_spec(args.spec, settings=_pairs(args.settings, "--set"), overrides=overrides)
    if args.seeds is not None:
        spec.seeds = list(args.seeds)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        spec.runner["threads"] = args.threads
    check_configs(spec.cells())  # every cell's training config, before any cell runs or is listed
    out = Path(args.output or f"bench-{spec.name}")
    launcher = args.launcher
    multi = str(args.devices or "1") not in ("1", "auto") or "ddp" in str(args.strategy or "")
    if launcher == "local" and multi:
        print("lssat bench: several devices per cell: each cell runs in its own process (--launcher subprocess), "
              "so the engine's DDP can start its processes", file=sys.stderr)
        launcher = "subprocess"
    jobs = args.jobs if args.jobs is not None else spec.runner.get("jobs") or "auto"
    if launcher != "local" and args.jobs not in (None, 1):
        print(f"lssat bench: --jobs applies to the local launcher only; the {launcher} launcher ignores it",
              file=sys.stderr)
    if args.dry_run:
        entries = ResultsStore(out).load() if (out / "results.jsonl").exists() else {}
        cells = spec.cells()
        for cell in cells:
            state = entries.get(cell.cell_id, {}).get("status", "pending")
            if state != "done":  # a cell training now, or killed while training, says so
                found = (read_record(run_dir_of(out, cell)) or {}).get("status")
                state = found if found in ("running", "interrupted") else state
            print(f"{state:8s} {cell.label}  {run_dir_of(out, cell)}")
        print(f"{len(cells)} cells, {sum(entries.get(c.cell_id, {}).get('status') == 'done' for c in cells)} done")
        return 0
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate)
    result = run_benchmark(spec, out, launcher=launcher, retry_failed=not args.skip_failed,
                           slurm_options=_pairs(args.slurm, "--slurm"), wait=not args.no_wait,
                           write_report=not args.no_report, jobs=jobs, wait_lock=args.wait_lock)
    if result.report is not None:
        print(f"wrote {result.report} and {result.report.with_suffix('.html')}")
    return 0 if not result.failed else 1
