"""The typed run config: presets, merging, dotted overrides with type coercion, validation errors,
the resolved config round trip and the run id."""

from __future__ import annotations

import pytest
import yaml

from lssat.config import (PRESET_GROUPS, RunConfig, TrainerConfig, coerce_text, load_config, preset_names,
                          save_config)
from lssat.data.settings import DataConfig
from lssat.engine.run import resolve_precision
from lssat.errors import ConfigError
from lssat.models.recipe import preset_names as recipe_presets

SMOKE = "smoke"


def error_of(sources, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(sources, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_every_preset_group_is_shipped_and_loads():
    for group in PRESET_GROUPS:
        assert preset_names(group), f"no presets in configs/{group}"
    for name in preset_names("train"):
        overrides = ["data.index=/data/index.jsonl"] if name in ("ffpp", "celeba", "affectnet") else []
        cfg = load_config(name, overrides)
        assert isinstance(cfg, RunConfig) and isinstance(cfg.data, DataConfig)
        assert cfg.model.img_size == cfg.data.image_size
    for group in ("tasks", "backbones", "trainer"):
        for name in preset_names(group):
            overrides = {"tasks": [f"data.synthetic.task={name}"], "trainer": [],
                         "backbones": ["data.image_size=32", "model.img_size=32"]}[group]
            cfg = load_config([SMOKE, f"{group}/{name}"], overrides)
            assert isinstance(cfg, RunConfig)


def test_smoke_preset_merges_its_defaults_and_overrides_win():
    cfg = load_config(SMOKE)
    assert cfg.model.kwargs == {"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}  # backbones/vit-test
    assert cfg.trainer.max_steps == 4 and cfg.data.num_workers == 0  # trainer/smoke
    assert cfg.recipe.name == "lssat-ldp" and cfg.recipe.overrides["decoder"]["width"] == 32
    cfg = load_config(SMOKE, ["trainer.epochs=3", "trainer.lr=0.01", "trainer.betas=[0.8, 0.9]",
                              "data.batch_size=4", "recipe=ssat", "recipe.overrides.lambda_=0.3",
                              "model.kwargs.depth=2", "trainer.devices=[0]", "trainer.gradient_clip=null",
                              "data.synthetic.options.dark_fraction=0.5", "data.augment.crop_scale=[0.5, 1]"])
    assert cfg.trainer.epochs == 3 and isinstance(cfg.trainer.epochs, int)
    assert cfg.trainer.lr == 0.01 and cfg.trainer.betas == (0.8, 0.9)
    assert cfg.data.batch_size == 4 and cfg.recipe.name == "ssat"
    assert cfg.build_recipe().lambda_ == 0.3
    assert cfg.model.kwargs["depth"] == 2 and cfg.model.kwargs["embed_dim"] == 32
    assert cfg.trainer.devices == [0] and cfg.trainer.gradient_clip is None
    assert cfg.data.synthetic.options == {"dark_fraction": 0.5}
    assert cfg.data.augment.crop_scale == (0.5, 1.0)


def test_coercion_follows_the_field_type():
    assert coerce_text("3", int, "k") == 3
    assert coerce_text("3", float, "k") == 3.0 and isinstance(coerce_text("3", float, "k"), float)
    assert coerce_text("123", str | None, "k") == "123"  # a file name that YAML would read as a number
    assert coerce_text("null", str | None, "k") is None
    assert coerce_text("false", bool | str, "k") is False and coerce_text("hub", bool | str, "k") == "hub"
    assert coerce_text("3e-4", float | None, "k") == 3e-4  # YAML 1.1 alone reads it as a string
    assert coerce_text("0.5", int | float | None, "k") == 0.5 and coerce_text("2", int | float | None, "k") == 2
    with pytest.raises(ConfigError, match="k: expected an integer, got 'x'"):
        coerce_text("x", int, "k")


@pytest.mark.parametrize("override, expected", [
    ("trainer.epoch=3", "unknown config key 'trainer.epoch'; valid keys under trainer: epochs, max_steps"),
    ("trainr.epochs=3", "unknown config key 'trainr.epochs'; valid keys: name, output_dir, task"),
    ("trainer.epochs=ten", "trainer.epochs: expected an integer, got 'ten'"),
    ("trainer.epochs=0", "trainer.epochs must be >= 1, got 0"),
    ("trainer.lr=-1", "trainer.lr must be > 0"),
    ("trainer.precision=fp8", "trainer.precision must be one of auto, 32"),
    ("trainer.scheme=mixed", "trainer.scheme must be one of joint, pretrain-finetune, supervised"),
    ("trainer.scheme=pretrain-finetune", "trainer.pretrain_epochs is required with scheme pretrain-finetune"),
    ("trainer.limit_val_batches=1.5", "trainer.limit_val_batches must be a batch count"),
    ("trainer.betas=[0.9]", "trainer.betas must be two numbers"),
    ("data.batch_size=0", "data.batch_size must be an integer >= 1"),
    ("data.batchsize=8", "unknown config key 'data.batchsize'"),
    ("data.synthetic.task=cats", "data.synthetic.task must be one of"),
    ("model.img_size=64", "model.img_size (64) differs from data.image_size (32)"),
    ("model.pretrained=true", "model.pretrained: true is ambiguous"),
    ("model.pretrained=/no/such/weights.pth", "model.pretrained: weights file '/no/such/weights.pth' not found"),
    ("model.backbone=resnet50", "resnet50"),
    ("recipe=nope", "recipe 'nope': no such preset; presets:"),
    ("recipe.overrides.lambda_=2", "lambda_"),
    ("task.kind=deepfake", "task.kind is 'deepfake' but data.synthetic.task is 'expression'"),
    ("task.class_weights=heavy", "task.class_weights must be 'balanced'"),
    ("trainer", "override 'trainer': expected key.sub=value"),
])
def test_bad_values_are_one_line_errors_naming_the_key(override, expected):
    assert expected in error_of(SMOKE, [override])


def test_bad_sources(tmp_path):
    assert "config 'nope': no such file or preset; presets: affectnet" in error_of("nope")
    assert "not found" in error_of(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [1, 2\n")
    assert "invalid YAML" in error_of(str(bad))
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"defaults: [{loop}]\n")
    assert "its defaults include itself" in error_of(str(loop))
    nodata = tmp_path / "nodata.yaml"
    nodata.write_text("trainer: {epochs: 2}\n")
    assert "data: missing" in error_of(str(nodata))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("defaults: [smoke]\ntrainer: {epochs: 'many'}\n")
    assert error_of(str(wrong)) == "trainer.epochs: expected an integer, got 'many'"


def test_file_defaults_resolve_relative_to_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("defaults: [smoke]\ntrainer: {epochs: 7}\n")
    (tmp_path / "run.yaml").write_text("defaults: [base.yaml, backbones/vit-test]\ndata: {batch_size: 2}\n")
    cfg = load_config(str(tmp_path / "run.yaml"))
    assert cfg.trainer.epochs == 7 and cfg.data.batch_size == 2 and cfg.name == "smoke"


def test_resolved_config_round_trips_with_the_same_run_id(tmp_path):
    cfg = load_config(SMOKE, ["trainer.epochs=3", "recipe.overrides.mask_ratio=0.5"])
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    again = load_config(str(path))
    assert again.to_dict() == cfg.to_dict()
    assert again.run_id == cfg.run_id and len(cfg.run_id) == 10
    assert yaml.safe_load(path.read_text())["trainer"]["betas"] == [0.9, 0.999]


def test_run_id_depends_on_what_the_run_computes_only():
    base = load_config(SMOKE).run_id
    assert load_config(SMOKE, ["output_dir=/elsewhere", "trainer.progress=false"]).run_id == base
    for change in ("trainer.seed=1", "recipe=ssat", "data.batch_size=4", "trainer.lr=0.1"):
        assert load_config(SMOKE, [change]).run_id != base, change


def test_recipe_presets_are_all_usable_by_name():
    for name in recipe_presets():
        assert load_config(SMOKE, [f"recipe={name}"]).build_recipe().name == name


def test_trainer_defaults_follow_the_method():
    t = TrainerConfig()
    assert (t.base_lr, t.min_lr, t.warmup_epochs, t.weight_decay, t.epochs) == (1e-3, 1e-6, 5.0, 0.05, 100)
    assert t.precision == "auto" and t.scheme == "joint"
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("32", "auto") == "32-true" and resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
