"""AdamW with weight decay on weights only, and the warm-up + cosine learning-rate schedule.

METHOD.md section 2: AdamW, weight decay 0.05 with none on biases and norms, peak lr =
base_lr x global batch / 256, linear warm-up for 5 epochs then cosine decay to 1e-6, per step.
"No decay" covers every parameter with at most one dimension (biases, LayerNorm/BatchNorm scales
and shifts) and the tokens a timm model lists in `no_weight_decay()` (position embedding, CLS,
mask and distillation tokens), as timm and MAE do.

The pretrain-finetune scheme runs the schedule twice: one warm-up + cosine over the pre-training
steps, a fresh one over the fine-tuning steps (`segments`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


def no_decay_names(model: nn.Module) -> set[str]:
    """Full parameter names of `model` that timm modules inside it exempt from weight decay."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if not callable(listed):
            continue
        try:
            exempt = listed()
        except TypeError:
            continue
        for name in exempt:
            names.add(f"{prefix}.{name}" if prefix else str(name))
    return names


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights, and biases / norms / tokens without decay."""
    exempt = no_decay_names(model)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name in exempt or any(name.endswith("." + e) for e in exempt):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """The linear scaling rule: base_lr x global batch / 256."""
    return base_lr * global_batch / 256.0


@dataclass(frozen=True)
class Segment:
    """One warm-up + cosine cycle: starts at step `start`, lasts `length` steps, warms up `warmup`."""

    start: int
    length: int
    warmup: int


class WarmupCosine:
    """Learning-rate multiplier per optimizer step (for LambdaLR, whose base lr is the peak lr).

    Within a segment: linear warm-up from peak / warmup to the peak over `warmup` steps, then half
    a cosine from the peak down to `min_lr`. After the last segment the rate stays at `min_lr`.
    """

    def __init__(self, segments: Sequence[Segment], peak_lr: float, min_lr: float) -> None:
        self.segments = list(segments)
        self.floor = min(min_lr / peak_lr, 1.0) if peak_lr > 0 else 0.0

    def __call__(self, step: int) -> float:
        seg = self.segments[0]
        for candidate in self.segments:
            if step >= candidate.start:
                seg = candidate
        t = step - seg.start
        if t < seg.warmup:
            return (t + 1) / seg.warmup
        decay = max(seg.length - seg.warmup, 1)
        progress = min(max((t - seg.warmup) / decay, 0.0), 1.0)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def segments_for(total_steps: int, steps_per_epoch: int, warmup_epochs: float,
                 warmup_steps: int | None = None, boundary: int | None = None) -> list[Segment]:
    """The schedule's cycles: one over all steps, or two split at `boundary` (pretrain-finetune).

    The warm-up of a cycle is `warmup_steps`, else `warmup_epochs` x steps per epoch, at most the
    cycle's length.
    """
    warm = warmup_steps if warmup_steps is not None else int(round(warmup_epochs * steps_per_epoch))
    spans = [(0, total_steps)] if boundary is None else [(0, boundary), (boundary, total_steps - boundary)]
    return [Segment(start, max(length, 1), min(warm, max(length, 1))) for start, length in spans]


def build_optimizer(params: Iterable[dict], lr: float, weight_decay: float,
                    betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW over the given parameter groups (each group carries its own weight decay)."""
    groups = [g for g in params if g["params"]]
    # fused: one kernel per tensor for the whole update (torch has it on CPU and CUDA); small models on
    # a CPU spend a sixth of their step in the optimizer otherwise (half that fused). Elsewhere
    # (MPS, XLA, ...) foreach: one call per group instead of one per tensor.
    devices = {p.device.type for g in groups for p in g["params"]}
    fast = {"fused": True} if devices <= {"cpu", "cuda"} else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, **fast)
