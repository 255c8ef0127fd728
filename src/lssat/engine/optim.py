"""AdamW and the warm-up + cosine learning-rate schedule, both from timm's factories.

METHOD.md section 2: AdamW, weight decay 0.05 with none on biases and norms, peak lr =
base_lr x global batch / 256, linear warm-up from 0 for 5 epochs then cosine decay to 1e-6, per step.

- `build_optimizer`: `timm.optim.create_optimizer_v2` ("adamw", torch's fused AdamW on CPU/CUDA).
  timm's parameter groups: no weight decay on parameters with at most one dimension (biases,
  LayerNorm/BatchNorm scales and shifts) and on what the model's `no_weight_decay()` lists
  (`LSSATModel.no_weight_decay`: the tokens timm's models list, such as the position embedding,
  CLS and distillation tokens). Mask tokens are decayed, as in SSAT and MAE. With `layer_decay`,
  timm's layer-wise learning-rate decay (BEiT/MAE fine-tuning) over `LSSATModel.group_matcher`: each
  group carries an `lr_scale` that the scheduler multiplies into its lr.
- `build_scheduler`: one `timm.scheduler.CosineLRScheduler` per `Segment` (warm-up from 0, then half
  a cosine to `min_lr` over the rest of the segment, `min_lr` after it), stepped per optimizer step.
  The pretrain-finetune scheme runs two segments: a fresh warm-up + cosine for fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: base_lr x global batch / 256."""
    return base_lr * global_batch / 256.0


@dataclass(frozen=True)
class Segment:
    """One warm-up + cosine cycle: starts at step `start`, lasts `length` steps, warms up `warmup`."""

    start: int
    length: int
    warmup: int


def segments_for(total_steps: int, steps_per_epoch: int, warmup_epochs: float,
                 warmup_steps: int | None = None, boundary: int | None = None) -> list[Segment]:
    """The schedule's cycles: one over all steps, or two split at `boundary` (pretrain-finetune).

    The warm-up of a cycle is `warmup_steps`, else `warmup_epochs` x steps per epoch, at most the
    cycle's length.
    """
    warm = warmup_steps if warmup_steps is not None else int(round(warmup_epochs * steps_per_epoch))
    spans = [(0, total_steps)] if boundary is None else [(0, boundary), (boundary, total_steps - boundary)]
    return [Segment(start, max(length, 1), min(warm, max(length, 1))) for start, length in spans]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    layer_decay: float | None = None) -> torch.optim.Optimizer:
    """timm's AdamW over timm's parameter groups of `model` (see the module docstring)."""
    from timm.optim import create_optimizer_v2

    # fused: one kernel for the whole update (torch has it on CPU and CUDA); small models on a CPU
    # spend a sixth of their step in the optimizer otherwise (half that fused). Elsewhere (MPS, XLA,
    # ...) foreach: one call per group instead of one per tensor. timm passes both to torch's AdamW.
    devices = {p.device.type for p in model.parameters()}
    fast: dict[str, Any] = {"fused": True} if devices <= {"cpu", "cuda"} else {"foreach": True}
    return create_optimizer_v2(model, "adamw", lr=lr, weight_decay=weight_decay, betas=tuple(betas),
                               layer_decay=layer_decay, **fast)


class SegmentedCosine:
    """timm CosineLRSchedulers, one per segment, stepped by the optimizer step count.

    `step_update(num_updates)` sets every group's lr to the schedule's value at that step (times the
    group's `lr_scale`, as timm does); `lr_at(step)` is the unscaled value.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, segments: Sequence[Segment], min_lr: float) -> None:
        from timm.scheduler import CosineLRScheduler

        self.optimizer = optimizer
        self.segments = list(segments)
        self.schedulers = [
            CosineLRScheduler(optimizer, t_initial=max(seg.length - seg.warmup, 1), lr_min=min_lr,
                              warmup_t=seg.warmup, warmup_lr_init=0.0, warmup_prefix=True, cycle_limit=1,
                              t_in_epochs=False)
            for seg in self.segments]
        self.step_update(0)

    def _at(self, step: int) -> tuple[Any, int]:
        index = 0
        for i, seg in enumerate(self.segments):
            if step >= seg.start:
                index = i
        return self.schedulers[index], step - self.segments[index].start

    def lr_at(self, step: int) -> float:
        """The peak-relative schedule's lr at optimizer step `step` (before any `lr_scale`)."""
        scheduler, t = self._at(step)
        return float(scheduler._get_lr(t)[0])

    def step_update(self, num_updates: int) -> None:
        """Set the lr of every group for optimizer step `num_updates`."""
        scheduler, t = self._at(num_updates)
        scheduler.step_update(t)

    def state_dict(self) -> dict[str, Any]:
        """Nothing to save: the lr is a function of the step count (Lightning checkpoints this)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """See `state_dict`."""


def build_scheduler(optimizer: torch.optim.Optimizer, segments: Sequence[Segment], min_lr: float) -> SegmentedCosine:
    """The per-step warm-up (from 0) + cosine schedule over `segments` (see `SegmentedCosine`)."""
    return SegmentedCosine(optimizer, segments, min_lr)
