"""The local launcher's parallel mode (``lssat bench --jobs N``): independent cells on CPU workers.

N persistent worker processes (multiprocessing's "spawn" context: a fresh interpreter, never a fork
of a parent that may hold torch's threads) import torch and the engine once, set their torch
threads (1, or ``runner.threads``) and then train one cell after another, as the parent hands them
out. The parent alone writes the results store: `run_pool` yields one `Outcome` per cell as it
arrives, exactly as the sequential launcher does.

- Synthetic datasets (``runner.materialize_synthetic``) are rendered first, each distinct one by one
  worker, before any cell is handed out; the cells then find them on disk.
- A cell goes to one worker at a time and is never handed out twice in a run.
- A worker that dies (segfault, out of memory, ``os._exit``) fails its cell with the exit status;
  a new worker takes its place and the grid goes on.
- Stopping the parent (Ctrl-C, SIGTERM, or an error) terminates the workers; their cells stay not
  done and resume from their last checkpoint on the next run. If the parent is killed outright,
  each worker notices (``PR_SET_PDEATHSIG`` on Linux, and a thread watching the parent's pid)
  and exits.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_any
from pathlib import Path
from typing import Any

from lssat.bench import adapter, launchers
from lssat.bench.spec import Cell
from lssat.errors import ConfigError, LssatError
from lssat.fileio import atomic_write_text

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_GPU_ACCELERATORS = {"gpu", "cuda", "mps", "tpu", "hpu", "ipu", "xla", "rocm"}
_STOP_SECONDS = 5.0  # how long stopped workers get before they are killed


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_jobs(value: Any, where: str = "--jobs") -> int | None:
    """A jobs setting as an int >= 1, or None for "one worker per usable core" (null or "auto")."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be an integer >= 1 or auto, got {value!r}")
    return value


def _accelerator_present() -> bool:
    """Whether accelerator "auto" would pick a GPU here (without importing torch when avoidable)."""
    torch = sys.modules.get("torch")
    if torch is None and sys.platform.startswith("linux"):
        return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/kfd").exists()
    if torch is None:
        import torch
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    return bool(torch.cuda.is_available() or (mps is not None and mps.is_available()))


def device_reason(cell: Cell, engine: bool = True) -> str | None:
    """Why a cell cannot share the CPU with other cells (a GPU, several devices, DDP), or None.

    engine: the cell trains through the engine, so accelerator "auto" counts as a GPU when one is present.
    """
    trainer = (cell.config or {}).get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "auto")).lower()
    strategy = str(trainer.get("strategy", "auto")).lower()
    devices = trainer.get("devices", "auto")
    if accelerator in _GPU_ACCELERATORS:
        return f"cell {cell.label} trains on accelerator {accelerator}"
    if any(name in strategy for name in ("ddp", "fsdp", "deepspeed")):
        return f"cell {cell.label} uses strategy {strategy}"
    many = (isinstance(devices, (list, tuple)) and len(devices) > 1) or \
        (isinstance(devices, int) and not isinstance(devices, bool) and (devices > 1 or devices == -1)) or \
        (isinstance(devices, str) and devices.strip().lstrip("-").isdigit() and int(devices) not in (0, 1))
    if many:
        return f"cell {cell.label} asks for {devices} devices"
    if engine and accelerator == "auto" and _accelerator_present():
        return f"cell {cell.label} has accelerator auto and this machine has a GPU"
    return None


def plan_jobs(jobs: int | None, cells: Sequence[Cell], train_fn: Any = None) -> tuple[int, str | None]:
    """How many workers to start for `cells`, and a one-line note when parallel mode is refused.

    jobs: the request (None: one worker per usable core). Never more workers than cells; 1 means the
    sequential in-process launcher. Cells that want a GPU or several devices, and a `train_fn` that
    cannot be sent to another process, fall back to 1 with a note.
    """
    wanted = usable_cores() if jobs is None else int(jobs)
    n = min(wanted, len(cells))
    if n <= 1:
        return 1, None
    for cell in cells:
        reason = device_reason(cell, engine=train_fn is None)
        if reason:
            return 1, f"lssat bench: {reason}: cells run one at a time (--jobs 1)"
    if train_fn is not None:
        try:
            pickle.dumps(train_fn)
        except Exception as err:  # a lambda or closure: fine in this process only
            return 1, f"lssat bench: the training function cannot go to worker processes ({err}): --jobs 1"
    return n, None


def datasets_to_render(cells: Iterable[Cell], cache: str | Path | None) -> dict[str, dict[str, Any]]:
    """The distinct ``data.synthetic`` datasets the cells need that are not yet on disk, by folder."""
    out: dict[str, dict[str, Any]] = {}
    if cache is None:
        return out
    for cell in cells:
        data = (cell.config or {}).get("data")
        if isinstance(data, dict) and data.get("synthetic"):
            folder = adapter.synthetic_folder(data, Path(cache))
            if not (folder / "index.jsonl").is_file():
                out.setdefault(str(folder), data)
    return out


# ----------------------------------------------------------------------------------------- worker

def _exit_with_parent(parent_pid: int) -> None:
    """End this process when the parent dies: the kernel's parent-death signal on Linux, and a
    thread that checks the parent's pid everywhere (it also covers a parent gone before prctl)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _stop(signum: int, frame: Any) -> None:  # the parent terminates us: stop like Ctrl-C
    raise KeyboardInterrupt


def _set_threads(threads: int) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _worker_main(conn: Any, train_fn: Any, options: dict[str, Any], threads: int, parent_pid: int) -> None:
    """A worker: import the engine once, then train the cells (or render the datasets) it is sent.
    It leaves with os._exit: tearing down an interpreter that holds torch can take seconds, and
    everything it wrote is on disk already."""
    try:
        _serve(conn, train_fn, options, threads, parent_pid)
        code = 0
    except KeyboardInterrupt:
        code = 130
    try:
        from multiprocessing import util

        util._run_finalizers()  # what multiprocessing does at exit: releases semaphores (tqdm's lock)
    except Exception:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def _serve(conn: Any, train_fn: Any, options: dict[str, Any], threads: int, parent_pid: int) -> None:
    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches us too: the parent decides
    signal.signal(signal.SIGTERM, _stop)
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    engine = train_fn is None
    if train_fn is None:
        import functools

        try:
            adapter.engine_entry()  # torch, lightning and the engine, once
        except LssatError as err:
            conn.send(("error", str(err)))
            return
        train_fn = functools.partial(adapter.train_cell, **options)
    _set_threads(threads)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        if task[0] == "render":
            try:
                adapter.materialize_synthetic(task[2], Path(task[3]))
                conn.send(("render", None))
            except Exception as err:
                conn.send(("render", launchers._error_text(err)))
            continue
        cell, run_dir = task[1], Path(task[2])
        _set_threads(threads)
        record, error = launchers.train_one(cell, run_dir, train_fn)
        if engine:
            record = launchers.evaluate_after(cell, run_dir, record, error, options)
        try:
            conn.send(("cell", record, error))
        except (pickle.PicklingError, TypeError, AttributeError):  # an odd object in the record
            conn.send(("cell", adapter.read_record(run_dir), error))


# ----------------------------------------------------------------------------------------- parent

@dataclass
class _Worker:
    process: Any
    conn: Any
    ready: bool = False
    task: tuple | None = None
    started: float = 0.0


def _death(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exited with status {code}"


class _Pool:
    """Worker processes and the cells they run; see the module docstring."""

    def __init__(self, size: int, train_fn: Any, options: Mapping[str, Any], threads: int) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.args = (train_fn, dict(options), threads, os.getpid())
        self.workers: list[_Worker] = []
        self.size, self.serial = size, 0

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.serial += 1
        process = self.ctx.Process(target=_worker_main, args=(child, *self.args),
                                   name=f"lssat-bench-worker-{self.serial}", daemon=True)
        process.start()
        child.close()
        self.workers.append(_Worker(process, parent))

    def run(self, tasks: Iterable[tuple], prepare: Any = None) -> Iterator[tuple[tuple, tuple | None, str | None, float]]:
        """Hand out `tasks` to idle workers; yield (task, reply, crash, seconds) as each ends.

        prepare(task) -> message: called just before a task is sent (default: the task itself).
        crash: why the worker died while it held the task (reply is then None).
        """
        todo = deque(tasks)
        while todo and len(self.workers) < self.size:  # workers that died at the end of the last run
            self._start()
        while todo or any(w.task is not None for w in self.workers):
            for w in self.workers:
                if w.ready and w.task is None and todo:
                    task = todo.popleft()
                    message = prepare(task) if prepare else task
                    try:
                        w.conn.send(message)
                    except OSError:  # it died while idle: the task stays to do, wait_any sees the death
                        todo.appendleft(task)
                        continue
                    w.task, w.started = task, time.perf_counter()
            ready = set(wait_any([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]))
            for w in list(self.workers):
                if w.conn not in ready and w.process.sentinel not in ready:
                    continue
                reply = None
                if w.conn.poll():
                    try:
                        reply = w.conn.recv()
                    except (EOFError, OSError):
                        reply = None
                if reply is None:  # end of file on the pipe, or the process is gone: it died
                    yield from self._died(w, bool(todo))
                    continue
                if reply[0] == "ready":
                    w.ready = True
                    continue
                if reply[0] == "error":  # the worker cannot start (no engine): no worker will
                    raise LssatError(reply[1])
                task, w.task = w.task, None
                yield task, reply, None, time.perf_counter() - w.started

    def _died(self, w: _Worker, more: bool) -> Iterator[tuple[tuple, None, str, float]]:
        w.process.join(timeout=_STOP_SECONDS)
        w.conn.close()
        self.workers.remove(w)
        why = _death(w.process)
        if not w.ready:
            raise LssatError(f"a bench worker process {why} while starting; run with --jobs 1 to see why")
        if more:
            self._start()
        if w.task is not None:
            yield w.task, None, f"the worker process training this cell {why}", time.perf_counter() - w.started

    def close(self, graceful: bool) -> None:
        """Stop the workers: ask idle ones to leave (graceful), terminate the rest, kill stragglers."""
        for w in self.workers:
            try:
                if graceful and w.task is None:
                    w.conn.send(None)
                else:
                    w.process.terminate()
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _STOP_SECONDS
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self.workers.clear()


def run_pool(cells: Sequence[Cell], bench_dir: Path, train_fn: launchers.TrainFn | None = None,
             options: Mapping[str, Any] | None = None, jobs: int = 2) -> Iterator[launchers.Outcome]:
    """Train `cells` on `jobs` worker processes; yield each `Outcome` as it arrives.

    train_fn: None for the engine (`adapter.train_cell` with `options`), else a picklable function
    (`launchers.TrainFn`). options: see `launchers.runner_options`; ``threads`` (default 1) is each
    worker's torch thread count.
    """
    options = dict(options or {})
    threads = int(options.get("threads") or 1)
    renders = datasets_to_render(cells, options.get("data_cache")) if train_fn is None else {}
    cells = list(cells)
    pool = _Pool(max(1, min(jobs, max(len(cells), len(renders)))), train_fn, options, threads)
    graceful = False
    try:  # the workers start on the first tasks (run() tops them up to the pool's size)
        broken: dict[str, str] = {}
        tasks = [("render", folder, data, options["data_cache"]) for folder, data in renders.items()]
        for task, reply, crash, _ in pool.run(tasks):
            if crash or (reply and reply[1]):
                broken[task[1]] = f"rendering the synthetic dataset failed: {crash or reply[1]}"
        runnable = []
        for cell in cells:
            data = (cell.config or {}).get("data")
            folder = str(adapter.synthetic_folder(data, Path(options["data_cache"]))) \
                if renders and isinstance(data, dict) and data.get("synthetic") else None
            if folder in broken:
                run_dir = launchers.prepare_run_dir(bench_dir, cell, options)
                yield launchers.Outcome(cell, run_dir, None, broken[folder], 0.0)
            else:
                runnable.append(("cell", cell))

        def send(task: tuple) -> tuple:
            return ("cell", task[1], str(launchers.prepare_run_dir(bench_dir, task[1], options)))

        for task, reply, crash, seconds in pool.run(runnable, prepare=send):
            cell = task[1]
            run_dir = launchers.run_dir_of(bench_dir, cell)
            if reply is not None:
                yield launchers.Outcome(cell, run_dir, reply[1], reply[2], seconds)
                continue
            record = adapter.read_record(run_dir)
            if record and record.get("status") == "done":  # it finished just before the worker died
                yield launchers.Outcome(cell, run_dir, record, None, seconds)
                continue
            atomic_write_text(run_dir / launchers.ERROR_FILE, f"{crash}\n")
            yield launchers.Outcome(cell, run_dir, record if record and record.get("status") == "failed"
                                    else None, crash, seconds)
        graceful = True
    finally:
        pool.close(graceful)
