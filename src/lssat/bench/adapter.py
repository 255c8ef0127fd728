"""The benchmark's one point of contact with the training engine (`lssat.engine`).

Everything the benchmark needs to know about the engine's config keys, its entry point and the
layout of a run folder lives here, so a change in the engine is a change in this file only:

- `axis_fragment` / `recipe_fragment`: where a cell's seed, training fraction and recipe go in the
  engine's config tree;
- `train_cell(config, run_dir, resume)`: train one config into one run folder and return its run
  record (a dict, see `lssat.bench.store` for the fields the benchmark reads);
- `read_record`, `has_checkpoint`, `metrics_csv`: what a run folder holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lssat.confkit import set_dotted
from lssat.errors import MissingDependencyError

RECORD_FILE = "run_record.json"
CELL_CONFIG_FILE = "cell_config.yaml"
SEED_KEYS = ("trainer.seed",)  # the training seed; data generation keeps its own seed
FRACTION_KEY = "data.train_fraction"


def axis_fragment(seed: int, fraction: float) -> dict[str, Any]:
    """The config fragment that sets a cell's seed and training fraction."""
    out: dict[str, Any] = {}
    for dotted in SEED_KEYS:
        set_dotted(out, dotted, seed)
    if fraction != 1.0:
        set_dotted(out, FRACTION_KEY, fraction)
    return out


def recipe_fragment(name: str) -> dict[str, Any]:
    """The config fragment that selects a recipe preset by name."""
    return {"recipe": {"name": name}}


def check_config(config: dict[str, Any]) -> None:
    """Validate a cell's training config as the engine will (a ConfigError naming the key), training nothing."""
    from lssat.config import config_from_dict

    config_from_dict(config)


def engine_folders(run_dir: Path) -> list[Path]:
    """The engine's run folders inside a cell folder (``<cell>/<run_id>/``), newest last."""
    found = [p.parent for p in Path(run_dir).glob(f"*/{RECORD_FILE}")]
    return sorted(found, key=lambda p: (p / RECORD_FILE).stat().st_mtime)


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run record of a cell folder (the engine writes it into ``<cell>/<run_id>/``), or None
    when there is none or it cannot be parsed (the engine writes records atomically, so an unreadable
    one is treated as absent and the cell runs again). A record that says "running" in a folder no
    process holds (`lssat.fileio.lock_holder`) comes back with status "interrupted"."""
    from lssat.fileio import lock_holder

    candidates = [Path(run_dir)] + engine_folders(Path(run_dir))[::-1]
    for folder in candidates:
        try:
            data = json.loads((folder / RECORD_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            if data.get("status") == "running" and lock_holder(folder) is None:
                data["status"] = "interrupted"
            return data
    return None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether an interrupted run left a checkpoint the engine can resume from."""
    return any(Path(run_dir).glob("*/checkpoints/last.ckpt")) or any(Path(run_dir).glob("last.ckpt"))


def discard_checkpoints(run_dir: Path) -> None:
    """Move a cell's checkpoints aside (kept, renamed), so its next attempt starts afresh."""
    for ckpt_dir in Path(run_dir).glob("*/checkpoints"):
        n = len(list(ckpt_dir.parent.glob("checkpoints.discarded-*")))
        ckpt_dir.rename(ckpt_dir.with_name(f"checkpoints.discarded-{n + 1}"))


def metrics_csv(run_dir: Path) -> Path | None:
    """The engine's per-epoch CSV log of a cell (Lightning's CSVLogger: logs/version_N/metrics.csv)."""
    found = sorted(Path(run_dir).glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def engine_entry():
    """The engine's `train(RunConfig, resume)`, or a one-line error when this install has none."""
    try:
        from lssat.engine.run import train  # noqa: PLC0415 (heavy: torch, lightning)
    except ImportError as err:
        raise MissingDependencyError(f"the training engine (lssat.engine.run) cannot be imported: {err}") from None
    return train


def synthetic_folder(data: dict[str, Any], cache: Path) -> Path:
    """The folder under `cache` that `materialize_synthetic` renders a ``data.synthetic`` setting
    into: one folder per distinct setting (task, sizes, seed, options, image size)."""
    import hashlib

    syn = dict(data.get("synthetic") or {})
    size = syn.get("size") or data.get("image_size", 224)
    key = json.dumps({**syn, "size": size}, sort_keys=True, default=str)
    return Path(cache) / f"{syn.get('task', 'expression')}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def materialize_synthetic(data: dict[str, Any], cache: Path) -> dict[str, Any]:
    """A data config whose ``synthetic`` source is replaced by an index of the same images on disk.

    The images are rendered once per distinct synthetic setting into ``cache/<hash>/`` (written
    into a temporary folder, then renamed, so concurrent jobs or an interruption never leave a
    half dataset); the files hold exactly the rendered images (`write_synthetic`).
    """
    import os
    import shutil
    import tempfile

    from lssat.fileio import apply_umask

    syn = dict(data.get("synthetic") or {})
    size = syn.get("size") or data.get("image_size", 224)
    folder = synthetic_folder(data, cache)
    index = folder / "index.jsonl"
    if not index.is_file():
        from lssat.data.synthetic.writer import write_synthetic

        Path(cache).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
        apply_umask(tmp, directory=True)  # mkdtemp makes it 0700: colleagues could not read the data
        try:
            sizes = {s: int(syn.get(s, d)) for s, d in (("train", 1000), ("val", 200), ("test", 200))}
            write_synthetic(tmp, syn.get("task", "expression"), sizes, size=int(size), seed=int(syn.get("seed", 0)),
                            index_path=tmp / "index.jsonl", progress=False, **dict(syn.get("options") or {}))
            try:
                os.rename(tmp, folder)
            except OSError:  # another job made it first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    out = dict(data)
    out.update(synthetic=None, index=str(index.resolve()), data_root=None)
    return out


def train_cell(config: dict[str, Any], run_dir: Path, resume: bool = False, *,
               data_cache: Path | None = None, threads: int | None = None) -> dict[str, Any]:
    """Train one cell's config with the engine into ``run_dir/<run_id>/``; returns its run record.

    data_cache: render ``data.synthetic`` datasets once into this folder and train from the files
    (see `materialize_synthetic`). threads: torch intra-op threads for this run.
    The engine writes the record (status done, or failed before re-raising) atomically; an
    exception escaping here means the run did not finish and the runner records the failure.
    On DDP ranks other than 0 the record is not written and an empty dict comes back.
    """
    import torch

    from lssat.config import config_from_dict

    train = engine_entry()
    tree = dict(config)
    tree["output_dir"] = str(run_dir)
    if data_cache is not None and isinstance(tree.get("data"), dict) and tree["data"].get("synthetic") \
            and not (tree["data"].get("sbi") or {}).get("enabled"):  # self-blending needs the faces' geometry
        tree["data"] = materialize_synthetic(tree["data"], Path(data_cache))
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        result = train(config_from_dict(tree), resume=bool(resume))
    finally:
        torch.set_num_threads(previous)
    return result.record if result.is_global_zero else {}


def eval_set_hash(definition: dict[str, Any]) -> str:
    """A short hash of an eval set's definition (a changed definition is evaluated again)."""
    import hashlib

    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def missing_eval_sets(record: dict[str, Any] | None, eval_sets: dict[str, dict[str, Any]]) -> list[str]:
    """The eval sets a done record has no result for (or a result of another definition, or a failure)."""
    done = (record or {}).get("eval_sets") or {}
    return [name for name, definition in eval_sets.items()
            if not isinstance(done.get(name), dict) or done[name].get("definition") != eval_set_hash(definition)
            or done[name].get("metrics") is None]


def evaluate_cell(run_dir: Path, eval_sets: dict[str, dict[str, Any]], *, data_cache: Path | str | None = None,
                  threads: int | None = None) -> dict[str, Any] | None:
    """Evaluate a trained cell on its extra test sets (`lssat.bench.protocols`); returns its record.

    The checkpoint its test used (``record.checkpoint.file``) goes through the engine's
    `evaluate` on each set's test split; the per-sample scores are saved as
    ``predictions/eval-<name>.npz`` beside the test's, and ``record.eval_sets.<name>`` holds
    {definition (hash), metrics, predictions, data, tested, error}. Sets already evaluated with the
    same definition are kept; a set that cannot be evaluated is stored with its one-line error (and
    tried again on the next run). The record is rewritten atomically. None when the cell has no done
    record.
    """
    import torch

    from lssat.engine import record as rec
    from lssat.errors import LssatError

    folders = [f for f in engine_folders(Path(run_dir)) if _status(f) == "done"]
    if not folders:
        return None
    folder = folders[-1]
    record = json.loads((folder / RECORD_FILE).read_text())
    missing = missing_eval_sets(record, eval_sets)
    if not missing:
        return record
    from lssat.engine.run import evaluate

    results = dict(record.get("eval_sets") or {})
    config = record.get("config") or {}
    checkpoint = (record.get("checkpoint") or {}).get("file")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        for name in missing:
            definition = eval_sets[name]
            entry: dict[str, Any] = {"definition": eval_set_hash(definition), "metrics": None, "predictions": None,
                                     "data": None, "tested": (record.get("checkpoint") or {}).get("tested"),
                                     "error": None}
            try:
                index, synthetic = definition.get("index"), definition.get("synthetic")
                if synthetic is not None and data_cache is not None:
                    data = {**dict(config.get("data") or {}), "synthetic": synthetic, "index": None}
                    index, synthetic = materialize_synthetic(data, Path(data_cache))["index"], None
                result = evaluate(checkpoint, index, "test", synthetic=synthetic, progress=False,
                                  accelerator=str((config.get("trainer") or {}).get("accelerator", "auto")),
                                  keep_predictions=True)
                arrays = result.pop("predictions", None)
                entry.update(metrics=result["metrics"], data=result["data"])
                if arrays:
                    entry["predictions"] = rec.write_predictions(folder, f"eval-{name}", arrays)
            except (LssatError, OSError, ValueError, RuntimeError) as err:
                entry["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            results[name] = entry
    finally:
        torch.set_num_threads(previous)
    record["eval_sets"] = results
    rec.write_record(folder, record)
    return record


def _status(folder: Path) -> str | None:
    try:
        return json.loads((folder / RECORD_FILE).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
