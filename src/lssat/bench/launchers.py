"""Launchers: how the cells of a benchmark get trained.

Each launcher takes the pending cells and yields one `Outcome` per cell as it finishes; the runner
stores it. None of them writes the results store (only the runner does), so a launcher's jobs may
run anywhere that sees the benchmark folder.

- ``local`` (default): one cell after another in this process (no start-up cost per cell); with
  ``jobs`` > 1, independent cells on that many persistent CPU worker processes (`lssat.bench.pool`).
- ``subprocess``: each cell in a fresh Python process (``python -m lssat.bench.cell RUN_DIR``);
  isolates crashes and memory, and is the way to run a cell on several GPUs with the engine's DDP:
  Lightning's DDP launcher re-executes that command once per device.
- ``slurm``: a Slurm job array through submitit (``pip install 'lssat[slurm]'``), one cell a job;
  a pre-empted or timed-out job is requeued and resumes from the cell's last checkpoint.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lssat.bench import adapter
from lssat.bench.spec import Cell
from lssat.fileio import FolderInUse, atomic_write_text
from lssat.errors import ConfigError, MissingDependencyError

LAUNCHERS = ("local", "subprocess", "slurm")
ERROR_FILE = "error.txt"
TrainFn = Callable[[dict[str, Any], Path, bool], Mapping[str, Any]]


@dataclass
class Outcome:
    """What became of one cell: its run record (None if the run died before writing one) or error."""

    cell: Cell
    run_dir: Path
    record: dict[str, Any] | None
    error: str | None
    seconds: float


def run_dir_of(bench_dir: Path, cell: Cell) -> Path:
    """The run folder of a cell: readable label plus the start of its config hash."""
    return Path(bench_dir) / "runs" / f"{cell.label}-{cell.cell_id[:8]}"


def runner_options(bench_dir: Path, runner: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword options of `adapter.train_cell` from a spec's ``runner`` section."""
    runner = runner or {}
    cache = str((Path(bench_dir) / "data").resolve()) if runner.get("materialize_synthetic", True) else None
    return {"data_cache": cache, "threads": runner.get("threads")}


def prepare_run_dir(bench_dir: Path, cell: Cell, options: Mapping[str, Any] | None = None) -> Path:
    """Create a cell's run folder and write its config (and the runner's options) there:
    what `lssat.bench.cell` runs."""
    run_dir = run_dir_of(bench_dir, cell)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"cell": {"cell_id": cell.cell_id, "label": cell.label, **cell.axes()},
                           "runner": dict(options or {}), "config": cell.config}, sort_keys=False)
    atomic_write_text(run_dir / adapter.CELL_CONFIG_FILE, text)
    return run_dir


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}".rstrip(": ")


def train_one(cell: Cell, run_dir: Path, train_fn: TrainFn) -> tuple[dict[str, Any] | None, str | None]:
    """Train one cell in this process; resumes from a checkpoint an interrupted attempt left.

    A failure is returned as a one-line error (the traceback goes to the run folder's error.txt);
    KeyboardInterrupt and SystemExit propagate, so an interrupted cell stays not done.
    """
    resume = adapter.has_checkpoint(run_dir)
    try:
        return _train_one(cell, run_dir, train_fn, resume)
    except SystemExit as err:  # Lightning turns Ctrl-C / SIGTERM during fit into exit(1)
        raise KeyboardInterrupt from err


def _train_one(cell: Cell, run_dir: Path, train_fn: TrainFn, resume: bool) -> tuple[dict[str, Any] | None, str | None]:
    try:
        try:
            record = dict(train_fn(cell.config, run_dir, resume) or {})
        except FolderInUse:
            raise  # another process is training this cell: its checkpoints are not broken
        except Exception:
            if not resume:
                raise
            # the checkpoint may be the broken part (killed while saving): start the cell afresh
            adapter.discard_checkpoints(run_dir)
            record = dict(train_fn(cell.config, run_dir, False) or {})
    except Exception as err:  # a failing cell is recorded and the grid goes on
        atomic_write_text(run_dir / ERROR_FILE, traceback.format_exc())
        failed = adapter.read_record(run_dir)  # the engine's own record of the failure, if it wrote one
        return (failed if failed and failed.get("status") == "failed" else None), _error_text(err)
    if record.get("status") != "done":
        return record, str(record.get("error") or f"run ended with status {record.get('status')!r}")
    return record, None


def evaluate_after(cell: Cell, run_dir: Path, record: dict[str, Any] | None, error: str | None,
                   options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A freshly trained cell evaluated on its extra test sets (`adapter.evaluate_cell`), in the
    process that trained it; the record as it was when the cell failed or has no eval sets."""
    if error is not None or not cell.eval_sets or not record or record.get("status") != "done":
        return record
    try:
        return adapter.evaluate_cell(run_dir, cell.eval_sets, **dict(options or {})) or record
    except Exception:  # the cell is trained: keep it; the runner evaluates the sets again afterwards
        atomic_write_text(run_dir / "eval_error.txt", traceback.format_exc())
        return record


def run_local(cells: Sequence[Cell], bench_dir: Path, train_fn: TrainFn | None = None,
              options: Mapping[str, Any] | None = None, jobs: int = 1) -> Iterator[Outcome]:
    """Train the cells one after another in this process (`options`: see `runner_options`); with
    `jobs` > 1 on that many worker processes instead (`lssat.bench.pool.run_pool`; `train_fn` must
    then be picklable, see `lssat.bench.pool.plan_jobs`)."""
    if jobs > 1:
        from lssat.bench.pool import run_pool

        yield from run_pool(cells, bench_dir, train_fn, options, jobs=jobs)
        return
    engine = train_fn is None
    if train_fn is None:
        train_fn = functools.partial(adapter.train_cell, **dict(options or {}))
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # lightning's own deprecation noise
    for cell in cells:
        start = time.perf_counter()
        run_dir = prepare_run_dir(bench_dir, cell, options)
        record, error = train_one(cell, run_dir, train_fn)
        if engine:
            record = evaluate_after(cell, run_dir, record, error, options)
        yield Outcome(cell, run_dir, record, error, time.perf_counter() - start)


def run_subprocess(cells: Sequence[Cell], bench_dir: Path, options: Mapping[str, Any] | None = None,
                   python: str | None = None) -> Iterator[Outcome]:
    """Train each cell in its own Python process (`python -m lssat.bench.cell RUN_DIR`)."""
    for cell in cells:
        start = time.perf_counter()
        run_dir = prepare_run_dir(bench_dir, cell, options)
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        proc = subprocess.run([python or sys.executable, "-m", "lssat.bench.cell", str(run_dir)],
                              env=dict(os.environ), check=False)
        if proc.returncode in (130, -2):
            raise KeyboardInterrupt
        record = adapter.read_record(run_dir)
        error = None
        if proc.returncode != 0 or not record or record.get("status") != "done":
            error = (record or {}).get("error") or _last_line(run_dir / ERROR_FILE) \
                or f"cell process exited with status {proc.returncode}"
        yield Outcome(cell, run_dir, record, error, time.perf_counter() - start)


def _last_line(path: Path) -> str | None:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


class CellJob:
    """A picklable Slurm job for one cell; on pre-emption or timeout submitit requeues it and
    the engine resumes from the cell's last checkpoint."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def __call__(self) -> dict[str, Any] | None:
        from lssat.bench.cell import run_cell

        return run_cell(Path(self.run_dir))

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue hook: resubmit the same cell (it resumes from its checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(self.run_dir))


def slurm_executor(folder: Path, options: Mapping[str, Any]):
    """A submitit executor for the benchmark's jobs (one-line error without submitit)."""
    try:
        import submitit
    except ImportError:
        raise MissingDependencyError("the slurm launcher needs submitit: pip install 'lssat[slurm]'") from None
    cluster = options.get("cluster")  # "debug" / "local" run the jobs here (for trying it out)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = {k: v for k, v in options.items() if k != "cluster"}
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"slurm option: {err}") from None
    return executor


def run_slurm(cells: Sequence[Cell], bench_dir: Path, options: Mapping[str, Any] | None = None,
              wait: bool = True, slurm: Mapping[str, Any] | None = None) -> Iterator[Outcome]:
    """Submit the cells as one Slurm job array (`slurm`: submitit executor parameters); with
    `wait`, yield each outcome as its job ends."""
    executor = slurm_executor(Path(bench_dir) / "slurm", slurm or {})
    run_dirs = [prepare_run_dir(bench_dir, cell, options) for cell in cells]
    start = time.perf_counter()
    with executor.batch():
        jobs = [executor.submit(CellJob(str(d))) for d in run_dirs]
    for job, run_dir in zip(jobs, run_dirs):
        atomic_write_text(run_dir / "slurm_job.txt", f"{job.job_id}\n")
    print(f"submitted {len(jobs)} cells as Slurm jobs {jobs[0].job_id if jobs else '-'}"
          f"{'...' if len(jobs) > 1 else ''}", file=sys.stderr)
    if not wait:
        return
    for job, cell, run_dir in zip(jobs, cells, run_dirs):
        try:
            record = job.result()
            error = None if record and record.get("status") == "done" else \
                str((record or {}).get("error") or "job ended without a done record")
        except Exception as err:  # the job failed: keep its error, go on with the others
            record, error = adapter.read_record(run_dir), _error_text(err)
        yield Outcome(cell, run_dir, record, error, time.perf_counter() - start)
