"""Method fidelity with the SSAT / MAE reference training (issue 11): from-scratch init, the
paper preset's augmentation (timm's), HMTL's puzzle loss, the decoder input of EVA-02 / BEiT, and
the optimiser and schedule through timm's factories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lssat.models.backbones import create_backbone, init_mae, sincos_pos_embed
from lssat.models.lssat import LSSATModel

VIT = {"patch_size": 8, "depth": 2, "embed_dim": 192, "num_heads": 3}


def _mae_sincos(dim: int, grid: int, prefix: int) -> np.ndarray:
    """models_mae's get_2d_sincos_pos_embed, copied (numpy)."""
    def one_d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(g, g), axis=0).reshape(2, 1, grid, grid)
    table = np.concatenate([one_d(dim // 2, mesh[0]), one_d(dim // 2, mesh[1])], axis=1)
    return np.concatenate([np.zeros((prefix, dim)), table], axis=0)


def test_init_mae_matches_mae_statistics():
    torch.manual_seed(0)
    model = LSSATModel("vit_tiny_patch16_224", 2, "ssat", 64, backbone_kwargs=VIT, init="mae")
    vit = model.backbone.model
    pos = vit.pos_embed
    assert not pos.requires_grad
    assert np.allclose(pos[0].double().numpy(), _mae_sincos(192, 8, 1), atol=1e-6)
    qkv = vit.blocks[0].attn.qkv.weight  # (3D, D): xavier std sqrt(2 / (D + 3D))
    assert qkv.std().item() == pytest.approx(math.sqrt(2 / (192 + 576)), rel=0.05)
    fc1 = vit.blocks[1].mlp.fc1.weight
    assert fc1.std().item() == pytest.approx(math.sqrt(2 / (192 + 768)), rel=0.05)
    proj = vit.patch_embed.proj.weight.flatten(1)  # a Linear over 3 * 8 * 8 inputs
    assert proj.std().item() == pytest.approx(math.sqrt(2 / (192 + 192)), rel=0.05)
    head = model.head.fc.weight  # (2, 192)
    assert head.abs().max().item() <= math.sqrt(6 / (192 + 2)) and head.std().item() > 0.05
    cls = []
    for _ in range(16):  # the CLS token has only 192 values: pool a few draws
        init_mae(model.backbone)
        cls.append(vit.cls_token.detach().flatten().clone())
    assert torch.cat(cls).std().item() == pytest.approx(0.02, rel=0.05)
    assert vit.blocks[0].attn.qkv.bias.abs().max().item() == 0.0
    # timm's init for comparison: trunc-normal 0.02 and a learned position embedding
    timm_vit = create_backbone("vit_tiny_patch16_224", 64, init="timm", **VIT).model
    assert timm_vit.pos_embed.requires_grad
    assert timm_vit.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_init_mae_other_families_and_pretrained(tmp_path):
    deit = create_backbone("deit_tiny_distilled_patch16_224", 32, init="mae", **VIT)
    assert deit.model.pos_embed.shape[1] == 2 + 16 and not deit.model.pos_embed.requires_grad
    assert torch.equal(deit.model.pos_embed[:, :2], torch.zeros(1, 2, 192))
    assert torch.allclose(deit.model.pos_embed, sincos_pos_embed(192, (4, 4), 2))
    cait = create_backbone("cait_xxs24_224", 32, init="mae", patch_size=8, depth=1, depth_token_only=1)
    assert torch.allclose(cait.model.pos_embed, sincos_pos_embed(192, (4, 4), 0))  # CaiT: no CLS position
    swin_kw = {"patch_size": 4, "window_size": 4, "depths": [1, 1], "embed_dim": 48, "num_heads": [2, 4]}
    torch.manual_seed(1)
    swin_mae = create_backbone("swin_tiny_patch4_window7_224", 32, init="mae", **swin_kw)
    torch.manual_seed(1)
    swin_timm = create_backbone("swin_tiny_patch4_window7_224", 32, init="timm", **swin_kw)
    for a, b in zip(swin_mae.state_dict().values(), swin_timm.state_dict().values()):
        assert torch.equal(a, b)  # SimMIM's Swin init is timm's: nothing changes
    # pretrained weights are never re-initialised
    src = create_backbone("vit_tiny_patch16_224", 32, **VIT)
    path = tmp_path / "w.pth"
    torch.save(src.model.state_dict(), path)
    loaded = create_backbone("vit_tiny_patch16_224", 32, weights=path, init="mae", **VIT)
    assert torch.equal(loaded.model.blocks[0].attn.qkv.weight, src.model.blocks[0].attn.qkv.weight)
    assert torch.equal(loaded.model.pos_embed, src.model.pos_embed) and loaded.model.pos_embed.requires_grad


def test_hmtl_puzzle_loss_sums_tile_cross_entropies_by_hand():
    from lssat.models.auxiliary.puzzle import PuzzleAux
    from lssat.models.recipe import load_recipe

    r = load_recipe("hmtl-puzzle")
    assert (r.puzzle.grid, r.puzzle.reduction, r.puzzle.dropout, r.puzzle.task_dropout) == (3, "sum", 0.2, 0.3)
    torch.manual_seed(0)
    aux = PuzzleAux(6, 3, "sum", dropout=0.2).eval()  # eval: no dropout in the hand computation
    pooled = torch.randn(2, 6)
    labels = torch.stack([torch.randperm(9) for _ in range(2)])
    logits = (pooled @ aux.heads.weight.T + aux.heads.bias).reshape(2, 9, 9)
    expected = 0.0
    for pos in range(9):  # one softmax head per tile position, weight 1 each, batch-mean cross-entropy
        ce = [-(logits[b, pos, labels[b, pos]] - torch.logsumexp(logits[b, pos], 0)) for b in range(2)]
        expected += sum(ce) / 2
    got = aux.losses(pooled, labels)["puzzle_loss"]
    torch.testing.assert_close(got, expected)
    aux.reduction = "mean"
    torch.testing.assert_close(aux.losses(pooled, labels)["puzzle_loss"], expected / 9)
    model = LSSATModel("vit_tiny_patch16_224", 3, r, 32, backbone_kwargs={**VIT, "embed_dim": 48})
    assert model.head.drop.p == 0.3 and model.puzzle.drop.p == 0.2 and model.puzzle.tiles == 9


def _paper_augment():
    from lssat.config import load_config

    return load_config(["synthetic-deepfake", "trainer/paper"]).data.augment


def test_paper_augmentation_is_timms_create_transform():
    import random

    from PIL import Image
    from timm.data import create_transform
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing
    from torchvision.transforms import v2

    from lssat.data.transforms import TimmPhotometric, train_transform

    aug = _paper_augment()
    assert (aug.aa, aug.reprob, aug.remode, aug.recount, aug.eval_crop_fraction) == (
        "rand-m9-mstd0.5-inc1", 0.25, "pixel", 1, 0.875)
    size = 32
    ops = train_transform(size, aug).transforms
    assert not any(isinstance(op, v2.ColorJitter) for op in ops)  # timm: no jitter beside auto-augment
    ours = next(op for op in ops if isinstance(op, TimmPhotometric))
    _, secondary, final = create_transform(size, is_training=True, auto_augment=aug.aa, color_jitter=0.4,
                                           re_prob=aug.reprob, re_mode=aug.remode, re_count=aug.recount,
                                           interpolation="bicubic", separate=True)
    (ra,), (theirs_ra,) = ours.augment, secondary.transforms
    assert isinstance(ra, RandAugment) and ra.num_layers == theirs_ra.num_layers == 2
    assert [(o.name, o.magnitude, o.magnitude_std, o.prob, o.hparams) for o in ra.ops] == \
        [(o.name, o.magnitude, o.magnitude_std, o.prob, o.hparams) for o in theirs_ra.ops]
    assert ra.ops[0].magnitude == 9 and ra.ops[0].magnitude_std == 0.5 and "RotateIncreasing" not in \
        [o.name for o in ra.ops] and "SolarizeIncreasing" in [o.name for o in ra.ops]  # inc1: increasing ops
    erase = final.transforms[-1]
    assert isinstance(ours.erase, RandomErasing) and isinstance(erase, RandomErasing)
    assert {k: v for k, v in vars(ours.erase).items()} == {k: v for k, v in vars(erase).items()}
    poster = next(o for o in ra.ops if o.name == "PosterizeIncreasing")  # m9 + noise reaches 0 bits,
    black = poster.aug_fn(Image.new("RGB", (4, 4), (200, 90, 30)), 0)  # which Pillow 13 refuses
    assert np.asarray(black).max() == 0
    # a fixed seed: the same ops, magnitudes and pixels as timm's own transform on a PIL image
    g = torch.Generator().manual_seed(3)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
    no_erase = TimmPhotometric(size, type(aug)(aa=aug.aa))
    for seed in range(4):
        torch.manual_seed(seed)
        got = no_erase(image)
        torch.manual_seed(seed)
        inner = int(torch.randint(0, 2**31 - 1, ()))
        random.seed(inner)
        np.random.seed(inner)
        want = np.asarray(secondary(Image.fromarray(image.permute(1, 2, 0).numpy())))
        assert np.array_equal(got.permute(1, 2, 0).numpy(), want)


def test_pixel_erasing_keeps_texture_in_the_box_and_uint8_elsewhere():
    from lssat import texture
    from lssat.data.transforms import AugmentConfig, TimmPhotometric

    flat = torch.full((3, 32, 32), 120, dtype=torch.uint8)
    torch.manual_seed(0)
    pixel = TimmPhotometric(32, AugmentConfig(reprob=1.0, remode="pixel"))(flat)
    box = pixel != flat
    assert pixel.dtype == torch.uint8 and box.any() and box.float().mean() < 0.5
    assert torch.equal(pixel[~box], flat[~box])  # the rest of the image is unchanged, bit for bit
    def interior_codes(image: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        """LDP codes at the pixels whose 3x3 neighbourhood lies inside the erased box (not the border)."""
        out = torch.nn.functional.pad((~box.any(0)).float()[None, None], (1, 1, 1, 1), value=1.0)
        outside = torch.nn.functional.max_pool2d(out, 3, 1)[0, 0] > 0
        return texture.ldp(image[None].float(), k=3)[0, 0][~outside]

    assert interior_codes(pixel, box).unique().numel() > 10  # noise: an LDP target with texture
    torch.manual_seed(0)
    const = TimmPhotometric(32, AugmentConfig(reprob=1.0, remode="const"))(flat)
    const_box = const != flat
    assert const_box.any() and interior_codes(const, const_box).unique().numel() == 1  # a flat box: one code


def test_eva_decoder_reads_normalised_tokens():
    model = LSSATModel("eva02_tiny_patch14_224", 2, "ssat", 32, backbone_kwargs={**VIT, "embed_dim": 48})
    bb = model.backbone
    assert isinstance(bb.model.norm, torch.nn.Identity)  # timm keeps the final norm as fc_norm for pooling
    feats = bb.encode(bb.embed(torch.randn(2, 3, 32, 32))) * 5 + 3
    tokens = bb.decoder_input(feats)
    torch.testing.assert_close(tokens, bb.model.fc_norm(feats))
    assert tokens.mean(-1).abs().max() < 1e-4 and (tokens.std(-1, unbiased=False) - 1).abs().max() < 1e-2
    vit = create_backbone("vit_tiny_patch16_224", 32, **{**VIT, "embed_dim": 48})
    x = torch.randn(2, 5, 48)
    assert torch.equal(vit.decoder_input(x), x)  # a ViT's encode already ends with its norm


def test_finetune_stage_layer_decay_and_drop_path():
    from types import SimpleNamespace

    from timm.layers import DropPath

    from lssat.config import load_config
    from lssat.engine import optim
    from lssat.engine.module import LSSATModule
    from lssat.engine.run import backbone_kwargs
    from lssat.tasks import build_task

    cfg = load_config("synthetic-deepfake", ["trainer.scheme=pretrain-finetune", "trainer.pretrain_epochs=1",
                                             "trainer.epochs=2"])
    kwargs = backbone_kwargs(cfg)
    assert kwargs["drop_path_rate"] == 0.1 and cfg.trainer.finetune_layer_decay == 0.75
    torch.manual_seed(0)
    model = LSSATModel("vit_tiny_patch16_224", 1, "ssat", 32, backbone_kwargs={**VIT, "embed_dim": 48, **kwargs})
    opt = optim.build_optimizer(model, 1e-3, 0.05, (0.9, 0.999), layer_decay=0.75)
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    assert scale["head.fc.weight"] == scale["mae.decoder.norm.weight"] == 1.0  # heads, decoder: top layer
    assert scale["backbone.model.blocks.1.attn.qkv.weight"] == pytest.approx(0.75)
    assert scale["backbone.model.blocks.0.attn.qkv.weight"] == pytest.approx(0.75 ** 2)
    assert scale["backbone.model.patch_embed.proj.weight"] == pytest.approx(0.75 ** 3)
    for group in opt.param_groups:
        group["lssat_lr_scale"], group["lr_scale"] = group["lr_scale"], 1.0
    sched = optim.build_scheduler(opt, optim.segments_for(20, 10, 0, 2, boundary=10), 0.0)
    module = LSSATModule(model, build_task("deepfake"), cfg.trainer)
    module._trainer = SimpleNamespace(optimizers=[opt], lr_scheduler_configs=[SimpleNamespace(scheduler=sched)],
                                      global_step=12)
    drops = [m for m in model.modules() if isinstance(m, DropPath)]
    assert drops and max(m.drop_prob for m in drops) == pytest.approx(0.1)
    module._fine_tuning(False)  # pre-training: no drop path, every layer at the full lr
    assert all(m.drop_prob == 0.0 for m in drops) and all(g["lr_scale"] == 1.0 for g in opt.param_groups)
    module._fine_tuning(True)
    assert max(m.drop_prob for m in drops) == pytest.approx(0.1)
    lr = {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr["backbone.model.blocks.0.attn.qkv.weight"] == pytest.approx(sched.lr_at(12) * 0.75 ** 2)
    assert lr["head.fc.weight"] == pytest.approx(sched.lr_at(12))
