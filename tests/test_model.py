"""The multi-task model: masking, decoder, losses, presets, auxiliaries, inference path, cost."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lssat.errors import ConfigError, InputError
from lssat.models.auxiliary.inpaint import InpaintAux, build_perceptual_net, random_boxes
from lssat.models.auxiliary.mae import TargetSpec, masked_mean, per_patch_loss, target_spec
from lssat.models.auxiliary.puzzle import shuffle_tiles
from lssat.models.decoder import MAEDecoder, default_decoder_size
from lssat.models.lssat import LSSATModel, count_parameters, flops_per_image
from lssat.models.masking import num_kept, patchify, random_masking, unpatchify
from lssat.models.recipe import load_recipe, preset_names

VIT = ("vit_tiny_patch16_224", dict(patch_size=8, depth=2, embed_dim=48, num_heads=3))
SWIN = ("swin_tiny_patch4_window7_224", dict(embed_dim=24, depths=(1, 1), num_heads=(1, 2), window_size=4))
SMALL_DECODER = {"decoder.width": 32, "decoder.depth": 1, "decoder.num_heads": 4}


def _model(recipe="ssat", backbone=VIT, overrides=None, num_outputs=3, seed=0) -> LSSATModel:
    torch.manual_seed(seed)
    r = load_recipe(recipe, {**SMALL_DECODER, **(overrides or {})}) if isinstance(recipe, str) else recipe
    return LSSATModel(backbone[0], num_outputs, r, 64, backbone_kwargs=backbone[1])


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 64, 64), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 3, (n,), generator=g)
    return images, labels


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _step(model, n=4, seed=0, **kwargs):
    images, labels = _batch(n)
    return model.training_losses(images, F.cross_entropy, labels, generator=_gen(seed), **kwargs)


def _value(t) -> float:
    return float(t.detach())


# ----------------------------------------------------------------------------- masking
def test_random_masking_ratio_and_indices():
    pm = random_masking(5, 64, 0.75, generator=_gen())
    assert pm.keep.shape == (5, 16) and pm.mask.shape == (5, 64) and pm.restore.shape == (5, 64)
    assert torch.equal(pm.mask.sum(1), torch.full((5,), 48.0))
    for b in range(5):
        assert torch.all(pm.mask[b, pm.keep[b]] == 0)  # kept patches are the unmasked ones
        assert len(set(pm.keep[b].tolist())) == 16
    shuffle = torch.argsort(pm.restore, dim=1)
    torch.testing.assert_close(shuffle[:, :16], pm.keep)  # restore inverts the shuffle
    assert num_kept(64, 0.9) == 6 and num_kept(4, 0.75) == 1 and num_kept(4, 0.01) == 3


def test_random_masking_is_seeded_and_varies_per_sample():
    a = random_masking(3, 64, 0.75, generator=_gen(7))
    b = random_masking(3, 64, 0.75, generator=_gen(7))
    c = random_masking(3, 64, 0.75, generator=_gen(8))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.keep, b.keep)
    assert not torch.equal(a.mask, c.mask)
    assert not torch.equal(a.mask[0], a.mask[1])
    with pytest.raises(ConfigError):
        random_masking(1, 64, 1.0)


def test_patchify_round_trip_and_order():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 4, 48)
    torch.testing.assert_close(unpatchify(p, 4, (2, 2), 3), x)
    # patch 1 is the top-right one; inside it, channel is the fastest index
    torch.testing.assert_close(p[0, 1, :3], x[0, :, 0, 4])
    from lssat.texture.targets import patchify as texture_patchify

    torch.testing.assert_close(texture_patchify(x, 4), p)  # texture targets share the layout


# ----------------------------------------------------------------------------- decoder and losses
def test_decoder_size_by_encoder_width():
    assert default_decoder_size(192) == (128, 2, 16) and default_decoder_size(384) == (128, 2, 16)
    assert default_decoder_size(768) == (512, 8, 16) and default_decoder_size(1280) == (512, 8, 16)
    dec = MAEDecoder(768, (4, 4), 1, {"rgb": 48})
    assert (dec.width, len(dec.blocks), dec.blocks[0].attn.num_heads) == (512, 8, 16)
    assert dec.blocks[0].mlp.fc1.out_features == 2048


def test_decoder_output_shapes_and_visible_token_order():
    dec = MAEDecoder(48, (4, 4), 1, {"rgb": 48, "ldp": 16 * 56}, width=32, depth=1, num_heads=4).eval()
    pm = random_masking(2, 16, 0.75, generator=_gen())
    feats = torch.randn(2, 1 + pm.num_keep, 48)
    out = dec(feats, pm.restore)
    assert out["rgb"].shape == (2, 16, 48) and out["ldp"].shape == (2, 16, 896)
    # feeding all 16 tokens in patch order without restore == restore with identity order
    full = torch.randn(2, 17, 48)
    ident = torch.arange(16).expand(2, -1)
    torch.testing.assert_close(dec.hidden(full, None), dec.hidden(full, ident))


@pytest.mark.parametrize("kind", ["regression", "index", "histogram"])
def test_reconstruction_loss_counts_masked_patches_only(kind):
    b, n, p, k = 2, 16, 4, 6
    spec = {"regression": TargetSpec("x", "regression", p * p), "index": TargetSpec("x", "index", p * p * k, k),
            "histogram": TargetSpec("x", "histogram", k, k)}[kind]
    g = _gen(1)
    pred = torch.randn(b, n, spec.width, generator=g)
    target = {"regression": torch.rand(b, n, p * p, generator=g),
              "index": torch.randint(0, k, (b, n, p * p), generator=g),
              "histogram": torch.softmax(torch.randn(b, n, k, generator=g), -1)}[kind]
    mask = random_masking(b, n, 0.75, generator=g).mask
    loss = masked_mean(per_patch_loss(pred, target, spec), mask)
    visible_changed = pred + 10.0 * torch.randn_like(pred) * (1 - mask).unsqueeze(-1)
    torch.testing.assert_close(masked_mean(per_patch_loss(visible_changed, target, spec), mask), loss)
    masked_changed = pred + 10.0 * torch.randn_like(pred) * mask.unsqueeze(-1)
    assert not torch.allclose(masked_mean(per_patch_loss(masked_changed, target, spec), mask), loss)


def test_loss_values_against_hand_computation():
    pred, target = torch.zeros(1, 2, 4), torch.ones(1, 2, 4)
    target[0, 1] = 3.0
    mask = torch.tensor([[0.0, 1.0]])
    spec = TargetSpec("x", "regression", 4)
    assert float(masked_mean(per_patch_loss(pred, target, spec), mask)) == pytest.approx(9.0)
    hist = TargetSpec("x", "histogram", 3, 3)
    t = torch.tensor([[[0.2, 0.3, 0.5]]])
    assert float(per_patch_loss(t.log(), t, hist)) == pytest.approx(0.0, abs=1e-6)  # KL(t || t) = 0
    assert target_spec("ldp", "index", 8, 56).width == 64 * 56
    assert target_spec("rgb", "histogram", 8, 56).width == 192  # rgb is always pixel regression


# ----------------------------------------------------------------------------- presets end to end
@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_trains_one_step_on_a_tiny_vit(preset):
    model = _model(preset)
    images, labels = _batch()
    out = model.training_losses(images, F.cross_entropy, labels, generator=_gen())
    assert math.isfinite(_value(out["loss"])) and out["logits"].shape == (4, 3)
    out["loss"].backward()
    # every parameter takes part (DDP needs no find_unused_parameters) and gets a finite gradient
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    head = model.head.fc.weight.grad
    assert head is not None and head.abs().sum() > 0
    r = model.recipe
    if r.uses_mae:
        assert {f"recon_{t}" for t in r.targets} <= set(out) and "recon_loss" in out
        stem = model.backbone.model.patch_embed.proj.weight.grad
        assert stem.abs().sum() > 0
    if "puzzle" in r.aux:
        assert 0.0 <= _value(out["puzzle_acc"]) <= 1.0
    if "inpaint" in r.aux:
        assert _value(out["inpaint_loss"]) > 0


@pytest.mark.parametrize("preset", [p for p in preset_names() if load_recipe(p).uses_mae and not load_recipe(p).fusion])
def test_mae_presets_train_on_a_hierarchical_backbone(preset):
    model = _model(preset, SWIN)
    assert model.backbone.masking == "token"
    images, labels = _batch()
    out = model.training_losses(images, F.cross_entropy, labels, generator=_gen())
    assert math.isfinite(_value(out["loss"]))
    out["loss"].backward()
    assert model.backbone.mask_token.grad.abs().sum() > 0
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("preset", ["supervised", "hmtl-puzzle", "hmtl-inpaint"])
def test_non_masking_presets_on_a_hierarchical_backbone_use_every_parameter(preset):
    model = _model(preset, SWIN)
    assert model.backbone.mask_token is None
    _step(model)["loss"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("encoding", ["index", "histogram"])
def test_categorical_texture_encodings_train(encoding):
    model = _model("lssat-ldp", overrides={"target_encoding": encoding})
    spec = model.mae.specs["ldp"]
    assert spec.kind == encoding and spec.classes == 56
    out = _step(model)
    assert math.isfinite(_value(out["loss"]))
    out["loss"].backward()


def test_texture_input_with_its_own_stem():
    model = _model("mldp", overrides={"texture_channels": "own"})
    assert set(model.backbone.stems) == {"ldp"}
    out = _step(model)
    out["loss"].backward()
    conv = model.backbone.stems["ldp"].proj
    assert conv.in_channels == 1 and conv.weight.grad.abs().sum() > 0


def test_inputs_and_targets_come_from_the_texture_module():
    from lssat import texture
    from lssat.texture.targets import encode_targets, ldp_code_space, scaled_map

    model = _model("rrlnrc", overrides={"target_encoding": "index"})
    images, _ = _batch()
    raw = model.prepare(images)
    targets = model.reconstruction_targets(raw)
    codes = texture.ldp(images, k=3)
    assert torch.equal(targets["ldp"], encode_targets(codes, ldp_code_space(3), "index", 8))
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    rgb = (images.float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    torch.testing.assert_close(targets["rgb"], patchify(rgb, 8))
    x, stem = model.image_input("ldp", raw)
    assert stem is None and x.shape == (4, 3, 64, 64)
    torch.testing.assert_close(x[:, :1], 2 * scaled_map(codes, ldp_code_space(3)).float() - 1)


# ----------------------------------------------------------------------------- step properties
def test_mask_ratio_is_respected_in_the_step():
    model = _model("ssat", overrides={"mask_ratio": 0.5})
    out = _step(model)
    assert torch.equal(out["mask"].sum(1), torch.full((4,), 32.0))


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_lambda_weighting(lam):
    model = _model("rrlnrc", overrides={"lambda_": lam})
    out = _step(model)
    recon = (out["recon_ldp"] + out["recon_rgb"]) / 2
    torch.testing.assert_close(out["recon_loss"], recon)
    torch.testing.assert_close(out["loss"], lam * out["task_loss"] + (1 - lam) * recon)


def test_supervised_and_hmtl_totals():
    out = _step(_model("supervised"))
    torch.testing.assert_close(out["loss"], out["task_loss"])
    model = _model("hmtl-puzzle", overrides={"hmtl_weights": {"task": 1.0, "puzzle": 0.5}})
    out = _step(model)
    torch.testing.assert_close(out["loss"], out["task_loss"] + 0.5 * out["puzzle_loss"])


def test_task_loss_function_and_targets_are_passed_through():
    seen = {}

    def task_loss(logits, batch):
        seen["batch"] = batch
        return logits.sum() * 0.0 + 2.5

    batch = {"label": torch.zeros(4, dtype=torch.long), "anything": "kept"}
    out = _model("ssat").training_losses(_batch()[0], task_loss, batch, generator=_gen())
    assert seen["batch"] is batch and _value(out["task_loss"]) == 2.5


def test_seeded_step_is_deterministic():
    model = _model("lssat-ldp")
    images, labels = _batch()
    a = model.training_losses(images, F.cross_entropy, labels, generator=_gen(5))
    b = model.training_losses(images, F.cross_entropy, labels, generator=_gen(5))
    c = model.training_losses(images, F.cross_entropy, labels, generator=_gen(6))
    assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["loss"], b["loss"])
    assert not torch.equal(a["mask"], c["mask"])


def test_uint8_and_float_inputs_agree_and_bad_inputs_fail():
    model = _model("supervised").eval()
    images, _ = _batch()
    torch.testing.assert_close(model(images), model(images.float()))
    with pytest.raises(InputError, match="64x64"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError):
        model(torch.zeros(3, 64, 64))


# ----------------------------------------------------------------------------- inference path
def _count_calls(modules):
    calls = []
    handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in modules]
    return calls, handles


def _all_modules(branches):
    return [m for b in branches for m in b.modules()]


@pytest.mark.parametrize("preset", ["ssat", "rrlnrc", "hmtl-puzzle", "hmtl-inpaint"])
def test_inference_never_runs_the_auxiliary_branches(preset):
    model = _model(preset).eval()
    watched = [m for m in (model.mae, model.puzzle, model.inpaint) if m is not None]
    calls, handles = _count_calls(_all_modules(watched))
    with torch.no_grad():
        logits = model(_batch()[0])
    assert logits.shape == (4, 3) and calls == []
    _step(model)
    assert calls  # the hooks do fire in training
    for h in handles:
        h.remove()


def test_fusion_uses_the_decoder_trunk_but_not_its_prediction_heads():
    model = _model("fusion").eval()
    assert model.head.in_dim == model.backbone.num_features + model.mae.decoder.width
    head_calls, h1 = _count_calls(model.mae.decoder.heads.values())
    trunk_calls, h2 = _count_calls(model.mae.decoder.blocks)
    images = _batch()[0]
    with torch.no_grad():
        before = model(images)
        fc2 = model.mae.decoder.blocks[0].mlp.fc2.weight
        fc2.add_(torch.randn(fc2.shape, generator=_gen(1)))
        after = model(images)
    assert head_calls == [] and len(trunk_calls) == 2
    assert not torch.allclose(before, after)  # the auxiliary feature reaches the logits
    for h in h1 + h2:
        h.remove()


def test_fusion_needs_a_token_dropping_backbone():
    with pytest.raises(ConfigError, match="token-dropping"):
        _model("fusion", SWIN)


# ----------------------------------------------------------------------------- HMTL auxiliaries
@pytest.mark.parametrize("grid", [2, 3])
def test_puzzle_shuffle_is_a_per_sample_permutation(grid):
    images = torch.rand(4, 3, 64, 64)
    shuffled, labels = shuffle_tiles(images, grid, _gen(3))
    t = grid * grid
    assert labels.shape == (4, t) and all(sorted(row.tolist()) == list(range(t)) for row in labels)
    side = 64 // grid
    for b in range(4):
        for pos in range(t):
            src = int(labels[b, pos])
            r, c, sr, sc = pos // grid, pos % grid, src // grid, src % grid
            torch.testing.assert_close(shuffled[b, :, r * side:(r + 1) * side, c * side:(c + 1) * side],
                                       images[b, :, sr * side:(sr + 1) * side, sc * side:(sc + 1) * side])
    if grid == 3:  # 64 = 3 * 21 + 1: the last row and column stay in place
        torch.testing.assert_close(shuffled[:, :, 63], images[:, :, 63])
        torch.testing.assert_close(shuffled[:, :, :, 63], images[:, :, :, 63])


def test_puzzle_task_head_can_see_the_unshuffled_image():
    model = _model("hmtl-puzzle", overrides={"puzzle.task_on_shuffled": False}).eval()  # HMTL's dropouts off
    images, labels = _batch()
    out = model.training_losses(images, F.cross_entropy, labels, generator=_gen())
    torch.testing.assert_close(out["logits"], model(images))  # the task pass is the clean image


def test_inpaint_boxes_and_fill():
    hole = random_boxes(64, 64, 64, 0.25, 0.5, generator=_gen())
    rows = hole.amax(dim=3).sum(dim=(1, 2))
    cols = hole.amax(dim=2).sum(dim=(1, 2))
    assert rows.min() >= 16 and rows.max() <= 32 and cols.min() >= 16 and cols.max() <= 32
    assert torch.equal(hole.sum(dim=(1, 2, 3)), rows * cols)  # one rectangle each
    aux = InpaintAux(48, 8, (8, 8))
    raw = torch.rand(2, 3, 64, 64) * 255
    holed, hole = aux.make_holes(raw, _gen())
    torch.testing.assert_close(holed * (1 - hole), raw * (1 - hole))
    feats = torch.randn(2, 64, 48)
    loss = aux.losses(feats, raw / 255, hole)
    pred = aux.reconstruct(feats)
    torch.testing.assert_close(loss["inpaint_l1"], ((pred - raw / 255).abs() * hole).sum() / (3 * hole.sum()))


def test_inpaint_perceptual_loss_from_a_local_file(tmp_path):
    path = tmp_path / "vgg16_features.pth"
    torch.save({f"features.{k}": v for k, v in build_perceptual_net().state_dict().items()}, path)
    model = _model("hmtl-inpaint", overrides={"inpaint.perceptual_weights": str(path)})
    out = _step(model, n=2)
    assert _value(out["inpaint_perceptual"]) > 0
    torch.testing.assert_close(out["inpaint_loss"], out["inpaint_l1"] + out["inpaint_perceptual"])
    assert not any("perceptual" in k for k in model.state_dict())  # frozen, not checkpointed
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="VGG16"):
        _model("hmtl-inpaint", overrides={"inpaint.perceptual_weights": str(bad)})


# ----------------------------------------------------------------------------- learning and cost
def test_tiny_model_overfits_reconstruction():
    torch.manual_seed(0)
    model = _model("ssat", overrides={"lambda_": 0.0})
    # two smooth images (upsampled 4x4 noise): structure to learn, unlike pixel noise
    coarse = torch.rand(2, 3, 4, 4, generator=_gen(2)) * 255
    images = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)
    labels = torch.tensor([0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(40):  # the same mask every step: pure memorisation of the masked patches
        out = model.training_losses(images, F.cross_entropy, labels, generator=_gen(0))
        opt.zero_grad()
        out["recon_loss"].backward()
        opt.step()
        losses.append(_value(out["recon_loss"]))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_reconstruction_images_for_visualisation():
    model = _model("rrlnrc", overrides={"target_encoding": "index"})
    out = _step(model, return_reconstructions=True)
    images = model.reconstruction_images(out["reconstructions"])
    assert images["rgb"].shape == (4, 3, 64, 64) and images["ldp"].shape == (4, 1, 64, 64)
    assert 0 <= float(images["ldp"].min()) and float(images["ldp"].max()) <= 1


def test_parameter_count_and_flops():
    model = _model("supervised")
    bb = model.backbone.model
    expected = sum(p.numel() for p in bb.parameters()) + 48 * 3 + 3
    assert count_parameters(model) == expected
    for p in bb.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 48 * 3 + 3
    flops = flops_per_image(model)
    # two blocks of 65 tokens, width 48: qkv + proj + mlp (4x) matmuls = 2 * 65 * 48 * 48 * (3 + 1 + 8) each
    blocks = 2 * (2 * 65 * 48 * 48 * 12 + 2 * 2 * 65 * 65 * 48)
    patch_embed = 2 * 64 * 48 * 3 * 8 * 8
    assert flops == blocks + patch_embed + 2 * 48 * 3
    assert model.training  # restored
