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
