"""Reading the checkpoints a predictor is built from, and writing standalone ones.

Read (`read_checkpoint`), never running pickled code:

- a `lssat train` run folder (its ``checkpoints/best.safetensors``, else ``last``), or one of its
  ``.safetensors`` / ``.ckpt`` files: weights plus the run metadata (config, recipe, task, norm);
- a file written by `save_checkpoint`: ``NAME.pt`` (a weights-only dict {"lssat_checkpoint": 1,
  "spec": {...}, "state_dict": {...}}) or ``NAME.safetensors`` with the spec in ``NAME.json``;
  a folder holding ``model.pt`` or ``model.safetensors`` of that kind;
- a Hugging Face layout folder (``config.json`` + ``model.safetensors``, `LSSATModel.save_pretrained`),
  or such a repository on the hub as ``hf-hub:org/repo`` (or ``hf-hub:org/repo@revision``), found
  in huggingface_hub's cache, downloaded into it only when the hub may be reached (not with
  ``HF_HUB_OFFLINE=1``; `resolve_hub`).

The result is a `ModelSpec` (what to build and how to prepare its inputs) and a state dict.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from lssat.errors import DataError

CHECKPOINT_VERSION = 1


@dataclass
class ModelSpec:
    """Everything needed to rebuild a trained model and prepare its inputs (JSON-ready)."""

    backbone: str
    num_outputs: int
    task_kind: str
    names: list[str]
    img_size: int = 224
    recipe: dict[str, Any] | str = "ssat"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    head_dropout: float = 0.0
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None
    threshold: float = 0.5
    margin: float = 1.3  # face crop: margin x the aligned face square (as `lssat preprocess`)
    crop_size: int = 256  # face crop side before resizing to img_size (as `lssat preprocess`)
    eval_crop_fraction: float = 1.0
    detector: str = "dlib"
    clip: dict[str, Any] = field(default_factory=dict)  # a clip model's data.clip (frames, stride, eval_clips)
    # what it was trained on (lssat.infer.provenance): dataset, synthetic, run_id, lssat_version
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it was read from (not saved)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("source")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> ModelSpec:
        """Build from saved data; unknown keys are ignored (newer writers), missing required ones
        are a DataError naming the checkpoint."""
        known = {f.name for f in fields(cls)} - {"source"}
        required = {"backbone", "num_outputs", "task_kind", "names"}
        missing = sorted(required - set(data))
        if missing:
            raise DataError(f"{source}: checkpoint metadata lacks {', '.join(missing)}")
        spec = cls(**{k: v for k, v in data.items() if k in known}, source=source)
        spec.names = [str(n) for n in spec.names]
        if not isinstance(spec.provenance, dict):
            spec.provenance = {}
        return spec


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, spec: ModelSpec) -> Path:
    """Write a weights-only checkpoint `lssat.load` reads: `.safetensors` (+ `.json` spec beside it)
    or any other name as one torch file of plain dicts and tensors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from lssat.fileio import dumps_json
        from lssat.models.weights import save_safetensors

        save_safetensors(state, path)
        path.with_suffix(".json").write_text(dumps_json(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    else:
        torch.save({"lssat_checkpoint": CHECKPOINT_VERSION, "spec": spec.to_dict(), "state_dict": state}, path)
    return path


HUB_PREFIX = "hf-hub:"
HUB_FILES = ("config.json", "model.safetensors")


def resolve_hub(model_id: str) -> Path:
    """The local folder of ``hf-hub:org/repo[@revision]``: huggingface_hub's cached snapshot of the
    repository's config.json and model.safetensors (`snapshot_download`; with ``HF_HUB_OFFLINE=1``
    the cache alone, `local_files_only`). A DataError in one line when it cannot be had."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    repo = model_id[len(HUB_PREFIX):] if model_id.startswith(HUB_PREFIX) else model_id
    repo_id, _, revision = repo.partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        folder = snapshot_download(repo_id, revision=revision or None, allow_patterns=list(HUB_FILES),
                                   local_files_only=offline)
    except LocalEntryNotFoundError:
        how = ("HF_HUB_OFFLINE=1 forbids downloading it" if offline
               else "and the hub could not be reached")
        raise DataError(f"{model_id}: not in the Hugging Face cache ({_hub_cache()}), {how}") from None
    except (HFValidationError, ValueError) as err:
        raise DataError(f"{model_id}: not a hub repository id ({str(err).splitlines()[0][:160]})") from None
    except (HfHubHTTPError, OSError) as err:
        raise DataError(f"{model_id}: {type(err).__name__}: {str(err).strip().splitlines()[0][:160]}") from None
    missing = [name for name in HUB_FILES if not (Path(folder) / name).is_file()]
    if missing:
        raise DataError(f"{model_id}: the repository lacks {', '.join(missing)} (expected an lssat "
                        f"save_pretrained folder)")
    return Path(folder)


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def read_checkpoint(checkpoint: str | os.PathLike) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """The spec and weights of a checkpoint file, run folder or ``hf-hub:`` id (DataError naming
    it otherwise)."""
    if isinstance(checkpoint, str) and checkpoint.startswith(HUB_PREFIX):
        return _read_pretrained(resolve_hub(checkpoint))
    path = Path(checkpoint)
    if path.is_dir():
        return _read_run_folder(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        return _read_safetensors(path) if path.with_suffix(".json").is_file() and _is_spec_json(path) \
            else _read_engine(path)
    if path.suffix == ".ckpt":
        return _read_engine(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and unpickler errors all mean "not ours"
        from lssat.models.weights import unreadable

        raise DataError(f"{path}: not a weights-only lssat checkpoint: {unreadable(err)}") from None
    if not isinstance(data, dict) or "spec" not in data or "state_dict" not in data:
        raise DataError(f"{path}: not an lssat checkpoint (expected the keys 'spec' and 'state_dict')")
    if not isinstance(data["spec"], dict) or not isinstance(data["state_dict"], dict):
        raise DataError(f"{path}: not an lssat checkpoint ('spec' and 'state_dict' must be mappings)")
    return ModelSpec.from_dict(data["spec"], str(path)), _finite(data["state_dict"], path)


def _finite(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """`state`, or a DataError naming the file and its first tensor holding a nan or an infinity."""
    from lssat.models.weights import require_finite

    require_finite(state, path, DataError)
    return state


def _read_safetensors(path: Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    meta = path.with_suffix(".json")
    if not meta.is_file():
        raise DataError(f"{path}: no {meta.name} beside it with the model's description")
    return _read_spec_and_weights(meta, path, str(path), f"{path}: unreadable checkpoint")


def _read_spec_and_weights(config: Path, weights: Path, where: str,
                           failure: str) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """A model description (JSON) and its safetensors weights; `failure` starts the one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise DataError(f"{config}: expected a JSON object describing the model")
        spec = ModelSpec.from_dict(data, where)
        state = load_file(str(weights))
    except DataError:
        raise
    except (ValueError, OSError, SafetensorError) as err:
        raise DataError(f"{failure} ({str(err).splitlines()[0][:160]})") from None
    return spec, _finite(state, weights)


def _is_spec_json(path: Path) -> bool:
    try:
        return "backbone" in json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _read_run_folder(folder: Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """A `lssat train` run folder (its best checkpoint, else its last), a folder holding one
    `save_checkpoint` file named model.pt / model.safetensors, or a Hugging Face layout folder
    (config.json + model.safetensors, `LSSATModel.save_pretrained` with its task)."""
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return _read_pretrained(folder)
    for path in (folder / "model.safetensors", folder / "model.pt"):
        if path.is_file():
            return read_checkpoint(path)
    return _read_engine(folder)


def _read_pretrained(folder: Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """A folder `LSSATModel.save_pretrained` wrote: config.json (architecture and task) and model.safetensors."""
    config = folder / "config.json"
    return _read_spec_and_weights(config, folder / "model.safetensors", str(config),
                                  f"{folder}: unreadable model folder")


def _read_engine(path: Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """A checkpoint written by `lssat train` (lssat.engine.checkpoints): weights + run metadata."""
    from lssat.engine.checkpoints import load_weights
    from lssat.errors import LssatError

    try:
        state, meta = load_weights(path)
    except LssatError as err:
        raise DataError(str(err)) from None
    if not all(k in meta for k in ("config", "recipe", "task")):
        raise DataError(f"{path}: no lssat run metadata in this checkpoint (was it written by lssat train?)")
    return spec_from_run_metadata(meta, str(path)), state


def spec_from_run_metadata(meta: dict[str, Any], source: str = "") -> ModelSpec:
    """A ModelSpec from the metadata `lssat train` stores with its weights (config, recipe, task, norm,
    header: the provenance)."""
    from lssat.infer.provenance import provenance_from_run_metadata

    cfg = meta["config"]
    model, task, data = cfg.get("model", {}), meta["task"], cfg.get("data") or {}
    norm = meta.get("norm") or {}
    try:
        return ModelSpec(
            backbone=model["backbone"], num_outputs=int(task["num_outputs"]), task_kind=task["kind"],
            names=[str(n) for n in task["names"]], img_size=int(model.get("img_size") or data.get("image_size")),
            recipe=dict(meta["recipe"]), backbone_kwargs=dict(model.get("kwargs") or {}),
            head_dropout=float(model.get("head_dropout", 0.0)), norm_mean=norm.get("mean"), norm_std=norm.get("std"),
            threshold=float((cfg.get("task") or {}).get("threshold", 0.5)),
            eval_crop_fraction=float((data.get("augment") or {}).get("eval_crop_fraction", 1.0)),
            clip=dict(data.get("clip") or {}),
            provenance=provenance_from_run_metadata(meta), source=source)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{source}: run metadata lacks or mangles {err}") from None
