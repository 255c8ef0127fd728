"""Checkpoints of a run: `last` and `best` (on the validation headline metric, never the test split).

A run folder's ``checkpoints/`` holds, for NAME in (last, best):

- ``last.ckpt``: Lightning's full checkpoint (weights, optimizer, scheduler, loop counters,
  callback states, every random state per rank (`lssat.engine.module.rng_states`), the data
  module's place in the epoch's draws): what ``--resume`` continues from, to the same weights bit
  for bit as an uninterrupted run on a CPU with deterministic settings. It holds only tensors and
  plain Python data, so Lightning loads it with ``torch.load(weights_only=True)``. It is written
  beside (``.NAME.ckpt.partial``) and renamed over the old one, so a kill while saving leaves the
  previous checkpoint whole.
- ``best.ckpt``: Lightning's weights-only checkpoint (``save_weights_only``: weights, hyper-parameters,
  run metadata; no optimizer state), for ``LSSATModule.load_from_checkpoint`` and ``lssat eval``.
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

`RunCheckpoints` is a Lightning `ModelCheckpoint`: its ``every_n_train_steps`` or
``train_time_interval`` trigger (``trainer.checkpoint_every_n_train_steps`` /
``trainer.checkpoint_train_time_interval``) writes `last` between validations too, for pre-emption.
Choosing `best` stays lssat's (`Task.is_better` on the validation headline; nan never wins; no
pretrain-stage epoch is a candidate), which a monitored metric cannot express.

Slurm: under a Slurm job (Lightning's `SLURMEnvironment.detect`), the requeue signal (SIGUSR1, as
Lightning's `SLURMEnvironment.requeue_signal`; ask Slurm for it with ``#SBATCH --signal=USR1@90``)
is noted by a handler and acted on at the next step's end, a point where the state is whole: `last`
is written, the job is requeued (``scontrol requeue``, as Lightning's auto-requeue does) and
training stops; the requeued job (``SLURM_RESTART_COUNT`` > 0) resumes from `last` by itself.
Lightning's own handler is turned off (``SLURMEnvironment(auto_requeue=False)``): it saves an
``hpc_ckpt_N.ckpt`` from inside the signal handler, wherever the step is, which a resumed run
could not continue from bit for bit.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

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


class RunCheckpoints(ModelCheckpoint):
    """Writes `last` every training epoch (or after every validation with `every_validation`), and
    every `every_n_train_steps` steps or `train_time_interval` seconds when given (Lightning's
    triggers), and `best` when the validation headline improves. `slurm`: act on Slurm's requeue
    signal (see the module docstring)."""

    def __init__(self, folder: str | Path, every_validation: bool = False, *, every_n_train_steps: int | None = None,
                 train_time_interval: float | None = None, slurm: bool = False) -> None:
        super().__init__(dirpath=folder, filename="last", monitor=None, save_top_k=1, save_last=False,
                         every_n_train_steps=every_n_train_steps or None, enable_version_counter=False,
                         train_time_interval=None if train_time_interval is None
                         else timedelta(seconds=train_time_interval),
                         save_on_train_epoch_end=False)
        self.folder = Path(folder)
        self.every_validation = every_validation
        self.interval = bool(every_n_train_steps or train_time_interval is not None)
        self.slurm = slurm
        self.requeue_signal: int | None = None  # the signal received, until acted on
        self.requeued: str | None = None  # the job id requeued (training stopped for it)
        self._handlers: dict[int, Any] = {}
        self._saved_step: int | None = None
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None

    @property
    def state_key(self) -> str:
        # one key whatever the triggers: a resumed run may change the interval and keep its best
        return "RunCheckpoints"

    def path(self, name: str, suffix: str = ".ckpt") -> Path:
        """Where checkpoint `name` ("last" or "best") is written."""
        return self.folder / f"{name}{suffix}"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # the folder is the run's own: no "directory not empty" warning on a resumed run
        from lightning.fabric.utilities.cloud_io import get_filesystem

        self._fs = get_filesystem(str(self.folder))

    def on_train_start(self, trainer: Any, module: LSSATModule) -> None:
        super().on_train_start(trainer, module)
        if self.slurm:
            from lightning.fabric.plugins.environments import SLURMEnvironment

            sig = SLURMEnvironment().requeue_signal or signal.SIGUSR1
            self._handlers[sig] = signal.signal(sig, self._note_signal)

    def _note_signal(self, signum: int, frame: Any) -> None:
        self.requeue_signal = signum  # acted on at the next step's end, where the state is whole

    def on_train_batch_end(self, trainer: Any, module: LSSATModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if _validation_may_follow(trainer, self.every_validation):
            return  # the epoch's end or the validation checkpoints this step; one taken before it would skip them
        if self.interval:
            super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)  # Lightning's triggers
        self._requeue_if_signalled(trainer, module)

    def _requeue_if_signalled(self, trainer: Any, module: LSSATModule) -> None:
        if not self.slurm or self.requeued is not None:
            return
        signalled = self.requeue_signal is not None
        if trainer.world_size > 1:  # every rank stops at the same step
            signalled = trainer.strategy.reduce_boolean_decision(signalled, all=False)
        if signalled:
            self._requeue(trainer, module)

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        """ModelCheckpoint's interval trigger: write `last` (no validation, so no `best`)."""
        self._checkpoint(trainer, trainer.lightning_module, validated=False)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    def _requeue(self, trainer: Any, module: LSSATModule) -> None:
        from subprocess import call

        log = logging.getLogger("lssat")
        if self._saved_step != trainer.global_step:
            self._checkpoint(trainer, module, validated=False)
        job = slurm_job_id()
        self.requeued = job or "?"
        if trainer.is_global_zero and job:
            try:
                result = call(["scontrol", "requeue", job])
            except OSError as err:  # no scontrol on this node: the checkpoint is written; say so
                result = f"{type(err).__name__}: {err}"
            if result != 0:
                log.warning("lssat: scontrol requeue %s failed (%s); resume with --resume", job, result)
        trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, module: LSSATModule) -> None:
        validated = module.result_epoch.get("val") == trainer.current_epoch
        fresh = self._saved_step != trainer.global_step or validated  # not just written by the interval
        if not self.every_validation and self.requeued is None and fresh:
            self._checkpoint(trainer, module)
        self._requeue_if_signalled(trainer, module)

    def on_validation_end(self, trainer: Any, module: LSSATModule) -> None:
        if self.every_validation and trainer.state.fn == "fit" and not trainer.sanity_checking \
                and self.requeued is None:
            self._checkpoint(trainer, module)
            self._requeue_if_signalled(trainer, module)

    def on_train_end(self, trainer: Any, module: LSSATModule) -> None:
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}
        if self.every_validation and self._saved_step != trainer.global_step and trainer.global_step:
            self._checkpoint(trainer, module, validated=False)

    def on_exception(self, trainer: Any, module: LSSATModule, exception: BaseException) -> None:
        for sig, handler in self._handlers.items():
            signal.signal(sig, handler)
        self._handlers = {}

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
        trainer.save_checkpoint(str(tmp), weights_only=name == "best")  # best: weights and metadata only
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


def _validation_may_follow(trainer: Any, every_validation: bool) -> bool:
    """Whether Lightning may validate (or end the epoch) right after this training batch, as its
    training epoch loop decides (`_should_check_val_fx`): the epoch's last batch, or with validation
    by steps a multiple of `val_check_interval`."""
    loop = trainer.fit_loop.epoch_loop
    if loop.batch_progress.is_last_batch:
        return True
    every = trainer.val_check_batch
    if not every_validation or every is None or every == float("inf"):
        return False
    done = loop.total_batch_idx if trainer.check_val_every_n_epoch is None else loop.batch_idx
    return (done + 1) % int(every) == 0


def slurm_job_id() -> str | None:
    """The Slurm job to requeue (an array task as ``JOB_TASK``), as Lightning's auto-requeue names it."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None and os.environ.get("SLURM_ARRAY_TASK_ID") is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def slurm_requeued() -> bool:
    """Whether this process is a Slurm job that was requeued (``SLURM_RESTART_COUNT`` > 0)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    except ValueError:
        return False
