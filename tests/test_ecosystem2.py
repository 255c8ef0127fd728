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


def _fake_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40) -> Path:
    """A Hugging Face cache entry as huggingface_hub lays it out (refs/main -> snapshots/<commit>)."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_push_to_hub_then_load_hf_hub_id_from_the_cache(run_folder: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """push_to_hub uploads the save_pretrained folder (the hub replaced by a recorder); the uploaded
    files, placed in a local huggingface_hub cache, load by `hf-hub:` id with HF_HUB_OFFLINE=1."""
    import huggingface_hub
    from huggingface_hub import constants

    import lssat
    from lssat.models.lssat import LSSATModel

    uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, **kwargs):  # noqa: ANN001
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):  # noqa: ANN001
        uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
        return f"https://huggingface.co/{repo_id}/commit/1"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    predictor = lssat.load(run_folder, device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    url = predictor.model.push_to_hub("org/face-model", task=predictor.task)
    assert url.startswith("https://huggingface.co/org/face-model") and set(uploaded) == {"config.json",
                                                                                         "model.safetensors"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _fake_hub_cache(tmp_path / "hub", "org/face-model", uploaded)
    x = _images(predictor.img_size)
    with torch.no_grad():
        expected = predictor.model(x)
        again = lssat.load("hf-hub:org/face-model", device="cpu")
        assert again.names == predictor.names and torch.equal(again.model(x), expected)
        assert torch.equal(LSSATModel.from_pretrained("hf-hub:org/face-model")(x), expected)


def test_hf_hub_id_offline_and_not_cached_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from huggingface_hub import constants

    from lssat.errors import InputError
    from lssat.models.lssat import LSSATModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["export", "hf-hub:org/missing", "--format", "torchscript", "-o", str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"lssat export: error: hf-hub:org/missing: not in the Hugging Face cache ({tmp_path / 'hub'}), "
        f"HF_HUB_OFFLINE=1 forbids downloading it"]
    with pytest.raises(InputError, match="HF_HUB_OFFLINE=1 forbids uploading"):
        LSSATModel("vit_tiny_patch16_224", 2, "supervised", 32, backbone_kwargs={"depth": 1}).push_to_hub("org/x")
