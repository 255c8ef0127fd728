"""Training schemes: what one training step optimises, by stage.

- ``joint`` (default; SSAT): every step optimises the recipe's total, lambda x task +
  (1 - lambda) x reconstruction (plus the HMTL auxiliaries with their weights).
- ``pretrain-finetune``: stage 1 (the first `trainer.pretrain_epochs` epochs) optimises the
  auxiliary losses only (reconstruction, puzzle, in-painting): self-supervised pre-training, the
  head is not trained. Stage 2 optimises the task loss on the unmasked pass (`finetune_aux: true`:
  the joint total instead). At the boundary the AdamW moments are reset and the learning-rate
  schedule restarts with its own warm-up; the best checkpoint is chosen among stage 2 epochs only.
- ``supervised``: the recipe's auxiliary branches are not built; the task loss only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lssat.errors import ConfigError
from lssat.models.recipe import Recipe, load_recipe

STAGES = ("joint", "pretrain", "finetune", "supervised")


def scheme_recipe(recipe: Recipe, scheme: str) -> Recipe:
    """The recipe the model is built from under a scheme (supervised drops every auxiliary)."""
    if scheme == "supervised" and recipe.aux:
        return load_recipe(recipe, {"name": f"{recipe.name}/supervised", "aux": [], "targets": [],
                                    "fusion": False, "norm_pix": False})
    if scheme == "pretrain-finetune" and not recipe.aux:
        raise ConfigError(f"trainer.scheme pretrain-finetune needs an auxiliary task to pre-train; "
                          f"recipe {recipe.name} has none")
    return recipe


def stage_of(scheme: str, epoch: int, pretrain_epochs: int | None) -> str:
    """The stage of an epoch: joint, supervised, or pretrain / finetune."""
    if scheme == "pretrain-finetune":
        return "pretrain" if epoch < (pretrain_epochs or 0) else "finetune"
    return scheme


def aux_loss(out: Mapping[str, Any], recipe: Recipe) -> torch.Tensor:
    """The self-supervised part of a step's losses: reconstruction, puzzle and in-painting."""
    w = recipe.hmtl_weights
    parts = []
    if "recon_loss" in out:
        parts.append(out["recon_loss"])
    if "puzzle_loss" in out:
        parts.append(w.get("puzzle", 1.0) * out["puzzle_loss"])
    if "inpaint_loss" in out:
        parts.append(w.get("inpaint", 1.0) * out["inpaint_loss"])
    if not parts:
        raise ConfigError(f"recipe {recipe.name}: no auxiliary loss to pre-train with")
    return torch.stack(parts).sum()


def step_losses(model: Any, batch: Mapping[str, Any], task: Any, stage: str, *, finetune_aux: bool = False,
                generator: torch.Generator | None = None) -> dict[str, Any]:
    """The losses of one training step; "loss" is what is back-propagated.

    `model` is an LSSATModel, `task` a `lssat.tasks.Task`, `batch` the data module's batch dict.
    """
    images = batch["image"]
    if stage == "finetune" and not finetune_aux:
        logits = model(images)
        task_loss = task.loss(logits, batch)
        return {"loss": task_loss, "task_loss": task_loss, "logits": logits}
    out = model.training_losses(images, task.loss, batch, generator=generator)
    if stage == "pretrain":
        out["loss"] = aux_loss(out, model.recipe)
        out["task_loss"] = out["task_loss"].detach()
    return out


def finds_unused_parameters(scheme: str) -> bool:
    """Whether some parameters get no gradient in some steps (DDP must then search for them):
    the head in pre-training, the decoder in fine-tuning."""
    return scheme == "pretrain-finetune"
