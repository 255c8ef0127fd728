"""The engine's parts: parameter groups, the learning-rate schedule, the schemes' losses, the
LightningModule's NaN guard, and weights-only checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from lssat.engine import optim
from lssat.engine.checkpoints import load_weights, save_weights
from lssat.engine.module import LSSATModule, TrainingDiverged
from lssat.engine.schemes import aux_loss, scheme_recipe, stage_of, step_losses
from lssat.errors import ConfigError, InputError
from lssat.models.lssat import LSSATModel
from lssat.models.recipe import load_recipe
from lssat.tasks import build_task

TINY = dict(patch_size=8, depth=1, embed_dim=32, num_heads=2)


def tiny_model(recipe="lssat-ldp", outputs=1):
    torch.manual_seed(0)
    recipe = load_recipe(recipe, {"decoder": {"width": 32, "depth": 1, "num_heads": 2}})
    return LSSATModel("vit_tiny_patch16_224", outputs, recipe, 32, backbone_kwargs=TINY)


def batch(n=6):
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            "label": torch.tensor([0, 1] * (n // 2))}


# ----------------------------------------------------------------------------- optimiser

def test_param_groups_exempt_biases_norms_and_tokens_only():
    model = tiny_model()
    opt = optim.build_optimizer(model, 1e-3, 0.05, (0.9, 0.999))  # timm's create_optimizer_v2
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay.isdisjoint(no_decay) and decay | no_decay == set(names)  # every parameter exactly once
    for pid in no_decay:
        name = names[pid]
        p = dict(model.named_parameters())[name]
        assert p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")), name
    exempt = {names[i] for i in no_decay}
    assert "backbone.model.pos_embed" in exempt and "backbone.model.cls_token" in exempt
    assert "mae.decoder.mask_token" not in exempt  # decayed, as in SSAT and MAE
    assert any(n.endswith("norm.weight") for n in exempt) and any(n.endswith(".bias") for n in exempt)
    assert all(dict(model.named_parameters())[names[i]].ndim >= 2 for i in decay)
    assert optim.scaled_lr(1e-3, 512) == pytest.approx(2e-3)


def test_warmup_from_zero_then_cosine_to_the_floor():
    peak, floor = 1e-3, 1e-6
    segs = optim.segments_for(total_steps=100, steps_per_epoch=10, warmup_epochs=2)
    assert segs == [optim.Segment(0, 100, 20)]
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=peak)
    f = optim.build_scheduler(opt, segs, floor)
    assert opt.param_groups[0]["lr"] == 0.0  # the first step's lr: warm-up starts at 0 (MAE, timm)
    lrs = [f.lr_at(s) for s in range(100)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(peak / 20) and lrs[20] == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21]))  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))  # cosine decay
    assert lrs[60] == pytest.approx(floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * 40 / 80)))
    assert f.lr_at(100) == pytest.approx(floor) and f.lr_at(500) == pytest.approx(floor)
    f.step_update(60)
    assert opt.param_groups[0]["lr"] == pytest.approx(lrs[60])


def test_two_cycles_restart_the_schedule_at_the_boundary():
    segs = optim.segments_for(100, 10, 1, boundary=40)
    assert segs == [optim.Segment(0, 40, 10), optim.Segment(40, 60, 10)]
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    f = optim.build_scheduler(opt, segs, 0.0)
    assert f.lr_at(39) < 0.05 and f.lr_at(40) == 0.0 and f.lr_at(41) == pytest.approx(0.1)
    assert f.lr_at(50) == pytest.approx(1.0)
    assert optim.segments_for(10, 10, 5, warmup_steps=3)[0].warmup == 3
    assert optim.segments_for(10, 10, 5)[0].warmup == 10  # never longer than the run


# ----------------------------------------------------------------------------- schemes

def test_joint_step_is_the_weighted_sum():
    model, task = tiny_model(), build_task("deepfake")
    out = step_losses(model, batch(), task, "joint", generator=torch.Generator().manual_seed(0))
    lam = model.recipe.lambda_
    assert out["loss"].item() == pytest.approx(lam * out["task_loss"].item() + (1 - lam) * out["recon_loss"].item(),
                                               rel=1e-6)


def test_pretrain_stage_trains_no_head_and_finetune_no_decoder():
    model, task = tiny_model(), build_task("deepfake")
    out = step_losses(model, batch(), task, "pretrain", generator=torch.Generator().manual_seed(0))
    assert out["loss"].item() == pytest.approx(out["recon_loss"].item())
    out["loss"].backward()
    assert all(p.grad is None for p in model.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mae.parameters())
    model.zero_grad(set_to_none=True)
    out = step_losses(model, batch(), task, "finetune")
    assert set(out) == {"loss", "task_loss", "logits"}
    out["loss"].backward()
    assert all(p.grad is None for p in model.mae.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    model.zero_grad(set_to_none=True)
    out = step_losses(model, batch(), task, "finetune", finetune_aux=True)
    assert "recon_loss" in out  # with the auxiliary losses kept, stage 2 is the joint step
    assert stage_of("pretrain-finetune", 1, 2) == "pretrain" and stage_of("pretrain-finetune", 2, 2) == "finetune"
    assert stage_of("joint", 5, None) == "joint"


def test_supervised_scheme_builds_no_auxiliary_branch():
    recipe = scheme_recipe(load_recipe("rrlnrc"), "supervised")
    assert recipe.aux == [] and recipe.targets == [] and recipe.name == "rrlnrc/supervised"
    model = LSSATModel("vit_tiny_patch16_224", 1, recipe, 32, backbone_kwargs=TINY)
    assert model.mae is None
    assert scheme_recipe(load_recipe("ssat"), "joint").aux == ["mae"]
    with pytest.raises(ConfigError, match="pretrain-finetune needs an auxiliary task"):
        scheme_recipe(load_recipe("supervised"), "pretrain-finetune")
    puzzle = tiny_model("hmtl-puzzle", outputs=8)
    b = batch()
    out = puzzle.training_losses(b["image"], build_task("expression", [str(i) for i in range(8)]).loss, b)
    assert aux_loss(out, puzzle.recipe).item() == pytest.approx(out["puzzle_loss"].item())


# ----------------------------------------------------------------------------- NaN guard

class _Trainer:
    world_size = 1
    optimizers = []


def test_non_finite_loss_raises_naming_the_loss_and_checkpoint(monkeypatch, tmp_path):
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"")
    module = LSSATModule(tiny_model(), build_task("deepfake"), checkpoint_hint=str(last))
    monkeypatch.setattr(LSSATModule, "trainer", property(lambda self: _Trainer()))
    out = {"loss": torch.tensor(float("nan")), "task_loss": torch.tensor(0.5), "recon_loss": torch.tensor(float("inf"))}
    with pytest.raises(TrainingDiverged) as info:
        module._guard(out["loss"], out)
    message = str(info.value)
    assert message.startswith("training diverged: non-finite recon_loss (inf) at epoch 0, step 0")
    assert message.endswith(f"the last good checkpoint is {last}") and "\n" not in message
    last.unlink()
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        module._guard(out["loss"], out)
    module._guard(torch.tensor(1.0), {"loss": torch.tensor(1.0)})  # a finite loss passes


# ----------------------------------------------------------------------------- weights files

def test_safetensors_round_trip_with_metadata(tmp_path):
    model = tiny_model("fusion")
    path = tmp_path / "w.safetensors"
    save_weights(model, path, {"run_id": "abc", "epoch": 3, "value": float("nan")})
    state, meta = load_weights(path)
    assert meta == {"run_id": "abc", "epoch": 3, "value": None}
    reference = model.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)
    fresh = tiny_model("fusion")
    fresh.load_state_dict(state)
    x = batch()["image"]
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    with pytest.raises(InputError, match="checkpoint not found"):
        load_weights(tmp_path / "none.safetensors")
    with pytest.raises(InputError, match="no checkpoint in this folder"):
        load_weights(tmp_path)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load checkpoint"):
        load_weights(tmp_path / "junk.ckpt")


def test_balanced_weights_come_from_the_training_split():
    import numpy as np

    from lssat.config import TaskConfig
    from lssat.data.datamodule import FaceDataModule
    from lssat.engine.run import make_task

    dm = FaceDataModule({"synthetic": {"task": "attributes", "train": 200, "val": 8, "test": 8}, "image_size": 32})
    dm.setup("fit")
    labels = np.array([r.attributes for r in dm.records("train")], dtype=float)
    ratio = (1 - labels.mean(0)) / labels.mean(0)
    for mode, expected in (("balanced", ratio), ("sqrt-balanced", np.sqrt(ratio))):
        task = make_task(TaskConfig(pos_weight=mode), dm)
        np.testing.assert_allclose(task.pos_weight.numpy(), expected, rtol=1e-5)
    dm = FaceDataModule({"synthetic": {"task": "expression", "train": 200, "val": 8, "test": 8}, "image_size": 32})
    dm.setup("fit")
    counts = np.bincount([r.label for r in dm.records("train")], minlength=8)
    task = make_task(TaskConfig(class_weights="balanced"), dm)
    np.testing.assert_allclose(task.class_weights.numpy(), 200 / (8 * counts), rtol=1e-5)
