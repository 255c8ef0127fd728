"""Backbone adapters: every supported family, tiny configurations at 64x64, masked and unmasked."""

from __future__ import annotations

import pytest
import torch

from lssat.errors import ConfigError, InputError
from lssat.models.backbones import FAMILIES, create_backbone, family_of
from lssat.models.masking import mask_to_image, random_masking

VIT = dict(patch_size=8, depth=2, embed_dim=48, num_heads=3)
SWIN = dict(embed_dim=24, depths=(1, 1), num_heads=(1, 2), window_size=4)

# one tiny configuration per supported family (and variant with its own token layout)
TINY = {
    "vit": ("vit_tiny_patch16_224", VIT),
    "deit": ("deit_tiny_patch16_224", VIT),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", VIT),
    "eva": ("eva02_tiny_patch14_224", VIT),
    "cait": ("cait_xxs24_224", dict(VIT, depth_token_only=1)),
    "swin": ("swin_tiny_patch4_window7_224", SWIN),
    "swinv2": ("swinv2_tiny_window8_256", SWIN),
    "convnext": ("convnext_atto", dict(patch_size=1, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))),
    "beit": ("beit_base_patch16_224", VIT),
}
EXPECTED = {  # masking style, masking-grid patch size, prefix tokens
    "vit": ("drop", 8, 1), "deit": ("drop", 8, 1), "deit_distilled": ("drop", 8, 2),
    "eva": ("drop", 8, 1), "cait": ("drop", 8, 1), "swin": ("token", 8, 0),
    "swinv2": ("token", 8, 0), "convnext": ("token", 8, 0), "beit": ("token", 8, 1),
}


def _make(key: str):
    torch.manual_seed(0)
    name, kwargs = TINY[key]
    return create_backbone(name, 64, **kwargs)


def _stem_conv_grad(adapter) -> torch.Tensor:
    conv = next(m for m in adapter.stem_module().modules() if isinstance(m, torch.nn.Conv2d))
    return conv.weight.grad


def test_every_family_has_a_tiny_configuration():
    assert {family_of(name).name for name, _ in TINY.values()} == {f.name for f in FAMILIES}


@pytest.mark.parametrize("key", sorted(TINY))
def test_masked_and_unmasked_pass_with_gradients(key):
    bb = _make(key)
    masking, patch, prefix = EXPECTED[key]
    assert (bb.masking, bb.patch_size, bb.num_prefix_tokens, bb.grid_size) == (masking, patch, prefix, (8, 8))
    x = torch.randn(2, 3, 64, 64)

    feats = bb.encode(bb.embed(x))
    pooled = bb.pool(feats)
    assert pooled.shape == (2, bb.num_features)
    assert bb.patch_features(feats).shape == (2, 64, bb.num_features)
    # a random projection: the plain sum of a LayerNorm output has no gradient
    (pooled * torch.randn_like(pooled)).sum().backward()
    grad = _stem_conv_grad(bb)
    assert grad is not None and grad.abs().sum() > 0
    bb.zero_grad()

    pm = random_masking(2, bb.num_patches, 0.75, generator=torch.Generator().manual_seed(1))
    if bb.masking == "drop":
        masked = bb.encode(bb.embed(x), keep=pm.keep)
        assert masked.shape == (2, prefix + 16, bb.num_features)
    else:
        masked = bb.encode(bb.embed(x), mask=pm.mask)
        assert bb.patch_features(masked).shape == (2, 64, bb.num_features)
    (masked * torch.randn_like(masked)).sum().backward()
    grad = _stem_conv_grad(bb)
    assert grad is not None and grad.abs().sum() > 0
    if bb.masking == "token":
        assert bb.mask_token.grad is not None and bb.mask_token.grad.abs().sum() > 0


@pytest.mark.parametrize("key", sorted(TINY))
def test_masked_pass_ignores_the_content_of_masked_patches(key):
    bb = _make(key).eval()
    pm = random_masking(2, bb.num_patches, 0.75, generator=torch.Generator().manual_seed(2))
    x = torch.randn(2, 3, 64, 64)
    pixels = mask_to_image(pm.mask, bb.grid_size, bb.patch_size)
    y = x + 5.0 * torch.randn_like(x) * pixels  # change only masked pixels
    kwargs = {"keep": pm.keep} if bb.masking == "drop" else {"mask": pm.mask}
    with torch.no_grad():
        a = bb.encode(bb.embed(x), **kwargs)
        b = bb.encode(bb.embed(y), **kwargs)
        full_a, full_b = bb.encode(bb.embed(x)), bb.encode(bb.embed(y))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(full_a, full_b)


@pytest.mark.parametrize("key", [k for k in sorted(TINY) if EXPECTED[k][0] == "drop"])
def test_token_dropping_keeps_positions_with_the_tokens(key):
    # keeping every patch in a shuffled order must give the unmasked features, shuffled the same way:
    # position embeddings (absolute or rotary) travel with their tokens
    bb = _make(key).eval()
    p = bb.num_prefix_tokens
    perm = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(s)) for s in (3, 4)])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        full = bb.encode(bb.embed(x))
        shuffled = bb.encode(bb.embed(x), keep=perm)
    torch.testing.assert_close(shuffled[:, :p], full[:, :p], atol=1e-5, rtol=1e-4)
    expected = torch.gather(full[:, p:], 1, perm.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
    torch.testing.assert_close(shuffled[:, p:], expected, atol=1e-5, rtol=1e-4)


def test_pooled_feature_is_the_cls_token_for_vit_and_a_mean_for_swin():
    vit = _make("vit").eval()
    feats = vit.encode(vit.embed(torch.randn(2, 3, 64, 64)))
    torch.testing.assert_close(vit.pool(feats), feats[:, 0])
    swin = _make("swin").eval()
    feats = swin.encode(swin.embed(torch.randn(2, 3, 64, 64)))
    torch.testing.assert_close(swin.pool(feats), feats.mean(dim=(1, 2)))


@pytest.mark.parametrize("key", ["vit", "swin", "convnext"])
def test_own_one_channel_stem(key):
    bb = _make(key)
    bb.add_stem("ldp", 1)
    grey = torch.rand(2, 1, 64, 64)
    own = bb.embed(grey, stem="ldp")
    shared = bb.embed(grey.expand(-1, 3, -1, -1))
    # initialised so that a 1-channel image gives what its 3-channel replica gives the shared stem
    torch.testing.assert_close(own, shared, atol=1e-5, rtol=1e-4)
    pooled = bb.pool(bb.encode(own))
    (pooled * torch.randn_like(pooled)).sum().backward()
    conv = next(m for m in bb.stems["ldp"].modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.in_channels == 1 and conv.weight.grad.abs().sum() > 0


def test_wrong_masking_argument_is_an_input_error():
    vit, swin = _make("vit"), _make("swin")
    pm = random_masking(1, 64, 0.75)
    with pytest.raises(InputError):
        vit.encode(vit.embed(torch.randn(1, 3, 64, 64)), mask=pm.mask)
    with pytest.raises(InputError):
        swin.encode(swin.embed(torch.randn(1, 3, 64, 64)), keep=pm.keep)


def test_unsupported_family_lists_the_supported_ones():
    with pytest.raises(ConfigError) as err:
        create_backbone("resnet18", 64)
    message = str(err.value)
    assert "resnet18" in message
    for fam in FAMILIES:
        assert fam.name in message


def test_unsupported_class_inside_a_family_prefix():
    with pytest.raises(ConfigError, match="VisionTransformerRelPos"):
        create_backbone("vit_relpos_small_patch16_224", 64, patch_size=16, depth=1, embed_dim=48, num_heads=3)


def test_unknown_model_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="vit_nonexistent"):
        create_backbone("vit_nonexistent_patch16_224", 64)
    with pytest.raises(ConfigError, match="num_classes"):
        create_backbone("vit_tiny_patch16_224", 64, num_classes=10)
    with pytest.raises(ConfigError):
        create_backbone("vit_tiny_patch16_224", 64, not_an_option=3)


def test_pretrained_needs_a_local_file_or_explicit_hub(tmp_path):
    with pytest.raises(ConfigError, match="allow_hub"):
        create_backbone("vit_tiny_patch16_224", 64, pretrained=True, **VIT)
    with pytest.raises(ConfigError, match="not found"):
        create_backbone("vit_tiny_patch16_224", 64, weights=tmp_path / "missing.pth", **VIT)


def test_weights_from_a_local_file(tmp_path):
    source = _make("vit")
    path = tmp_path / "tiny.pth"
    torch.save(source.model.state_dict(), path)
    torch.manual_seed(123)
    loaded = create_backbone("vit_tiny_patch16_224", 64, weights=path, **VIT)
    for (name, a), b in zip(source.model.state_dict().items(), loaded.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_hierarchical_grid_is_the_final_stride():
    bb = create_backbone("convnext_atto", 64, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
    assert (bb.patch_size, bb.grid_size, bb.mask_factor) == (32, (2, 2), 8)
    with pytest.raises(ConfigError, match="multiple"):
        create_backbone("convnext_atto", 48, depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))


@pytest.mark.parametrize("key", [k for k in sorted(TINY) if EXPECTED[k][0] == "token"])
def test_stacked_unmasked_and_masked_pass_equals_the_two_passes(key):
    # the SSAT step runs a mask-token encoder's two passes as one stacked batch: same features
    bb = _make(key).eval()
    pm = random_masking(3, bb.num_patches, 0.75, generator=torch.Generator().manual_seed(3))
    tokens = bb.embed(torch.randn(3, 3, 64, 64))
    with torch.no_grad():
        full, masked = bb.encode_unmasked_and_masked(tokens, pm.mask)
        torch.testing.assert_close(full, bb.encode(tokens), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(masked, bb.encode(tokens, mask=pm.mask), rtol=1e-5, atol=1e-5)
