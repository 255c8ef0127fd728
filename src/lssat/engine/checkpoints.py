"""Checkpoints of a run: `last` and `best` (on the validation headline metric, never the test split).

A run folder's ``checkpoints/`` holds, for NAME in (last, best):

- ``NAME.ckpt``: Lightning's full checkpoint (weights, optimizer, scheduler, loop counters,
  callback states, every random state per rank (`lssat.engine.module.rng_states`), the data
  module's place in the epoch's draws): what ``--resume`` continues from, to the same weights bit
  for bit as an uninterrupted run on a CPU with deterministic settings. It holds only tensors and
  plain Python data, so Lightning loads it with ``torch.load(weights_only=True)``. It is written
  beside (``.NAME.ckpt.partial``) and renamed over the old one, so a kill while saving leaves the
  previous checkpoint whole.
- ``NAME.safetensors``: the model's weights alone, with the run's metadata (config, task, recipe,
  epoch, step, validation metrics) as JSON in the file's header: what `lssat eval` and inference
  load. Nothing in it can run code.
- ``NAME.json``: that metadata, readable.

The JSON (file and header) is strict: nan and infinities are null. Files get the user's umask.

`last` is written at the end of every training epoch, `best` when the validation headline improves
(`Task.is_better`; nan never wins; epochs of the pretrain stage are not candidates). With
validation by steps (`trainer.val_check_interval`) both are written after each validation instead,
and `last` once more when training ends between validations. Before writing,
every weight is checked to be finite: a diverged model raises `TrainingDiverged` and overwrites
nothing, so the last good checkpoint stays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Checkpoint

from lssat.engine.module import LSSATModule, TrainingDiverged
from lssat.errors import InputError
from lssat.fileio import atomic_write_text, dumps_json

NAMES = ("last", "best")


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write the model's weights (safetensors) with JSON metadata in the header (strict JSON: nan
    and infinities as null), atomically, with the user's umask."""
    from lssat.models.weights import save_safetensors

    save_safetensors(model.state_dict(), path, {"lssat": dumps_json(metadata)})


def resolve_checkpoint(path: str | Path) -> Path:
    """A weights file from a path: a file, or a run folder (its best, else its last checkpoint)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        for name in ("best.safetensors", "last.safetensors", "best.ckpt", "last.ckpt"):
            if (folder / name).is_file():
                return folder / name
        raise InputError(f"{path}: no checkpoint in this folder (expected checkpoints/best.safetensors)")
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    return path


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model state dict and run metadata of a checkpoint (.safetensors, .ckpt, or a run folder).

    Lightning checkpoints are read with ``torch.load(weights_only=True)``. Weights that are not
    all finite (nan or infinite) are refused: they would predict nan.
    """
    path = resolve_checkpoint(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            state = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise InputError(f"{path}: not a readable safetensors file ({err})") from None
        try:
            metadata = json.loads(header.get("lssat", "{}"))
        except json.JSONDecodeError:
            raise InputError(f"{path}: its lssat metadata is not valid JSON") from None
        if not isinstance(metadata, dict):
            raise InputError(f"{path}: its lssat metadata is not a JSON object")
    else:
        ckpt = read_lightning_checkpoint(path)
        state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        metadata = dict(ckpt.get("lssat") or {})
        metadata.setdefault("epoch", ckpt.get("epoch"))
        metadata.setdefault("step", ckpt.get("global_step"))
    check_finite(state, path)
    return state, metadata


def read_lightning_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint read as Lightning reads it (``torch.load(weights_only=True)``), every
    failure an InputError naming the file: truncated, not a checkpoint, or holding Python objects
    (refused: unpickling them could run code). `mmap`: map the tensors instead of reading them."""
    from lssat.models.weights import unreadable

    path = Path(path)
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not mmap or "mmap" not in str(err):
                raise
            ckpt = torch.load(path, map_location="cpu", weights_only=True)  # an old, non-zip file
    except OSError:
        raise  # permission denied and the like: the command line names the file and the problem
    except Exception as err:  # noqa: BLE001 - pickle, zip and unpickler errors all mean "not usable"
        raise InputError(f"{path}: cannot load checkpoint: {unreadable(err)}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise InputError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def check_finite(state: dict[str, Any], path: str | Path) -> None:
    """An InputError naming the file and the first tensor of `state` that holds a nan or an infinity."""
    from lssat.models.weights import require_finite

    require_finite(state, path, InputError)


class RunCheckpoints(Checkpoint):
    """Writes `last` every training epoch (or after every validation with `every_validation`) and
    `best` when the validation headline improves."""

    def __init__(self, folder: str | Path, every_validation: bool = False) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.every_validation = every_validation
        self._saved_step: int | None = None
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None

    def path(self, name: str, suffix: str = ".ckpt") -> Path:
        """Where checkpoint `name` ("last" or "best") is written."""
        return self.folder / f"{name}{suffix}"

    def on_train_epoch_end(self, trainer: Any, module: LSSATModule) -> None:
        if not self.every_validation:
            self._checkpoint(trainer, module)

    def on_validation_end(self, trainer: Any, module: LSSATModule) -> None:
        if self.every_validation and trainer.state.fn == "fit":
            self._checkpoint(trainer, module)

    def on_train_end(self, trainer: Any, module: LSSATModule) -> None:
        if self.every_validation and self._saved_step != trainer.global_step and trainer.global_step:
            self._checkpoint(trainer, module, validated=False)

    def _checkpoint(self, trainer: Any, module: LSSATModule, validated: bool = True) -> None:
        if trainer.sanity_checking or bool(trainer.fast_dev_run):
            return
        bad = [n for n, p in module.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise TrainingDiverged(f"training diverged: weight {bad[0]} is not finite at epoch "
                                   f"{trainer.current_epoch}, step {trainer.global_step}; the last good checkpoint "
                                   f"is {self.path('last')}")
        epoch = trainer.current_epoch
        if not validated:
            val = None
        elif self.every_validation:  # called right after a validation
            val = module.results.get("val")
        else:  # an epoch's end: its validation, if this epoch had one
            val = module.results.get("val") if module.result_epoch.get("val") == epoch else None
        if val is not None and module.stage != "pretrain":
            value = val.get(module.task.headline)
            if module.task.is_better(value, self.best_value):
                self.best_value, self.best_epoch, self.best_step = float(value), epoch, trainer.global_step
                self._save(trainer, module, "best", val)
        self._save(trainer, module, "last", val)
        self._saved_step = trainer.global_step

    def _save(self, trainer: Any, module: LSSATModule, name: str, val: dict[str, Any] | None) -> None:
        # written beside, then renamed over the old one: a kill while saving leaves the previous
        # checkpoint whole, so --resume always finds a readable one
        path = self.path(name)
        tmp = path.with_name(f".{path.name}.partial")
        trainer.save_checkpoint(str(tmp), weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)
            info = {"name": name, "epoch": trainer.current_epoch, "step": trainer.global_step,
                    "headline": module.task.headline, "value": None if val is None else val.get(module.task.headline),
                    "val": val, "best_epoch": self.best_epoch, "best_value": self.best_value}
            save_weights(module.model, self.path(name, ".safetensors"), {**module.metadata, **info})
            atomic_write_text(self.path(name, ".json"), dumps_json(info, indent=2))
        trainer.strategy.barrier("lssat-checkpoint")

    def state_dict(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_value = state_dict.get("best_value")
        self.best_epoch = state_dict.get("best_epoch")
        self.best_step = state_dict.get("best_step")
