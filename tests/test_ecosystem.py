"""Fitting the ecosystem: Lightning's load_from_checkpoint, the Hugging Face folder layout, and the
command line's behaviour in pipes and without optional extras."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lssat.cli import main

QUIET = ["trainer.progress=false"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "-c", "smoke", "-o", str(out), *QUIET, "trainer.max_steps=2"]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _batch(img_size: int) -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, img_size, img_size), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


def test_load_from_checkpoint_needs_no_other_argument(smoke_run: Path) -> None:
    from lssat.config import config_from_dict
    from lssat.engine.checkpoints import load_weights
    from lssat.engine.module import LSSATModule
    from lssat.engine.run import make_model
    from lssat.models.recipe import Recipe, load_recipe

    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    module = LSSATModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    state, meta = load_weights(ckpt)  # the usual way: the run's weights into the model its config describes
    cfg = config_from_dict({**meta["config"], "model": {**meta["config"]["model"], "pretrained": False}})
    reference = make_model(cfg, meta["task"]["num_outputs"], load_recipe(Recipe(), meta["recipe"]), norm=meta["norm"])
    reference.load_state_dict(state)
    reference.eval()
    x = _batch(module.model.img_size)
    with torch.no_grad():
        assert torch.equal(module(x), reference(x))
    assert module.task.kind == "expression" and module.cfg is not None and module.cfg.max_steps == 2
    assert module.hparams["metadata"]["run_id"] == smoke_run.name
    hparams = list(smoke_run.glob("logs/**/hparams.yaml"))
    assert hparams and yaml.safe_load(hparams[0].read_text())["task_spec"]["kind"] == "expression"


def test_save_pretrained_round_trip_and_lssat_load(smoke_run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import lssat
    from lssat.engine.module import LSSATModule
    from lssat.models.lssat import LSSATModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = LSSATModule.load_from_checkpoint(smoke_run / "checkpoints" / "last.ckpt", map_location="cpu")
    model = module.model.eval()
    folder = model.save_pretrained(tmp_path / "hf", task=module.task)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["task_kind"] == "expression" and config["names"] == module.task.names
    again = LSSATModel.from_pretrained(folder)
    x = _batch(model.img_size)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(again(x), expected)
        predictor = lssat.load(folder, device="cpu")
        assert predictor.names == module.task.names
        assert torch.equal(predictor.model(x), expected)


def test_from_pretrained_names_a_missing_file(tmp_path: Path) -> None:
    from lssat.errors import InputError
    from lssat.models.lssat import LSSATModel

    with pytest.raises(InputError, match="config.json: not found"):
        LSSATModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("command", [["train", "-c", "smoke", "--print-config"], ["bench", "--dry-run"],
                                     ["train", "--help"]])
def test_output_into_a_closed_pipe_ends_quietly(command: list[str]) -> None:
    """`lssat ... | head -1`: the reader goes away; no BrokenPipeError traceback, no error line."""
    import subprocess
    import sys

    # the reader closes its end before lssat writes (Python takes longer than this to start), so
    # the write fails every time, as when `head -1` has already exited
    proc = subprocess.Popen([sys.executable, "-m", "lssat.cli", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and "error" not in err, err
    assert proc.returncode == 141


def test_export_onnx_without_onnx_names_the_extra(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                  tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    assert main(["export", str(tmp_path / "no-run"), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['lssat export: error: ONNX export needs onnx, which is not installed: pip install "lssat[export]" '
                   '(onnx and onnxruntime)']
