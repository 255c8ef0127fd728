"""The run record: one JSON object per run, `run_record.json` in the run folder.

Fields (all present in every record; values may be null where not measured)::

    lssat_run        format version (1)
    run_id           short hash of the resolved config (`RunConfig.run_id`)
    name             the config's name (or null)
    status           "running", "done" or "failed"; a reader that finds "running" in a folder
                     whose run has no live process reports "interrupted" (`run_status`)
    error            the one-line error of a failed run, else null
    config           the resolved config (plain data)
    recipe           the recipe the model was built from (every field), and its M/R/C "label"
    task             kind, label names, headline metric and whether higher is better
    data             dataset name, records per split, images skipped
    metrics          {"val": metrics of the best checkpoint on the validation split,
                      "test": metrics on the test split with those weights}
    checkpoint       which weights were tested ("best" or "last"), their epoch, step and file
    cost             parameters, trainable_parameters, flops_per_image, train_images,
                     train_images_per_second (model step: forward, backward, optimizer),
                     train_loop_images_per_second (with data loading), peak_memory_bytes,
                     peak_memory_kind ("cuda_max_allocated" or "cpu_max_rss"), wall_time_s
    trainer          precision, accelerator, world_size, epochs and global steps reached, lr info
    predictions      {"test": "predictions/test.npz"}: the per-sample test predictions of the tested
                     weights, relative to the run folder (`write_predictions`), or null
    versions         python, torch, timm, lightning, torchmetrics, lssat
    process          {"pid", "host"}: the process that writes the record (rank 0)
    attempts         the earlier starts of this run in this folder, oldest first, one line each:
                     {"status" ("interrupted": killed while running; "failed"; "done"), "started",
                     "finished", "error", "resumed_from", "process", "step" (of its last checkpoint),
                     "noted" (when this start found it)}
    seed, resumed_from, started, finished, notes

While it trains, the run holds the folder's lock (`lssat.fileio.folder_lock`, released by the
kernel when the process dies however it dies): a second `lssat train` of the same run says who
holds it, and a record still saying "running" in an unlocked folder is an interrupted run.

Every nan is written as null (strict JSON). The file is replaced atomically, so a reader (the
benchmark runner) sees either the previous record or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lssat.fileio import atomic_path, atomic_write_text, dumps_json, lock_holder

FORMAT_VERSION = 1
FILENAME = "run_record.json"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def versions() -> dict[str, str]:
    """Versions of python and the libraries a result depends on."""
    import lightning
    import timm
    import torchmetrics

    import lssat

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "lightning": lightning.__version__, "torchmetrics": torchmetrics.__version__,
            "lssat": lssat.__version__}


def peak_memory(device: torch.device) -> tuple[int | None, str]:
    """Peak memory of this process: CUDA max allocated on a GPU, else the CPU peak resident set."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), "cpu_max_rss"


def new_record(run_id: str, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """A record with every field, status "running"."""
    return {
        "lssat_run": FORMAT_VERSION, "run_id": run_id, "name": config.get("name"), "status": "running",
        "error": None, "config": config, "recipe": None, "task": None, "data": None,
        "metrics": {"val": None, "test": None}, "checkpoint": None,
        "cost": {"parameters": None, "trainable_parameters": None, "flops_per_image": None, "train_images": None,
                 "train_images_per_second": None, "train_loop_images_per_second": None,
                 "peak_memory_bytes": None, "peak_memory_kind": None, "wall_time_s": None},
        "trainer": None, "predictions": None, "versions": versions(), "seed": seed, "resumed_from": None,
        "started": now_iso(), "finished": None, "notes": [],
        "process": {"pid": os.getpid(), "host": socket.gethostname()}, "attempts": [],
    }


def run_status(record: dict[str, Any], folder: str | Path) -> str:
    """The status of a record found in `folder`: its own, except "interrupted" for a record that
    still says "running" while no process holds the folder's lock (the run was killed)."""
    status = str(record.get("status"))
    if status == "running" and lock_holder(folder) is None:
        return "interrupted"
    return status


def earlier_attempts(folder: str | Path) -> list[dict[str, Any]]:
    """The `attempts` list for a new start of the run in `folder`: the previous record's attempts
    plus the previous record itself (an "interrupted" attempt if it still said "running"; the
    caller holds the folder's lock, so no process is running it). Empty without a readable record."""
    try:
        previous = json.loads((Path(folder) / FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(previous, dict):
        return []
    attempts = [a for a in previous.get("attempts") or [] if isinstance(a, dict)]
    status = previous.get("status")
    step = (previous.get("trainer") or {}).get("global_step") if status == "done" else \
        _checkpoint_step(Path(folder) / "checkpoints" / "last.json")
    attempts.append({"status": "interrupted" if status == "running" else status,
                     "started": previous.get("started"), "finished": previous.get("finished"),
                     "error": previous.get("error"), "resumed_from": previous.get("resumed_from"),
                     "process": previous.get("process"), "step": step, "noted": now_iso()})
    return attempts


def _checkpoint_step(path: Path) -> int | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("step")
    except (OSError, ValueError, AttributeError):
        return None


def write_record(folder: str | Path, record: dict[str, Any]) -> Path:
    """Write `run_record.json` atomically (nan and inf -> null); returns its path."""
    return atomic_write_text(Path(folder) / FILENAME, dumps_json(record, indent=2) + "\n")


PREDICTIONS_DIR = "predictions"


def write_predictions(folder: str | Path, split: str, arrays: dict[str, Any]) -> str:
    """Save one split's per-sample predictions as ``<folder>/predictions/<split>.npz`` (atomically);
    returns the path relative to `folder`.

    Arrays (one row per sample, sorted by ``index``, the sample's position in the split's record
    list): ``index``; ``target`` (deepfake 0/1 (N,), expression class id (N,), attributes 0/1 (N, A));
    ``score`` (deepfake fake probability (N,), expression softmax (N, C), attributes sigmoid (N, A));
    ``video_id`` (deepfake, "" for none) and ``subgroup/<key>`` (strings, "" for none) when present.
    Plain numpy arrays: ``numpy.load(path)`` reads them without pickle.
    """
    import numpy as np

    target = Path(folder) / PREDICTIONS_DIR / f"{split}.npz"
    with atomic_path(target, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    return f"{PREDICTIONS_DIR}/{split}.npz"


def read_record(folder: str | Path) -> dict[str, Any]:
    """The run record of a run folder; "status" is "interrupted" where the record says "running"
    but no process runs it (`run_status`)."""
    record = json.loads((Path(folder) / FILENAME).read_text(encoding="utf-8"))
    if isinstance(record, dict) and record.get("status") == "running":
        record["status"] = run_status(record, folder)
    return record


class Stopwatch:
    """Wall time since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
