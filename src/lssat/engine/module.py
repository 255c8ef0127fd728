"""The LightningModule: an LSSATModel trained on a task under a scheme.

- `training_step`: the scheme's losses for the stage (texture maps are computed inside the model's
  step from the uint8 batch; total = lambda x task + (1 - lambda) x reconstruction for `joint`).
  A non-finite loss stops the run before the backward pass with a `TrainingDiverged` error, on
  every DDP rank at the same step (the flag is reduced across ranks), so no optimizer step and no
  checkpoint ever sees it.
- `validation_step` / `test_step`: the unmasked pass; the task's metrics accumulate over the whole
  split and are computed at the epoch's end on every rank (gathered across ranks), then logged as
  flat scalars ``val/<metric>`` / ``test/<metric>``; the full result is kept in `results[split]`.
  The test split's per-sample predictions (index, target, score, video_id, subgroups) are kept in
  `predictions["test"]` (numpy arrays, every rank's samples gathered, sorted by index).
- `configure_optimizers`: timm's AdamW + per-step warm-up (from 0) / cosine (`lssat.engine.optim`),
  stepped by `lr_scheduler_step`. pretrain-finetune: the fine-tuning stage starts with fresh AdamW
  moments, a fresh warm-up, timm's layer-wise lr decay (`trainer.finetune_layer_decay`) and drop path
  (`trainer.finetune_drop_path`, off while pre-training), as MAE fine-tunes.
- Hyper-parameters (``self.hparams``, Lightning's ``hyper_parameters`` in every checkpoint and the
  CSV logger's hparams.yaml): the run metadata (resolved config, recipe, task, normalisation), the
  task's resolved options and the batch size, all plain data, so
  ``LSSATModule.load_from_checkpoint("run/checkpoints/last.ckpt")`` rebuilds model, task and trainer
  config with no other argument (and loads with ``weights_only=True``).
- ``example_input_array``: one (1, 3, S, S) uint8 image, so Lightning's model summary counts the
  inference pass's FLOPs (``Total Flops``) instead of printing 0.
- Checkpoints carry ``checkpoint["lssat"]`` (plain metadata: config, task, recipe) and, per rank,
  every random state a step draws from (Python, NumPy, torch CPU/CUDA, the masking generator:
  `rng_states`), so a resumed run draws the same masks and dropout as an uninterrupted one (the
  data's own draws are a function of the seed, epoch and position: `lssat.data.sampling`).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from lssat.engine import optim
from lssat.engine.schemes import stage_of, step_losses
from lssat.errors import ConfigError, LssatError
from lssat.metrics.classification import scalar_metrics
from lssat.tasks import subgroup_values

LOSS_KEYS = ("task_loss", "recon_loss", "puzzle_loss", "inpaint_loss")


class TrainingDiverged(LssatError):
    """A training loss became NaN or infinite, or the weights did."""


class LSSATModule(L.LightningModule):
    """Training, validation and test of an LSSATModel on a task.

    Args:
        model: the `lssat.models.lssat.LSSATModel`.
        task: the `lssat.tasks.Task` (loss and metrics).
        trainer_config: a `lssat.config.TrainerConfig` (optimisation and scheme); None for
            evaluation only.
        batch_size: per-process batch size (for the lr scaling rule).
        metadata: plain data stored in every checkpoint under "lssat".
        checkpoint_hint: where the last good checkpoint lies, for the divergence message.
        task_spec: the task as `task_spec` describes it (kind, names, resolved options).

    With `model` None (as `load_from_checkpoint` calls it, from the saved hyper-parameters), the
    model, task and trainer config are rebuilt from `metadata` (its config, recipe and norm) and
    `task_spec`; the model's backbone is built without pretrained weights (the checkpoint has them).
    """

    def __init__(self, model: nn.Module | None = None, task: Any = None, trainer_config: Any = None,
                 batch_size: int = 1, metadata: Mapping[str, Any] | None = None, checkpoint_hint: str = "",
                 task_spec: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        metadata = copy.deepcopy(dict(metadata or {}))
        if model is None:
            model, task, trainer_config = rebuild(metadata, task_spec)
        elif task is None:
            raise ConfigError("LSSATModule: a model needs its task")
        task_spec = copy.deepcopy(dict(task_spec)) if task_spec is not None else describe_task(task)
        self.save_hyperparameters({"metadata": metadata, "task_spec": task_spec, "batch_size": int(batch_size)})
        self.model = model
        self.task = task
        self.cfg = trainer_config
        self.batch_size = batch_size
        self.metadata = dict(metadata)
        self.checkpoint_hint = checkpoint_hint
        self.metrics = nn.ModuleDict({"val": task.metrics(), "test": task.metrics()})
        self.mean_loss = nn.ModuleDict({"val": MeanMetric(nan_strategy="ignore"),
                                        "test": MeanMetric(nan_strategy="ignore")})
        self.results: dict[str, dict[str, Any]] = {}
        self.predictions: dict[str, dict[str, Any]] = {}  # split -> per-sample arrays (test only)
        self._rows: dict[str, list[dict[str, Any]]] = {"test": []}
        self.result_epoch: dict[str, int] = {}
        self.mask_generator = torch.Generator()
        size = int(getattr(model, "img_size", 0) or 0)
        if size:  # what Lightning's ModelSummary runs to count FLOPs (and layer sizes): one raw image
            self.example_input_array = torch.zeros(1, 3, size, size, dtype=torch.uint8)
        self.train_images = 0
        self.step_time = 0.0
        self.loop_time = 0.0
        self._batch_start = 0.0
        self._mark = 0.0
        self._epoch_loss = torch.zeros(())
        self._epoch_images = 0

    # ------------------------------------------------------------------ scheme
    @property
    def scheme(self) -> str:
        return self.cfg.scheme if self.cfg is not None else "joint"

    @property
    def stage(self) -> str:
        """The scheme's stage of the current epoch."""
        return stage_of(self.scheme, self.current_epoch, self.cfg.pretrain_epochs if self.cfg else None)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.cfg is not None:
            # a different masking stream per rank; restored from a checkpoint when resuming
            self.mask_generator.manual_seed(int(self.cfg.seed) * 1_000_003 + self.global_rank)

    # ------------------------------------------------------------------ training
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        out = step_losses(self.model, batch, self.task, self.stage, finetune_aux=self.cfg.finetune_aux,
                          generator=self.mask_generator)
        loss = out["loss"]
        self._guard(loss, out)
        n = len(batch["image"])
        self._epoch_loss += loss.detach().float() * n
        self._epoch_images += n
        if self.trainer.progress_bar_callback is not None:
            self.log("train/loss", loss.detach(), prog_bar=True, logger=False, batch_size=n)
        if self._log_this_step():
            parts = {"train/loss_step": loss.detach().float(),
                     **{f"train/{k}": out[k].detach().float() for k in LOSS_KEYS if k in out},
                     "train/lr": self._schedule_lr()}
            self.log_dict(parts, on_step=True, on_epoch=False, batch_size=n)
        return loss

    def _schedule_lr(self) -> float:
        """The schedule's lr (of the top layer under layer-wise decay: a group's lr / its lr_scale)."""
        group = self.trainer.optimizers[0].param_groups[0]
        scale = group.get("lr_scale", 1.0)
        return float(group["lr"] / scale) if scale else float(group["lr"])

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if device.type == "cpu":  # CPU batches are already there: skip walking the batch each step
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _log_this_step(self) -> bool:
        """Whether the logger writes this step (`trainer.log_every`): logging only then keeps
        Lightning's per-call bookkeeping out of the other steps, which matters for tiny models."""
        t = self.trainer
        return bool(t.log_every_n_steps) and (t.fit_loop.epoch_loop._batches_that_stepped + 1) % t.log_every_n_steps == 0

    def _guard(self, loss: torch.Tensor, out: Mapping[str, Any]) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        which = [k for k in LOSS_KEYS if k in out and not bool(torch.isfinite(out[k].detach()).all())]
        what = f"{which[0]} ({float(out[which[0]].detach().float())})" if which else \
            f"loss ({float(loss.detach().float())})" if not bool(torch.isfinite(loss.detach()).all()) \
            else "loss (on another rank)"
        where = ""
        if self.checkpoint_hint:
            where = (f"; the last good checkpoint is {self.checkpoint_hint}" if os.path.isfile(self.checkpoint_hint)
                     else "; no checkpoint was written yet")
        raise TrainingDiverged(f"training diverged: non-finite {what} at epoch {self.current_epoch}, "
                               f"step {self.global_step}{where}")

    def on_train_epoch_start(self) -> None:
        if self.scheme == "pretrain-finetune":
            if self.current_epoch == self.cfg.pretrain_epochs:
                for opt in self.trainer.optimizers:  # fine-tuning starts with fresh AdamW moments
                    opt.state.clear()
            self._fine_tuning(self.stage == "finetune")
        self._mark = time.perf_counter()
        self._epoch_loss = torch.zeros((), device=self.device)
        self._epoch_images = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_images:  # the mean training loss of the epoch's samples (this rank's)
            self.log("train/loss_epoch", self._epoch_loss / self._epoch_images, on_step=False, on_epoch=True,
                     batch_size=self._epoch_images)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.step_time += now - self._batch_start
        self.loop_time += now - self._mark
        self._mark = now
        self.train_images += len(batch["image"])

    def _fine_tuning(self, on: bool) -> None:
        """Layer-wise lr decay and drop path: on in the fine-tuning stage, off while pre-training."""
        from timm.layers import DropPath

        for module in self.model.modules():
            if isinstance(module, DropPath):
                if not hasattr(module, "lssat_drop_prob"):
                    module.lssat_drop_prob = module.drop_prob
                module.drop_prob = module.lssat_drop_prob if on else 0.0
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                if "lssat_lr_scale" in group:
                    group["lr_scale"] = group["lssat_lr_scale"] if on else 1.0
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.step_update(self.trainer.global_step)

    def lr_scheduler_step(self, scheduler: Any, metric: Any = None) -> None:
        """timm schedulers step by the optimizer step count."""
        scheduler.step_update(self.trainer.global_step)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg is None:
            raise ConfigError("this module was built for evaluation only (no trainer config)")
        trainer = self.trainer
        accumulate = trainer.accumulate_grad_batches
        global_batch = self.batch_size * trainer.world_size * accumulate
        peak = cfg.lr if cfg.lr is not None else optim.scaled_lr(cfg.base_lr, global_batch)
        total = int(trainer.estimated_stepping_batches)
        if trainer.train_dataloader is None:  # max_steps runs skip loading it in the estimate
            trainer.fit_loop.setup_data()
        per_epoch = max(1, math.ceil(trainer.num_training_batches / accumulate))
        boundary = None
        if self.scheme == "pretrain-finetune":
            boundary = cfg.pretrain_epochs * per_epoch
            if boundary >= total:
                raise ConfigError(f"trainer.pretrain_epochs ({cfg.pretrain_epochs} epochs = {boundary} steps) "
                                  f"leaves no fine-tuning step of the run's {total} steps")
        segments = optim.segments_for(total, per_epoch, cfg.warmup_epochs, cfg.warmup_steps, boundary)
        layer_decay = cfg.finetune_layer_decay if boundary is not None else cfg.layer_decay
        optimizer = optim.build_optimizer(self.model, peak, cfg.weight_decay, cfg.betas, layer_decay)
        if boundary is not None and layer_decay is not None:
            for group in optimizer.param_groups:  # pre-training runs every layer at the full lr
                group["lssat_lr_scale"], group["lr_scale"] = group["lr_scale"], 1.0
        scheduler = optim.build_scheduler(optimizer, segments, cfg.min_lr)
        self.lr_info = {"peak_lr": peak, "global_batch": global_batch, "total_steps": total,
                        "steps_per_epoch": per_epoch, "segments": [vars(s) for s in segments],
                        "layer_decay": layer_decay}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_end(self) -> None:
        stats = torch.tensor([float(self.train_images), self.step_time, self.loop_time], device=self.device,
                             dtype=torch.float64 if self.device.type != "mps" else torch.float32)
        if self.trainer.world_size > 1:
            total = self.trainer.strategy.reduce(stats.clone(), reduce_op="sum")
            images = float(total[0])
        else:
            images = float(stats[0])
        # every rank runs its steps in parallel: the wall time is this rank's
        self.train_stats = {"images": int(images), "step_time_s": self.step_time, "loop_time_s": self.loop_time}

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, split: str, batch: Mapping[str, Any]) -> None:
        logits = self.model(batch["image"])
        self.metrics[split].update(logits, batch)
        if split in self._rows:
            self._keep_rows(split, logits, batch)
        if len(batch["image"]):
            self.mean_loss[split].update(self.task.loss(logits.float(), batch).detach(),
                                         weight=len(batch["image"]))

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _finish(self, split: str) -> dict[str, Any]:
        result = self.metrics[split].compute()
        loss = self.mean_loss[split].compute()
        self.metrics[split].reset()
        self.mean_loss[split].reset()
        result["loss"] = float(loss)
        self.results[split] = result
        self.result_epoch[split] = self.current_epoch
        scalars = {f"{split}/{k}": v for k, v in scalar_metrics(result).items()}
        # the headline and loss go through Lightning (callback_metrics: what EarlyStopping or
        # ModelCheckpoint can monitor); the dozens of other scalars straight to the loggers, which
        # costs a fraction of Lightning's per-key bookkeeping. Identical on every rank already
        # (the metrics gathered all ranks): no further sync.
        watched = {k: v for k, v in scalars.items() if k in (f"{split}/{self.task.headline}", f"{split}/loss")}
        self.log_dict(watched, sync_dist=False, add_dataloader_idx=False)
        rest = {k: v for k, v in scalars.items() if k not in watched}
        if rest and self.trainer.is_global_zero:
            step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
            for logger in self.trainer.loggers:
                logger.log_metrics({**rest, "epoch": self.current_epoch}, step=step)
        return result

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.metrics["val"].reset()
            self.mean_loss["val"].reset()
            return
        self._finish("val")

    def on_test_epoch_start(self) -> None:
        self._rows["test"] = []

    def on_test_epoch_end(self) -> None:
        self._finish("test")
        self.predictions["test"] = self._gather_rows("test")

    # ------------------------------------------------------------------ per-sample predictions
    def _keep_rows(self, split: str, logits: torch.Tensor, batch: Mapping[str, Any]) -> None:
        n = len(batch["image"])
        if not n:
            return
        import numpy as np

        start = sum(len(r["index"]) for r in self._rows[split])
        index = batch.get("index")
        rows: dict[str, Any] = {
            "index": np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64)
            if index is not None else np.arange(start, start + n, dtype=np.int64),
            "target": self.task.target(batch).cpu().numpy().astype(np.int64),
            "score": self.task.probabilities(logits.detach()).cpu().numpy().astype(np.float32)}
        if batch.get("video_id") is not None:
            rows["video_id"] = np.asarray(["" if v is None else str(v) for v in batch["video_id"]], dtype=str)
        raw = batch.get("subgroup")
        keys = list(raw) if isinstance(raw, Mapping) else \
            list(dict.fromkeys(k for item in raw or [] if isinstance(item, Mapping) for k in item))
        for key in keys:
            rows[f"subgroup/{key}"] = np.asarray(["" if v is None else str(v) for v in subgroup_values(batch, key, n)],
                                                 dtype=str)
        self._rows[split].append(rows)

    def _gather_rows(self, split: str) -> dict[str, Any]:
        """This split's per-sample rows from every rank, one array per field, sorted by index."""
        import numpy as np

        parts = self._rows[split]
        self._rows[split] = []
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, parts)
            parts = [rows for rank_parts in gathered for rows in rank_parts or []]
        if not parts:
            return {}
        keys = [k for k in parts[0] if all(k in p for p in parts)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
        _, first = np.unique(out["index"], return_index=True)  # sorted by index, each sample once
        return {k: v[first] for k, v in out.items()}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lssat"] = self.metadata
        states = rng_states(self.mask_generator)  # the masking generator's state included
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_available() \
                and torch.distributed.is_initialized():  # every rank saves (dump_checkpoint runs on all)
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, states)
            checkpoint["lssat_rng"] = gathered
        else:
            checkpoint["lssat_rng"] = [states]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is None:  # load_from_checkpoint: weights only, the process's generators stay as they are
            return
        ranks = checkpoint.get("lssat_rng")
        if isinstance(ranks, list) and ranks:
            rank = self.global_rank if self.global_rank < len(ranks) else 0
            restore_rng_states(ranks[rank], self.mask_generator)
            return
        state = checkpoint.get("lssat_mask_rng")  # a checkpoint from before every random state was saved
        if isinstance(state, torch.Tensor):
            self.mask_generator.set_state(state)


def rng_states(mask_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a training step draws from: Python's, NumPy's and torch's global
    generators (CPU, and CUDA when in use) and the masking generator, as tensors and plain data
    (so a checkpoint stays loadable with ``torch.load(weights_only=True)``)."""
    import random

    import numpy as np

    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=True)
    out: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), int(numpy_state[2]),
                  int(numpy_state[3]), float(numpy_state[4])],
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    if mask_generator is not None:
        out["mask"] = mask_generator.get_state()
    return out


def restore_rng_states(states: Mapping[str, Any], mask_generator: torch.Generator | None = None) -> None:
    """Set the generators back to what `rng_states` saved (the parts it holds)."""
    import random

    import numpy as np

    if states.get("python") is not None:
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    if states.get("numpy") is not None:
        name, key, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, cached))
    if isinstance(states.get("torch"), torch.Tensor):
        torch.random.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        cuda = list(states["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    if mask_generator is not None and isinstance(states.get("mask"), torch.Tensor):
        mask_generator.set_state(states["mask"])


def describe_task(task: Any) -> dict[str, Any]:
    """A task as plain data `task_from_spec` rebuilds it from: kind, names and the resolved options
    (data-derived ones such as a balanced pos_weight included)."""
    options: dict[str, Any] = {"subgroups": list(task.subgroups), "headline": task.headline,
                               "label_smoothing": float(task.label_smoothing), "threshold": float(task.threshold)}
    for key in ("pos_weight", "class_weights"):
        value = getattr(task, key, None)
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        if value is not None:
            options[key] = value
    return {"kind": task.kind, "names": list(task.names), "options": options}


def task_from_spec(spec: Mapping[str, Any]) -> Any:
    """The task `describe_task` described."""
    from lssat.tasks import build_task

    return build_task(spec["kind"], spec.get("names"), **dict(spec.get("options") or {}))


def rebuild(metadata: Mapping[str, Any], task_spec: Mapping[str, Any] | None) -> tuple[nn.Module, Any, Any]:
    """The model (untrained weights, no pretrained download), task and trainer config that the run
    metadata of a checkpoint describes (`LSSATModule.load_from_checkpoint` with no other argument)."""
    from lssat.config import config_from_dict
    from lssat.models.recipe import Recipe, load_recipe

    if not all(isinstance(metadata.get(key), Mapping) for key in ("config", "recipe")) or task_spec is None:
        raise ConfigError("LSSATModule: no model given and no run metadata (config, recipe, task) to rebuild one "
                          "from; was the checkpoint written by lssat train?")
    tree = copy.deepcopy(dict(metadata["config"]))
    tree["model"] = {**tree.get("model", {}), "pretrained": False}  # the checkpoint holds the weights
    cfg = config_from_dict(tree)
    task = task_from_spec(task_spec)
    from lssat.engine.run import make_model

    model = make_model(cfg, task.num_outputs, load_recipe(Recipe(), dict(metadata["recipe"])),
                       norm=metadata.get("norm"))
    return model, task, cfg.trainer
