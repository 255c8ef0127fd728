"""The results store of a benchmark: every cell's run record in one JSON Lines file.

``BENCH_DIR/results.jsonl`` holds one entry per cell, keyed by the cell id (the hash of the cell's
resolved config)::

    {"cell_id", "label", "axes": {backbone, task, task_kind, recipe, seed, fraction},
     "status": "done" | "failed", "run_dir": "runs/<label>-<id>", "attempts": int,
     "updated": ISO time, "env": {python, platform, host, packages...}, "record": run record}

A run record (written by the engine into the run folder) is read for these fields:
``metrics.{val,test}`` (flat dicts of floats), ``cost.{parameters, flops_per_image,
train_images_per_second, peak_memory, wall_time}``, ``status`` and ``error``.

Every line is strict JSON: a nan or infinite metric is written as null.

Safety: every update rewrites the whole file into a temporary file, fsyncs it and renames it over
the old one (atomic on POSIX), under an exclusive lock; so an interrupted writer leaves either the
old or the new file, never a half line, and a cell can never appear twice. Entries are small
(metrics, not weights), so rewriting is cheap even for thousands of cells.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from lssat.errors import DataError
from lssat.fileio import atomic_write_text, dumps_json

STORE_FILE = "results.jsonl"
STATUSES = ("done", "failed")
_PACKAGES = ("lssat", "torch", "timm", "lightning", "torchmetrics", "numpy", "scikit-image")


def environment() -> dict[str, Any]:
    """Where and with what a cell ran: interpreter, platform, host, package versions, devices."""
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "host": socket.gethostname(), "cpu_count": os.cpu_count(), "packages": packages}
    torch = sys.modules.get("torch")  # only when already loaded: the store must stay light
    if torch is not None and torch.cuda.is_available():
        env["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


class ResultsStore:
    """All cell entries of one benchmark folder (see the module docstring for the format)."""

    def __init__(self, bench_dir: Path | str) -> None:
        self.bench_dir = Path(bench_dir)
        self.path = self.bench_dir / STORE_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.bench_dir.mkdir(parents=True, exist_ok=True)
        with open(self.bench_dir / ".results.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def load(self) -> dict[str, dict[str, Any]]:
        """Entries by cell id, in file order. A malformed line is a DataError naming it."""
        if not self.path.exists():
            return {}
        entries: dict[str, dict[str, Any]] = {}
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as err:
                raise DataError(f"{self.path}:{number}: not a JSON object ({err})") from None
            if not isinstance(entry, dict) or "cell_id" not in entry or entry.get("status") not in STATUSES:
                raise DataError(f"{self.path}:{number}: an entry needs a cell_id and a status "
                                f"({' or '.join(STATUSES)})")
            if entry["cell_id"] in entries:
                raise DataError(f"{self.path}:{number}: cell {entry['cell_id']} appears twice")
            entries[entry["cell_id"]] = entry
        return entries

    def entries(self) -> list[dict[str, Any]]:
        """All entries as a list."""
        return list(self.load().values())

    def done_ids(self) -> set[str]:
        """Cell ids whose record says done."""
        return {cid for cid, e in self.load().items() if e["status"] == "done"}

    def put(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Insert or replace one cell's entry (atomically); returns the stored entry."""
        entry = dict(entry)
        if entry.get("status") not in STATUSES or not entry.get("cell_id"):
            raise DataError(f"a store entry needs a cell_id and a status ({' or '.join(STATUSES)}), "
                            f"got {entry.get('cell_id')!r} / {entry.get('status')!r}")
        entry.setdefault("updated", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        with self._locked():
            entries = self.load()
            previous = entries.get(entry["cell_id"])
            entry["attempts"] = (previous or {}).get("attempts", 0) + 1 if "attempts" not in entry else entry["attempts"]
            entries[entry["cell_id"]] = entry
            text = "".join(dumps_json(e, sort_keys=True, default=_json_default) + "\n" for e in entries.values())
            atomic_write_text(self.path, text)
        return entry


def make_entry(cell: Any, record: Mapping[str, Any] | None, run_dir: Path, bench_dir: Path,
               error: str | None = None) -> dict[str, Any]:
    """A store entry for a cell from its run record (None, or `error` set, for a failed run)."""
    record = dict(record or {})
    status = "done" if record.get("status") == "done" and error is None else "failed"
    if status == "failed":
        record.setdefault("status", "failed")
        if error and not record.get("error"):
            record["error"] = error
    try:
        rel = str(Path(run_dir).resolve().relative_to(Path(bench_dir).resolve()))
    except ValueError:
        rel = str(run_dir)
    return {"cell_id": cell.cell_id, "label": cell.label, "axes": cell.axes(), "status": status,
            "run_dir": rel, "env": environment(), "record": record,
            "error": record.get("error") if status == "failed" else None}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)
