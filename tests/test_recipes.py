"""Recipe presets, overrides and validation (every invalid combination fails before training)."""

from __future__ import annotations

import pytest

from lssat.errors import ConfigError
from lssat.models.recipe import Recipe, load_recipe, preset_names

PRESETS = {  # preset -> (M/R/C label, aux, fusion)
    "supervised": ("CRGB/supervised", [], False),
    "ssat": ("MRGB/RRGB/CRGB", ["mae"], False),
    "lssat-ldp": ("MRGB/RLDP/CRGB", ["mae"], False),
    "lssat-lbp": ("MRGB/RLBP/CRGB", ["mae"], False),
    "mldp": ("MLDP/RRGB/CRGB", ["mae"], False),
    "rrlnrc": ("MRGB/R{LDP,RGB}/CRGB", ["mae"], False),
    "fusion": ("MRGB/RLDP/CRGB/fusion", ["mae"], True),
    "hmtl-puzzle": ("CRGB/puzzle", ["puzzle"], False),
    "hmtl-inpaint": ("CRGB/inpaint", ["inpaint"], False),
}


def test_shipped_presets_are_exactly_the_documented_ones():
    assert preset_names() == sorted(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_contents(name):
    recipe = load_recipe(name)
    label, aux, fusion = PRESETS[name]
    assert (recipe.name, recipe.label, recipe.aux, recipe.fusion) == (name, label, aux, fusion)
    # METHOD.md defaults hold in every preset
    assert recipe.lambda_ == 0.1 and recipe.mask_ratio == 0.75 and recipe.norm_pix is False
    assert (recipe.texture.lbp_P, recipe.texture.lbp_R, recipe.texture.lbp_method, recipe.texture.ldp_k) == (
        8, 1.0, "uniform", 3)


def test_texture_needs_follow_the_recipe():
    assert load_recipe("ssat").textures_needed() == set()
    assert load_recipe("rrlnrc").textures_needed() == {"ldp"}
    assert load_recipe("mldp").textures_needed() == {"ldp"}
    assert load_recipe("ssat", {"classify_input": "lbp"}).textures_needed() == {"lbp"}


def test_overrides_dotted_nested_and_from_strings():
    r = load_recipe("ssat", {"lambda": "0.5", "texture.lbp_P": "16", "targets": "[ldp, rgb]",
                             "decoder": {"width": 256}, "mask_ratio": 0.6, "name": "mine"})
    assert (r.name, r.lambda_, r.texture.lbp_P, r.targets, r.decoder.width, r.mask_ratio) == (
        "mine", 0.5, 16, ["ldp", "rgb"], 256, 0.6)
    assert r.texture.lbp_method == "uniform"  # untouched fields keep their preset value
    assert load_recipe("ssat", {"aux": "[]", "targets": "[]"}).aux == []


def test_recipe_from_a_yaml_file_and_round_trip(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("mask_input: rgb\ntargets: [lbp]\ntexture: {lbp_method: nri_uniform}\nlambda: 0.2\n")
    r = load_recipe(path)
    assert (r.name, r.targets, r.texture.lbp_method, r.lambda_) == ("my", ["lbp"], "nri_uniform", 0.2)
    assert load_recipe(r) == r
    assert load_recipe(str(path), {"fusion": True}).fusion is True


BAD = [
    ({"targets": []}, "at least one reconstruction target"),
    ({"aux": []}, "no 'mae'"),
    ({"aux": [], "targets": [], "fusion": True}, "fusion needs"),
    ({"mask_input": "hog"}, "mask_input"),
    ({"classify_input": "depth"}, "classify_input"),
    ({"targets": ["rgb", "hog"]}, "targets"),
    ({"targets": ["rgb", "rgb"]}, "twice"),
    ({"aux": ["mae", "rotation"]}, "aux"),
    ({"target_encoding": "onehot"}, "target_encoding"),
    ({"texture_channels": "stack"}, "texture_channels"),
    ({"lambda_": 1.5}, "lambda_"),
    ({"lambda_": -0.1}, "lambda_"),
    ({"lambda_": "high"}, "lambda_"),
    ({"mask_ratio": 0.0}, "mask_ratio"),
    ({"mask_ratio": 1.0}, "mask_ratio"),
    ({"texture.lbp_method": "var"}, "lbp_method"),
    ({"texture.lbp_P": 0}, "lbp_P"),
    ({"texture.ldp_k": 8}, "ldp_k"),
    ({"puzzle.grid": 4}, "puzzle.grid"),
    ({"inpaint.min_frac": 0.6}, "min_frac"),
    ({"inpaint.max_frac": 1.0}, "max_frac"),
    ({"decoder.width": 0}, "decoder.width"),
    ({"decoder.width": 100, "decoder.num_heads": 16}, "multiple"),
    ({"hmtl_weights": {"rotation": 1.0}}, "hmtl_weights"),
    ({"hmtl_weights": {"task": -1.0}}, "hmtl_weights.task"),
    ({"norm_pix": True, "targets": ["ldp"], "target_encoding": "index"}, "norm_pix"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"texture.radius": 2}, "unknown field 'texture.radius'"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[m for _, m in BAD])
def test_invalid_combinations_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe("ssat", overrides)


def test_invalid_direct_construction():
    with pytest.raises(ConfigError, match="fusion"):
        Recipe(aux=[], targets=[], fusion=True)
    assert Recipe().label == "MRGB/RRGB/CRGB"


def test_perceptual_weights_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe("hmtl-inpaint", {"inpaint.perceptual_weights": str(tmp_path / "vgg.pth")})
    (tmp_path / "vgg.pth").write_bytes(b"")
    r = load_recipe("hmtl-inpaint", {"inpaint.perceptual_weights": str(tmp_path / "vgg.pth")})
    assert r.inpaint.perceptual_weights == str(tmp_path / "vgg.pth")


def test_unknown_preset_and_bad_files(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_recipe("ssat2")
    assert "lssat-ldp" in str(err.value)  # the message lists the presets
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [rgb\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_recipe(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- rgb\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(listing)
