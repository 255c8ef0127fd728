"""A benchmark folder's results as one table: one row per done cell, metrics flattened.

Columns: the axes (backbone, task, task_kind, recipe, seed, fraction), cell_id, label, run_dir,
``predictions`` (the per-sample test scores' file relative to the benchmark folder, or None),
``chance`` (the best constant prediction's headline value when the record tells it, else nan),
``val/<metric>`` and ``test/<metric>`` (every numeric scalar of the run record's metrics),
``eval/<set>/<metric>`` (each extra test set's, `lssat.bench.protocols`) and ``cost/<key>``. Failed cells, cells of the spec with no entry, and entries of cells no longer in
the spec are counted (never dropped silently) for the report's "limits" section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lssat.bench.store import ResultsStore
from lssat.errors import DataError

SPEC_FILE = "spec.yaml"
# headline metrics per task kind (all higher is better); the first is the one ranks and tests use
HEADLINES = {"deepfake": ["video_auc", "acc"], "attributes": ["mean_acc"], "expression": ["acc", "macro_f1"]}
FALLBACK = {"video_auc": "frame_auc"}  # used when a task's headline is missing in every cell
COST_ALIASES = {"peak_memory_bytes": "peak_memory", "wall_time_s": "wall_time"}
AXES = ["backbone", "task", "task_kind", "recipe", "seed", "fraction"]


@dataclass
class Results:
    """The done cells of a benchmark and what is missing around them."""

    bench_dir: Path
    frame: pd.DataFrame
    spec: dict[str, Any] | None
    failed: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale: int = 0
    expected: int = 0
    primary: dict[str, str] = field(default_factory=dict)  # task label -> metric name
    headlines: dict[str, list[str]] = field(default_factory=dict)  # task label -> metric names
    notes: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)  # where the latest done cell ran

    @property
    def tasks(self) -> list[str]:
        """Task labels in spec order (those with at least one done cell)."""
        return _ordered(self.frame, "task", self.spec, "tasks")

    @property
    def backbones(self) -> list[str]:
        """Backbone labels in spec order."""
        return _ordered(self.frame, "backbone", self.spec, "backbones")

    @property
    def recipes(self) -> list[str]:
        """Recipe labels in spec order."""
        return _ordered(self.frame, "recipe", self.spec, "recipes")

    def task_kind(self, task: str) -> str:
        """The task kind of a task label."""
        return str(self.frame.loc[self.frame.task == task, "task_kind"].iloc[0])


def _ordered(frame: pd.DataFrame, column: str, spec: dict[str, Any] | None, key: str) -> list[str]:
    present = list(dict.fromkeys(frame[column].tolist())) if len(frame) else []
    order = spec.get(key) if spec else None
    if isinstance(order, dict):
        order = list(order)
    if not isinstance(order, list):
        return present
    return [x for x in order if x in present] + [x for x in present if x not in order]


def _numbers(prefix: str, values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        return {}
    return {f"{prefix}/{k}": float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def entry_row(entry: dict[str, Any]) -> dict[str, Any]:
    """One table row from a store entry."""
    record = entry.get("record") or {}
    metrics = record.get("metrics") or {}
    row: dict[str, Any] = {key: (entry.get("axes") or {}).get(key) for key in AXES}
    row.update(cell_id=entry["cell_id"], label=entry.get("label"), run_dir=entry.get("run_dir"))
    row.update(_numbers("val", metrics.get("val")))
    row.update(_numbers("test", metrics.get("test")))
    for name, result in (record.get("eval_sets") or {}).items():  # extra test sets (bench.protocols)
        if isinstance(result, dict):
            row.update(_numbers(f"eval/{name}", result.get("metrics")))
    cost = {COST_ALIASES.get(k, k): v for k, v in (record.get("cost") or {}).items()}
    row.update(_numbers("cost", cost))
    row["predictions"] = predictions_path(entry)
    row["chance"] = _chance(entry.get("axes") or {}, metrics.get("test"))
    row["synthetic"] = bool(((record.get("config") or {}).get("data") or {}).get("synthetic")) or \
        (record.get("data") or {}).get("dataset") == "synthetic"
    return row


def predictions_path(entry: dict[str, Any]) -> str | None:
    """The cell's per-sample test predictions, relative to the benchmark folder (None when the record
    names none): ``<run_dir>/<run_id>/<record.predictions.test>`` (the engine's run folder in the cell's)."""
    record = entry.get("record") or {}
    rel = (record.get("predictions") or {}).get("test")
    if not rel or not entry.get("run_dir"):
        return None
    return str(Path(str(entry["run_dir"])) / str(record.get("run_id") or "") / rel)


def _chance(axes: dict[str, Any], test: Any) -> float:
    """The best constant prediction's headline value when the record tells it without per-sample
    scores: 0.5 for a deepfake AUC, the majority class share for expression (from the confusion matrix)."""
    kind = axes.get("task_kind")
    if kind == "deepfake":
        return 0.5
    matrix = (test or {}).get("confusion_matrix") if isinstance(test, dict) else None
    if kind == "expression" and isinstance(matrix, list) and matrix:
        support = [sum(row) for row in matrix]
        return max(support) / sum(support) if sum(support) else math.nan
    return math.nan


def load_results(bench_dir: Path | str) -> Results:
    """Read a benchmark folder's store (and spec, when present) into a `Results`."""
    bench_dir = Path(bench_dir)
    store = ResultsStore(bench_dir)
    if not store.path.exists():
        raise DataError(f"{bench_dir}: no results store ({store.path.name}); run `lssat bench` first")
    entries = store.load()
    spec = None
    expected_ids: dict[str, str] | None = None
    if (bench_dir / SPEC_FILE).exists():
        from lssat.bench.spec import load_spec

        spec = yaml.safe_load((bench_dir / SPEC_FILE).read_text())
        try:
            expected_ids = {c.cell_id: c.label for c in load_spec(spec).cells()}
        except Exception as err:  # a spec that no longer resolves: report every entry
            expected_ids = None
            spec_note = f"the stored spec.yaml could not be resolved ({err}); all entries are reported"
        else:
            spec_note = None
    if expected_ids is None:
        in_spec = dict(entries)
    else:  # in the spec's cell order, not the order cells finished in: identical runs give identical reports
        in_spec = {cid: entries[cid] for cid in expected_ids if cid in entries}
    results = Results(bench_dir, pd.DataFrame(), spec)
    if expected_ids is None and spec is not None and spec_note:
        results.notes.append(spec_note)
    results.stale = len(entries) - len(in_spec)
    results.expected = len(expected_ids) if expected_ids is not None else len(entries)
    results.failed = [e for e in in_spec.values() if e["status"] != "done"]
    if expected_ids is not None:
        results.missing = [label for cid, label in expected_ids.items() if cid not in entries]
    rows = [entry_row(e) for e in in_spec.values() if e["status"] == "done"]
    done = [e for e in in_spec.values() if e["status"] == "done"]
    if done:
        results.env = dict(max(done, key=lambda e: str(e.get("updated", ""))).get("env") or {})
    frame = pd.DataFrame(rows)
    if not len(frame):
        frame = pd.DataFrame(columns=AXES + ["cell_id", "label", "run_dir", "predictions", "chance", "synthetic"])
    results.frame = frame
    for task in results.tasks:
        kind = results.task_kind(task)
        names = []
        for name in HEADLINES[kind]:
            column = frame.loc[frame.task == task, f"test/{name}"] if f"test/{name}" in frame else None
            if (column is None or column.isna().all()) and name in FALLBACK:
                results.notes.append(f"{task}: no test {name} in any cell; using {FALLBACK[name]} instead")
                name = FALLBACK[name]
            names.append(name)
        results.headlines[task] = names
        results.primary[task] = names[0]
    return results


def is_missing(value: Any) -> bool:
    """True for None and nan."""
    return value is None or (isinstance(value, float) and math.isnan(value))
