"""What a trained model knows: the data it was trained on, and a warning when it is used elsewhere.

A model's provenance is derived from the metadata `lssat train` stores with its weights (config,
task, index header; `lssat_version` in runs since it was added), so checkpoints written before
this module existed have one too. Files written by `save_checkpoint` carry it in their spec.

A model trained on the built-in synthetic faces (``data.synthetic``, or an index whose header says
``dataset: synthetic``) has only seen cartoons: its scores on anything else mean nothing, and
`lssat predict`, `lssat show` and `Predictor.predict` warn once when it is used on other images.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SYNTHETIC_DATASET = "synthetic"


class SyntheticModelWarning(UserWarning):
    """A model trained on the built-in synthetic faces is used on other images."""


def provenance_from_run_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The training-data facts of a `lssat train` checkpoint's metadata (config, header, run id)."""
    cfg = meta.get("config") or {}
    data = cfg.get("data") or {}
    header = meta.get("header") or {}
    synthetic = bool(data.get("synthetic")) or header.get("dataset") == SYNTHETIC_DATASET
    dataset = header.get("dataset") or (SYNTHETIC_DATASET if data.get("synthetic") else None)
    out: dict[str, Any] = {"dataset": dataset, "synthetic": synthetic,
                           "run_id": meta.get("run_id") or cfg.get("run_id"),
                           "lssat_version": meta.get("lssat_version")}
    root = _index_data_root(data, header) if synthetic and data.get("index") else None
    if root is not None:
        out["data_root"] = root
    return out


def _index_data_root(data: dict[str, Any], header: dict[str, Any]) -> str | None:
    """Where the images of a synthetic index are (as `read_index` resolves them), absolute."""
    try:
        if data.get("data_root"):
            root = Path(data["data_root"])
        else:
            root = Path(header.get("root") or ".")
            if not root.is_absolute():
                root = Path(data["index"]).parent / root
        return str(root.resolve())
    except (TypeError, ValueError, OSError):
        return None


def describe(spec: Any) -> dict[str, Any]:
    """The provenance of a `ModelSpec`: training data, task, label names, input size,
    preprocessing, lssat version and run id (None where the checkpoint does not say)."""
    facts = dict(getattr(spec, "provenance", None) or {})
    return {
        "dataset": facts.get("dataset"),
        "synthetic": bool(facts.get("synthetic", False)),
        "task": spec.task_kind,
        "names": list(spec.names),
        "image_size": int(spec.img_size),
        "preprocessing": {"detector": spec.detector, "margin": spec.margin, "crop_size": spec.crop_size,
                          "eval_crop_fraction": spec.eval_crop_fraction},
        "lssat_version": facts.get("lssat_version"),
        "run_id": facts.get("run_id"),
    }


def provenance_line(info: dict[str, Any]) -> str:
    """One short line saying what a model was trained on, for tables and pictures."""
    if info.get("synthetic"):
        data = "the built-in synthetic faces (cartoons)"
    else:
        data = repr(info["dataset"]) if info.get("dataset") else "unknown data"
    names = ", ".join(info.get("names") or [])
    parts = [f"trained on {data}", f"{info.get('task')} ({names})", f"{info.get('image_size')} px"]
    if info.get("run_id"):
        parts.append(f"run {info['run_id']}")
    parts.append(f"lssat {info['lssat_version']}" if info.get("lssat_version") else "lssat version unknown")
    return "model: " + ", ".join(parts)


def is_same_synthetic_data(spec: Any, inputs: Iterable[str | os.PathLike]) -> bool:
    """Whether every input file lies inside the synthetic data the model was trained on (an index of
    synthetic faces written to disk). Always False for in-memory images and on-the-fly synthetic faces."""
    facts = getattr(spec, "provenance", None) or {}
    root = facts.get("data_root")
    if not facts.get("synthetic") or not root:
        return False
    paths = list(inputs)
    if not paths:
        return False
    try:
        base = Path(root).resolve()
        return all(Path(p).resolve().is_relative_to(base) for p in paths)
    except (OSError, ValueError):
        return False


def synthetic_warning(spec: Any, inputs: Iterable[Any] | None, name: str) -> str | None:
    """The one-line warning for a synthetic-trained model used on `inputs` (file paths; None for
    in-memory images), or None when there is nothing to warn about."""
    if not (getattr(spec, "provenance", None) or {}).get("synthetic"):
        return None
    if inputs is not None and is_same_synthetic_data(spec, inputs):
        return None
    return (f"{name} was trained on the built-in synthetic faces (cartoons); "
            f"its scores on real images mean nothing")
