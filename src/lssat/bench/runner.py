"""Run a benchmark spec: every cell through the training engine, resumably.

`run_benchmark(spec, bench_dir)`:

1. writes the spec to ``BENCH_DIR/spec.yaml``;
2. collects records that finished without reaching the store (a run killed between the engine's
   record and the store update, or Slurm jobs) from the run folders;
3. trains every cell whose store entry is not "done" (failed and interrupted cells run again;
   an interrupted cell resumes from its last checkpoint), storing each outcome as it comes (the
   local launcher trains `jobs` cells at a time on CPU worker processes, see `lssat.bench.pool`;
   only this process writes the store);
4. writes the report (optional).

One `run_benchmark` at a time per benchmark folder: the folder is locked while it runs (a second
``lssat bench`` on it says which process holds it and exits with status 2, or waits with --wait),
and each cell's run folder is locked by the engine while the cell trains.

A cell is done only when its run record says so; a failing cell is stored with its error and the
grid goes on; Ctrl-C (or SIGTERM) stops after nothing worse than losing the running cell's progress
since its last checkpoint.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lssat.bench import adapter, launchers, pool
from lssat.bench.spec import BenchSpec, Cell
from lssat.bench.store import ResultsStore, make_entry
from lssat.fileio import atomic_write_text, folder_lock
from lssat.errors import ConfigError

SPEC_FILE = "spec.yaml"


@dataclass
class BenchResult:
    """What one `run_benchmark` call did."""

    bench_dir: Path
    total: int
    skipped: int = 0
    collected: int = 0
    ran: int = 0
    done: int = 0
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    report: Path | None = None

    def summary(self) -> str:
        """One line for the terminal."""
        state = "interrupted" if self.interrupted else "finished"
        text = (f"benchmark {state}: {self.done}/{self.total} cells done ({self.skipped} already done, "
                f"{self.collected} collected from run folders, {self.ran} run now"
                f", {len(self.failed)} failed) in {_duration(self.seconds)}")
        if self.interrupted:
            text += "; rerun the same command to continue"
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def check_cells(cells: list[Cell]) -> None:
    """Two cells with the same config would share a run folder and an id: refuse the spec."""
    seen: dict[str, str] = {}
    for cell in cells:
        if cell.cell_id in seen:
            raise ConfigError(f"cells {seen[cell.cell_id]} and {cell.label} have the same config; "
                              "give the axis entries settings that differ")
        seen[cell.cell_id] = cell.label


def check_configs(cells: list[Cell]) -> None:
    """Validate every cell's training config as the engine will, before any cell runs: a mistake
    the cells share (an unknown override key) fails once, in one line naming the cell and the key,
    rather than failing and being stored cell by cell."""
    from lssat.errors import LssatError

    for cell in cells:
        try:
            adapter.check_config(cell.config)
        except LssatError as err:
            raise ConfigError(f"cell {cell.label}: {err}") from None


def collect_finished(cells: list[Cell], bench_dir: Path, store: ResultsStore) -> int:
    """Store done records found in run folders but not in the store; returns how many."""
    entries = store.load()
    found = 0
    for cell in cells:
        if entries.get(cell.cell_id, {}).get("status") == "done":
            continue
        run_dir = launchers.run_dir_of(bench_dir, cell)
        record = adapter.read_record(run_dir)
        if record and record.get("status") == "done":
            store.put(make_entry(cell, record, run_dir, bench_dir))
            found += 1
    return found


def collect_from_spec(bench_dir: Path | str) -> int:
    """`collect_finished` for a benchmark folder's stored spec (0 when it has none)."""
    from lssat.bench.spec import load_spec

    bench_dir = Path(bench_dir)
    if not (bench_dir / SPEC_FILE).is_file():
        return 0
    spec = load_spec(yaml.safe_load((bench_dir / SPEC_FILE).read_text()))
    return collect_finished(spec.cells(), bench_dir, ResultsStore(bench_dir))


def evaluate_pending(cells: list[Cell], bench_dir: Path, store: ResultsStore, options: Mapping[str, Any],
                     progress: bool = True) -> int:
    """Evaluate done cells on the eval sets their record has no result for (added to the spec after
    they trained, or failed before), without retraining them; returns how many cells it evaluated."""
    entries = store.load()
    evaluated = 0
    for cell in cells:
        entry = entries.get(cell.cell_id) or {}
        if not cell.eval_sets or entry.get("status") != "done" \
                or not adapter.missing_eval_sets(entry.get("record"), cell.eval_sets):
            continue
        run_dir = launchers.run_dir_of(bench_dir, cell)
        record = adapter.evaluate_cell(run_dir, cell.eval_sets, **dict(options))
        if record is None:
            continue
        updated = make_entry(cell, record, run_dir, bench_dir)
        updated["attempts"] = entry.get("attempts", 1)
        store.put(updated)
        evaluated += 1
        if progress:
            failed = [n for n, r in (record.get("eval_sets") or {}).items() if r.get("error")]
            note = f"; failed: {', '.join(failed)}" if failed else ""
            print(f"{cell.label}: evaluated on {', '.join(cell.eval_sets)}{note}", file=sys.stderr)
    return evaluated


def _headline(record: Mapping[str, Any] | None) -> str:
    test = ((record or {}).get("metrics") or {}).get("test") or {}
    for key in ("video_auc", "mean_acc", "acc", "frame_auc"):
        if isinstance(test.get(key), (int, float)):
            return f"test {key} {test[key]:.3f}"
    return ""


def run_benchmark(spec: BenchSpec, bench_dir: Path | str, *, launcher: str = "local",
                  train_fn: launchers.TrainFn | None = None, retry_failed: bool = True,
                  slurm_options: Mapping[str, Any] | None = None, wait: bool = True,
                  write_report: bool = True, progress: bool = True, jobs: int | str | None = 1,
                  wait_lock: bool = False) -> BenchResult:
    """Train every cell of `spec` not yet done into `bench_dir`; see the module docstring.

    train_fn: the training function for the local launcher (default: the engine, via
    `lssat.bench.adapter.train_cell`); tests pass fakes (picklable, module-level, for jobs > 1).
    jobs: cells trained at once by the local launcher: 1 (default) in this process, one after
    another; N > 1 on N CPU worker processes; None the spec's ``runner.jobs`` if it sets one, else 1;
    "auto" one worker per usable core. Cells that want a GPU or several devices run one at a time.
    One run at a time per benchmark folder: it is locked while this runs (`lssat.fileio.folder_lock`);
    another holder is a `FolderInUse` error naming it, or with `wait_lock` a wait until it is done.
    """
    if launcher not in launchers.LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of: {', '.join(launchers.LAUNCHERS)}")
    bench_dir = Path(bench_dir)
    cells = spec.cells()
    check_cells(cells)
    if train_fn is None and launcher != "slurm":  # the engine trains them here (Slurm: `lssat bench` checks)
        check_configs(cells)
    with folder_lock(bench_dir, "benchmark folder", wait=wait_lock):
        return _run_locked(spec, bench_dir, cells, launcher=launcher, train_fn=train_fn, retry_failed=retry_failed,
                           slurm_options=slurm_options, wait=wait, write_report=write_report, progress=progress,
                           jobs=jobs)


def _run_locked(spec: BenchSpec, bench_dir: Path, cells: list[Cell], *, launcher: str,
                train_fn: launchers.TrainFn | None, retry_failed: bool, slurm_options: Mapping[str, Any] | None,
                wait: bool, write_report: bool, progress: bool, jobs: int | str | None) -> BenchResult:
    from lssat.progress import progress_bar as tqdm  # whole lines every 30 s when stderr is a log file

    atomic_write_text(bench_dir / SPEC_FILE, yaml.safe_dump(spec.to_dict(), sort_keys=False))
    store = ResultsStore(bench_dir)
    start = time.perf_counter()
    result = BenchResult(bench_dir, len(cells))
    result.collected = collect_finished(cells, bench_dir, store)
    entries = store.load()
    done_before = {c.cell_id for c in cells if entries.get(c.cell_id, {}).get("status") == "done"}
    result.skipped = len(done_before) - result.collected
    pending = [c for c in cells if c.cell_id not in done_before
               and (retry_failed or entries.get(c.cell_id, {}).get("status") != "failed")]
    result.done = len(done_before)
    options = launchers.runner_options(bench_dir, spec.runner)
    if launcher == "slurm":
        outcomes = launchers.run_slurm(pending, bench_dir, options, wait=wait, slurm=slurm_options)
    elif launcher == "subprocess":
        outcomes = launchers.run_subprocess(pending, bench_dir, options)
    else:
        requested = (spec.runner.get("jobs") or 1) if jobs is None else jobs
        n, note = pool.plan_jobs(pool.check_jobs(requested, "jobs"), pending, train_fn)
        if note:
            print(note, file=sys.stderr)
        if n > 1:  # the workers import the engine themselves (and say so in one line if they cannot)
            threads = int(options.get("threads") or 1)
            print(f"lssat bench: {n} worker processes, {threads} torch thread{'s' * (threads > 1)} each",
                  file=sys.stderr)
        elif train_fn is None and pending:
            adapter.engine_entry()  # fail in one line now rather than once per cell
        outcomes = launchers.run_local(pending, bench_dir, train_fn, options, jobs=n)

    bar = tqdm(total=len(cells), initial=len(done_before), desc=f"bench {spec.name}", unit="cell",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for outcome in outcomes:
            entry = make_entry(outcome.cell, outcome.record, outcome.run_dir, bench_dir, outcome.error)
            store.put(entry)
            result.ran += 1
            if entry["status"] == "done":
                result.done += 1
                note = f"done in {_duration(outcome.seconds)} {_headline(outcome.record)}".rstrip()
            else:
                result.failed.append(outcome.cell.label)
                note = f"FAILED in {_duration(outcome.seconds)}: {entry['error']}"
            bar.update(1)
            bar.write(f"[{result.done + len(result.failed)}/{len(cells)}] {outcome.cell.label}: {note}",
                      file=sys.stderr)
    except KeyboardInterrupt:
        result.interrupted = True
        outcomes.close()  # stop the workers first; cells they finished but did not report are stored now
        found = collect_finished(pending, bench_dir, store)
        result.collected += found
        result.done += found
        raise
    finally:
        outcomes.close()  # stops a pool's workers at once when the loop ends early
        bar.close()
        result.seconds = time.perf_counter() - start
        print(result.summary(), file=sys.stderr)
    if train_fn is None and not (launcher == "slurm" and not wait):
        evaluate_pending(cells, bench_dir, store, options, progress)
    if write_report and not (launcher == "slurm" and not wait):
        from lssat.bench.report import write_report as make_report

        result.report = make_report(bench_dir)
    return result
