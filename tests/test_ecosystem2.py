"""Fitting the ecosystem, second part: the backbone exported for timm, the Hugging Face hub cache,
Lightning's checkpointing (interval, Slurm requeue, extending a run), loggers by class path, one
meaning per command-line flag, and DeepfakeBench-compatible metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lssat.cli import main

QUIET = ["trainer.progress=false"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "-c", "smoke", "-o", str(out), *QUIET, "trainer.max_steps=2"]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _images(size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(seed)) * 255


def test_export_timm_loads_in_timm_with_equal_features(run_folder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import timm

    import lssat

    out = tmp_path / "timm"
    assert main(["export", str(run_folder), "--format", "timm", "-o", str(out)]) == 0
    assert "features match" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    model = lssat.load(run_folder, device="cpu").model
    assert config["architecture"] == model.backbone_name and config["num_classes"] == 0
    assert config["pretrained_cfg"]["mean"] == pytest.approx(model.rgb_mean.flatten().tolist())
    from safetensors.torch import load_file

    keys = set(load_file(str(out / "model.safetensors")))
    assert keys == set(model.backbone.model.state_dict()) and not any(k.startswith("backbone.") for k in keys)

    x, stem = model.image_input(model.recipe.classify_input, _images(model.img_size))
    assert stem is None
    with torch.no_grad():
        expected = model.backbone(x)
        by_folder = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
        assert torch.equal(by_folder(x), expected)
        # the way: the architecture by name, the file as the pretrained weights (strict load)
        by_file = timm.create_model(model.backbone_name, pretrained=True,
                                    pretrained_cfg_overlay={"file": str(out / "model.safetensors")},
                                    **config["model_args"]).eval()
        assert torch.equal(by_file(x), expected)
    assert not torch.equal(timm.create_model(f"local-dir:{out}", pretrained=False).eval()(x), expected)
