"""The one config engine (`lssat.confkit`): merge and dotted-key semantics, "did you mean" in every
unknown-key error (run config, recipe, data.clip, data.sbi, benchmark spec), timm's key names as
aliases, and `lssat train --help` listing presets and top-level keys."""

from __future__ import annotations

import pytest
import yaml

from lssat.bench.runner import check_configs
from lssat.bench.spec import load_spec
from lssat.cli import main
from lssat.confkit import ALIASES, apply_aliases, merge, set_dotted, unknown_key_error
from lssat.config import PRESET_GROUPS, RunConfig, config_from_dict, load_config, preset_names
from lssat.data.clips import ClipConfig
from lssat.data.sbi import SBIConfig
from lssat.errors import ConfigError
from lssat.models.recipe import load_recipe

SPEC = {
    "name": "tiny",
    "base": {"data": {"image_size": 32}},
    "backbones": {"vit": {"model": {"backbone": "vit_tiny_patch16_224", "kwargs": {"depth": 1}}}},
    "tasks": {"expression": {"kind": "expression", "config": {"data": {"synthetic": {"task": "expression"}}}}},
    "recipes": ["supervised"],
    "seeds": [0],
}


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- merge, set_dotted

def test_merge_merges_mappings_key_by_key_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": {"p": 1}}, "b": [1, 2], "kwargs": {"depth": 1, "dim": 8}, "c": 1}
    top = {"a": {"y": {"q": 2}}, "b": [3], "kwargs": {"depth": 2}, "c": {"now": "a mapping"}}
    out = merge(base, top)
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": [3], "kwargs": {"depth": 2, "dim": 8},
                   "c": {"now": "a mapping"}}
    assert merge(base, top, replace=("kwargs",))["kwargs"] == {"depth": 2}  # replaced whole, at any depth
    assert merge({"m": {"kwargs": {"a": 1}}}, {"m": {"kwargs": {"b": 2}}}, replace=("kwargs",)) == {"m": {"kwargs": {"b": 2}}}
    assert base["a"] == {"x": 1, "y": {"p": 1}} and base["b"] == [1, 2]  # inputs untouched
    out["b"].append(9)
    assert top["b"] == [3]  # the result shares no list with `top`


def test_set_dotted_creates_mappings_and_refuses_to_go_through_a_value():
    tree = {"a": {"b": 1}, "n": None}
    set_dotted(tree, "a.c.d", 2)
    set_dotted(tree, ["n", "x"], 3)  # a null on the way becomes a mapping
    set_dotted(tree, "top", 4)
    assert tree == {"a": {"b": 1, "c": {"d": 2}}, "n": {"x": 3}, "top": 4}
    with pytest.raises(ConfigError, match=r"^override a\.b\.z: 'b' is not a mapping$"):
        set_dotted(tree, "a.b.z", 5)


def test_unknown_key_error_suggests_the_closest_key_and_keeps_the_rest_of_the_path():
    err = unknown_key_error("", "trainr.epochs", ["task", "trainer"])
    assert str(err) == "unknown config key 'trainr.epochs'; valid keys: task, trainer; did you mean 'trainer.epochs'?"
    err = unknown_key_error("", "zzz", ["task", "trainer"], noun="field", label="recipe x")
    assert str(err) == "recipe x: unknown field 'zzz'; valid fields: task, trainer"  # nothing close: no guess


# --------------------------------------------------------------------------- did you mean, everywhere

def test_run_config_typo_suggests_the_key():
    with pytest.raises(ConfigError) as info:
        load_config("smoke", ["trainer.epoch=2"])
    assert one_line(info).startswith("unknown config key 'trainer.epoch'; valid keys under trainer: epochs, ")
    assert one_line(info).endswith("; did you mean 'trainer.epochs'?")
    with pytest.raises(ConfigError, match=r"did you mean 'data\.batch_size'\?$"):
        config_from_dict({"data": {"synthetic": {"task": "expression"}, "batchsize": 8}})


def test_recipe_typo_suggests_the_field():
    with pytest.raises(ConfigError, match=r"^recipe ssat: unknown field 'mask_ration'; valid fields: .*"
                                          r"did you mean 'mask_ratio'\?$"):
        load_recipe("ssat", {"mask_ration": 0.5})
    with pytest.raises(ConfigError, match=r"unknown field 'texture\.lbp_p'; valid fields under texture: .*"
                                          r"did you mean 'texture\.lbp_P'\?$"):
        load_recipe("ssat", {"texture.lbp_p": 16})


@pytest.mark.parametrize("build, typo, expected", [
    (ClipConfig.from_value, {"frame": 4}, "unknown config key 'data.clip.frame'; valid keys under data.clip: frames, "
                                          "stride, eval_clips; did you mean 'data.clip.frames'?"),
    (SBIConfig.from_dict, {"enabled": True, "probabilty": 0.5},
     "unknown config key 'data.sbi.probabilty'; valid keys under data.sbi: enabled, probability, real_only; "
     "did you mean 'data.sbi.probability'?"),
])
def test_data_clip_and_sbi_typos_suggest_the_key(build, typo, expected):
    with pytest.raises(ConfigError) as info:
        build(typo)
    assert one_line(info) == expected


def test_data_sbi_typo_through_an_override_too():
    with pytest.raises(ConfigError, match=r"did you mean 'data\.sbi\.enabled'\?$"):
        load_config("smoke", ["data.sbi.enable=true"])


def test_bench_spec_typos_suggest_the_key():
    with pytest.raises(ConfigError, match=r"^benchmark spec spec: unknown key 'seed'; valid keys: .*did you mean 'seeds'\?$"):
        load_spec({**SPEC, "seed": [0]})
    with pytest.raises(ConfigError, match=r"unknown key 'runner\.thread'; .*did you mean 'runner\.threads'\?$"):
        load_spec({**SPEC, "runner": {"thread": 1}})
    spec = load_spec(SPEC, overrides=["trainer.epoch=1"])  # the spec format does not know the engine's keys
    with pytest.raises(ConfigError) as info:
        check_configs(spec.cells())  # ... the engine does, before any cell runs
    assert one_line(info).startswith("cell vit_expression_supervised_s0: unknown config key 'trainer.epoch'")
    assert one_line(info).endswith("did you mean 'trainer.epochs'?")


# --------------------------------------------------------------------------- timm's key names

def test_alias_table_names_real_keys():
    for alias, target in ALIASES.items():
        load_config("smoke", [f"{target}={'0.9' if 'crop' in target else '0.2'}"])  # each target is a key
        assert alias != target


def test_timm_names_give_the_same_config_and_run_id(tmp_path):
    internal = load_config("smoke", ["task.label_smoothing=0.2", "data.augment.eval_crop_fraction=0.875"])
    timm = load_config("smoke", ["task.smoothing=0.2", "data.augment.crop_pct=0.875"])
    assert internal.task.label_smoothing == 0.2 and internal.data.augment.eval_crop_fraction == 0.875
    assert timm.to_dict() == internal.to_dict() and timm.run_id == internal.run_id
    assert internal.run_id != load_config("smoke").run_id
    path = tmp_path / "timm.yaml"  # a YAML file over a preset that sets the internal name itself
    path.write_text(yaml.safe_dump({"defaults": ["smoke", "trainer/paper"], "task": {"smoothing": 0.2},
                                    "data": {"augment": {"crop_pct": 0.875}}}))
    from_file = load_config(path)
    assert from_file.task.label_smoothing == 0.2 and from_file.data.augment.eval_crop_fraction == 0.875
    assert from_file.run_id == load_config(["smoke", "trainer/paper"], ["task.label_smoothing=0.2",
                                                                       "data.augment.eval_crop_fraction=0.875"]).run_id
    tree = internal.to_dict()
    tree["task"]["smoothing"] = tree["task"].pop("label_smoothing")
    assert config_from_dict(tree).run_id == internal.run_id  # a plain mapping (a run folder's config.yaml)


def test_timm_names_in_a_bench_spec_give_the_same_cells():
    spec = {**SPEC, "base": {"data": {"image_size": 32, "augment": {"crop_pct": 0.9}}, "task": {"smoothing": 0.0}}}
    internal = {**SPEC, "base": {"data": {"image_size": 32, "augment": {"eval_crop_fraction": 0.9}},
                                 "task": {"label_smoothing": 0.0}}}
    assert [c.cell_id for c in load_spec(spec).cells()] == [c.cell_id for c in load_spec(internal).cells()]
    assert [c.cell_id for c in load_spec(SPEC, overrides=["task.smoothing=0.0"]).cells()] == \
        [c.cell_id for c in load_spec(SPEC, overrides=["task.label_smoothing=0.0"]).cells()]


def test_both_names_given_is_an_error_naming_both(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({"defaults": ["smoke"], "task": {"smoothing": 0.2, "label_smoothing": 0.1}}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert one_line(info) == (f"config {path}: task.smoothing and task.label_smoothing both given (task.smoothing is "
                              "another name for task.label_smoothing); keep one")
    with pytest.raises(ConfigError, match="overrides data.augment.crop_pct and data.augment.eval_crop_fraction both"):
        load_config("smoke", ["data.augment.crop_pct=0.9", "data.augment.eval_crop_fraction=0.8"])
    with pytest.raises(ConfigError, match="task.smoothing and task.label_smoothing both given"):
        apply_aliases({"task": {"smoothing": 0.1, "label_smoothing": 0.1}}, "config")
    with pytest.raises(ConfigError, match="tasks.expression.config: task.smoothing and task.label_smoothing"):
        load_spec({**SPEC, "tasks": {"expression": {"kind": "expression", "config": {
            "data": {"synthetic": {"task": "expression"}}, "task": {"smoothing": 0.1, "label_smoothing": 0.0}}}}})


# --------------------------------------------------------------------------- the command line

def test_train_help_lists_presets_and_top_level_keys(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    keys_part = out[out.index("top-level keys"):]
    for key in ("task", "data", "model", "recipe", "trainer", "name", "output_dir"):
        assert any(line.split()[:1] == [key] for line in keys_part.splitlines()), key
    assert set(RunConfig.__dataclass_fields__) == {"task", "data", "model", "recipe", "trainer", "name", "output_dir"}
    for group in PRESET_GROUPS:
        name = preset_names(group)[0]
        assert (name if group == "train" else f"{group}/{name}") in out
    assert "smoke" in out and "task.smoothing = task.label_smoothing" in out


def test_cli_typo_exits_2_with_one_line(capsys):
    assert main(["train", "-c", "smoke", "trainer.max_step=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lssat train: error: unknown config key 'trainer.max_step'")
    assert err.rstrip().endswith("did you mean 'trainer.max_steps'?")
