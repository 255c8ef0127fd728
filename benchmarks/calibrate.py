"""Calibration of the synthetic faces' difficulty: task x backbone x training budget x difficulty -> test metric.

Usage::

    python benchmarks/calibrate.py                          # the full table (docs/synthetic.md)
    python benchmarks/calibrate.py --backbones vit --steps 50 --difficulties easy,hard
    python benchmarks/calibrate.py --quick                  # smoke run: one backbone, 1 epoch, 64/32/64 images
    python benchmarks/calibrate.py -o runs/calib --out calib.md   # keep the runs (a rerun resumes)

It trains with the real engine through the benchmark runner (`lssat.bench.runner.run_benchmark`):
the default benchmark spec's ``base`` settings, its task definitions (synthetic data sizes) and its
backbones, recipe ``supervised``, seed 0, once for each difficulty preset (set through
``data.synthetic.options.difficulty`` of each task) and each training budget (``trainer.max_steps``, optimiser steps).
All the cells of the calibration form one in-memory spec (task labels ``<task>.<difficulty>.s<steps>``),
so they share one pool of CPU worker processes, one torch thread each (``--jobs``, default: the
usable cores), longest budgets first.

It prints a Markdown table to stdout (and writes it to ``--out``): one row per task x backbone x
steps, one column per difficulty, each cell the task's headline test metric (deepfake video AUC,
attributes mean accuracy with the mean balanced accuracy in parentheses, expression accuracy),
under lines that state the chance / majority baselines, the wall time, the machine and the command.
The training logs and the runner's progress go to stderr.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before torch is imported; the workers set their own threads too
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from lssat.bench import adapter, launchers  # noqa: E402
from lssat.bench.pool import usable_cores  # noqa: E402
from lssat.bench.spec import BenchSpec, load_spec  # noqa: E402
from lssat.confkit import merge  # noqa: E402

DIFFICULTIES = ("easy", "default", "hard")
RECIPE = "supervised"
SEED = 0
QUICK_SIZES = (64, 32, 64)
SPLITS = ("train", "val", "test")


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _steps(text: str) -> list[int]:
    try:
        values = [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--steps: a comma-separated list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--steps: integers >= 1, got {text!r}")
    return sorted(set(values))


def _sizes(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split("/"))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--sizes: TRAIN/VAL/TEST image counts, e.g. 64/32/64, got {text!r}")
    return values  # type: ignore[return-value]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="default", help="benchmark spec (preset name or YAML path) whose base "
                   "settings, tasks and backbones to use (default: default)")
    p.add_argument("--backbones", type=_csv, default=None,
                   help="comma-separated backbone labels of the spec (default: all of them; --quick: the first)")
    p.add_argument("--tasks", type=_csv, default=None, help="comma-separated task labels of the spec (default: all)")
    p.add_argument("--difficulties", type=_csv, default=list(DIFFICULTIES),
                   help="comma-separated difficulty presets (default: easy,default,hard)")
    p.add_argument("--steps", type=_steps, default=None,
                   help="comma-separated training budgets in optimiser steps (default: a quarter of and the "
                        "spec's own trainer.max_steps; --quick: 2)")
    p.add_argument("--sizes", type=_sizes, default=None, metavar="TRAIN/VAL/TEST",
                   help="override every task's synthetic split sizes (default: the spec's; --quick: 64/32/64)")
    p.add_argument("--jobs", type=int, default=None,
                   help="trainings at once on CPU worker processes, one torch thread each "
                        f"(default: the usable cores, here {usable_cores()})")
    p.add_argument("-o", "--output-dir", default=None,
                   help="benchmark folder for the runs (kept; a rerun resumes). Default: a temporary folder, "
                        "deleted at the end")
    p.add_argument("--out", default=None, help="also write the table to this file")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: the first backbone (unless --backbones), 1 epoch, 64/32/64 images")
    args = p.parse_args(argv)
    from lssat.data.synthetic.difficulty import PRESETS

    unknown = [d for d in args.difficulties if d not in PRESETS]
    if unknown or not args.difficulties:
        p.error(f"--difficulties: choose among {', '.join(PRESETS)}, got {','.join(args.difficulties) or 'none'}")
    if args.jobs is not None and args.jobs < 1:
        p.error("--jobs must be >= 1")
    return args


def build_spec(args: argparse.Namespace) -> tuple[BenchSpec, dict[str, tuple[str, str, int]], list[int]]:
    """The calibration as one in-memory benchmark spec, the task label -> (task, difficulty, steps)
    map, and the budgets. The spec's base, tasks and backbones are read now, not copied."""
    source = load_spec(args.spec)
    backbones = args.backbones or (list(source.backbones)[:1] if args.quick else list(source.backbones))
    tasks = args.tasks or list(source.tasks)
    for kind, chosen, known in (("backbone", backbones, source.backbones), ("task", tasks, source.tasks)):
        missing = [c for c in chosen if c not in known]
        if missing:
            raise SystemExit(f"calibrate: unknown {kind} {missing[0]!r} in spec {source.name} "
                             f"(known: {', '.join(known)})")
    spec_steps = int((source.base.get("trainer") or {}).get("max_steps") or 200)
    budgets = args.steps or ([2] if args.quick else sorted({max(1, spec_steps // 4), spec_steps}))
    sizes = args.sizes or (QUICK_SIZES if args.quick else None)

    base = merge(copy.deepcopy(source.base), {"trainer": {"accelerator": "cpu", "devices": 1}})  # CPU workers, one device each
    entries: dict[str, dict[str, Any]] = {}
    where: dict[str, tuple[str, str, int]] = {}
    for steps in sorted(budgets, reverse=True):  # the longest cells first: the pool ends sooner
        for task in tasks:
            for difficulty in args.difficulties:
                entry = copy.deepcopy(source.tasks[task])
                config = entry.get("config") or {}
                syn = config.get("data", {}).get("synthetic")
                if not isinstance(syn, dict):
                    raise SystemExit(f"calibrate: task {task} of spec {source.name} has no data.synthetic")
                fragment: dict[str, Any] = {"trainer": {"max_steps": steps, "warmup_steps": max(1, steps // 10)},
                                            "data": {"synthetic": {"options": {"difficulty": difficulty}}}}
                if sizes:
                    fragment["data"]["synthetic"].update(dict(zip(SPLITS, sizes)))
                entry["config"] = merge(config, fragment)
                label = f"{task}.{difficulty}.s{steps}"
                entries[label] = entry
                where[label] = (task, difficulty, steps)
    spec = BenchSpec(
        name=f"calibrate-{source.name}",
        description=f"difficulty calibration from spec {source.name}",
        base=base,
        backbones={b: copy.deepcopy(source.backbones[b]) for b in backbones},
        tasks=entries,
        recipes={RECIPE: adapter.recipe_fragment(RECIPE)},
        seeds=[SEED],
        fractions=[1.0],
        settings=dict(source.settings),
        report={},
        runner={"threads": 1, "materialize_synthetic": True},
        source="benchmarks/calibrate.py",
    )
    return spec, where, budgets


# ------------------------------------------------------------------------------------------ table

def baselines(spec: BenchSpec, where: dict[str, tuple[str, str, int]]) -> list[str]:
    """One phrase per task: its chance / majority baseline on the test split (labels do not depend
    on the difficulty, so one split per task is enough)."""
    from lssat.data.synthetic import SyntheticFaces

    out, seen = [], set()
    for label, (task, _, _) in where.items():
        if task in seen:
            continue
        seen.add(task)
        entry = spec.tasks[label]
        syn = dict(entry["config"]["data"]["synthetic"])
        kind, n_test = entry["kind"], int(syn.get("test", 200))
        if kind == "expression":
            out.append(f"{task}: acc 1/8 = 0.125 (chance; {n_test} test images)")
        elif kind == "deepfake":
            clip = int((syn.get("options") or {}).get("clip_len", 8))
            out.append(f"{task}: video AUC 0.5 (chance; {n_test} test frames, {-(-n_test // clip)} videos)")
        else:
            options = {k: v for k, v in (syn.get("options") or {}).items() if k != "difficulty"}
            records = SyntheticFaces(syn.get("task", kind), split="test", n=n_test, size=16,
                                     seed=int(syn.get("seed", 0)), **options).records()
            rows = [r.attributes for r in records]
            rates = [sum(col) / len(col) for col in zip(*rows)]
            majority = sum(max(p, 1 - p) for p in rates) / len(rates)
            out.append(f"{task}: mean acc {majority:.3f} (always the majority value, mean over "
                       f"{len(rates)} attributes of the test split; balanced acc 0.5; {n_test} test images)")
    return out


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and value == value else "n/a"


def cell_text(record: dict[str, Any] | None, kind: str, headline: str) -> str:
    """A table cell: the headline test metric (attributes: with the mean balanced accuracy)."""
    if not record or record.get("status") != "done":
        return "failed"
    test = (record.get("metrics") or {}).get("test") or {}
    text = _number(test.get(headline))
    if kind == "attributes":
        balanced = test.get("mean_balanced_acc", test.get("balanced_acc"))
        text += f" ({_number(balanced)})"
    return text


def headline_of(entry: dict[str, Any]) -> str:
    task = (entry.get("config") or {}).get("task") or {}
    return str(task.get("headline") or {"deepfake": "video_auc", "attributes": "mean_acc"}.get(entry["kind"], "acc"))


def make_table(spec: BenchSpec, where: dict[str, tuple[str, str, int]], bench_dir: Path,
               difficulties: list[str], budgets: list[int]) -> list[str]:
    """The Markdown table's lines, read from the cells' run records (run_record.json)."""
    values: dict[tuple[str, str, int, str], str] = {}
    for cell in spec.cells():
        task, difficulty, steps = where[cell.task]
        entry = spec.tasks[cell.task]
        record = adapter.read_record(launchers.run_dir_of(bench_dir, cell))
        values[(task, cell.backbone, steps, difficulty)] = cell_text(record, entry["kind"], headline_of(entry))
    tasks = list(dict.fromkeys(t for t, _, _ in where.values()))
    first = {task: next(label for label, w in where.items() if w[0] == task) for task in tasks}
    lines = ["| task | metric | backbone | steps | " + " | ".join(difficulties) + " |",
             "|---|---|---|---:|" + "---:|" * len(difficulties)]
    for task in tasks:
        entry = spec.tasks[first[task]]
        metric = headline_of(entry) + (" (balanced)" if entry["kind"] == "attributes" else "")
        for backbone in spec.backbones:
            for steps in sorted(budgets):
                cells = [values.get((task, backbone, steps, d), "n/a") for d in difficulties]
                lines.append(f"| {task} | {metric} | {backbone} | {steps} | " + " | ".join(cells) + " |")
    return lines


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    start = time.perf_counter()
    spec, where, budgets = build_spec(args)
    jobs = args.jobs or usable_cores()
    from lssat.bench.runner import run_benchmark

    with tempfile.TemporaryDirectory(prefix="lssat-calibrate-") as tmp:
        bench_dir = Path(args.output_dir) if args.output_dir else Path(tmp)
        result = run_benchmark(spec, bench_dir, jobs=jobs, write_report=False, progress=False)
        seconds = time.perf_counter() - start
        table = make_table(spec, where, bench_dir, args.difficulties, budgets)
    cores = usable_cores()
    from lssat.data.synthetic.difficulty import PRESETS

    now = datetime.datetime.now(datetime.timezone.utc)
    size = (spec.base.get("data") or {}).get("image_size", "?")
    header = [
        "Chance / majority baselines: " + "; ".join(baselines(spec, where)) + ".",
        f"Recipe {RECIPE}, seed {SEED}, {size} px, backbones and settings of spec `{args.spec}`; "
        f"{len(spec.cells())} trainings ({result.done} done, {len(result.failed)} failed) on {min(jobs, len(spec.cells()))} "
        f"worker processes of one torch thread; wall time {_duration(seconds)} on {cores} usable cores "
        f"({os.cpu_count()} in all, {platform.machine()}, {platform.system()}), {now:%Y-%m-%d %H:%M} UTC.",
        "Difficulty knobs: " + "; ".join(
            f"{d}: " + ", ".join(f"{k} {v:g}" for k, v in PRESETS[d].to_dict().items()) for d in args.difficulties) + ".",
        "Command: `python benchmarks/calibrate.py" + (" " + shlex.join(argv) if argv else "") + "`",
    ]
    text = "\n\n".join(header) + "\n\n" + "\n".join(table) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 1 if result.failed or result.interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
