"""Predictions say what their model was trained on, and warn when a model trained on the built-in
synthetic faces is used on other images (lssat predict, lssat show, Predictor.predict)."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lssat
from lssat.cli import main
from lssat.infer.checkpoint import ModelSpec, read_checkpoint, spec_from_run_metadata
from lssat.infer.provenance import SyntheticModelWarning, provenance_from_run_metadata, synthetic_warning

SMOKE = ["train", "-c", "smoke", "trainer.max_steps=1", "trainer.progress=false"]


def _train(out: Path, *overrides: str) -> Path:
    assert main([*SMOKE, *overrides, "-o", str(out)]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    """A tiny expression model trained on the built-in (on-the-fly) synthetic faces."""
    return _train(tmp_path_factory.mktemp("synthetic-runs"))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """The same tiny model trained on an index of ordinary image files (`lssat index folder`)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for cls in ("calm", "happy"):
            folder = root / "people" / split / cls
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    index = root / "people.jsonl"
    assert main(["index", "folder", str(root / "people"), "-o", str(index)]) == 0
    return _train(tmp_path_factory.mktemp("real-runs"), "data.synthetic=null", f"data.index={index}",
                  "task.kind=expression")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("inputs") / "astronaut.png"
    Image.fromarray(data.astronaut()[:200, 150:350]).save(path)
    return path


def _warning(run: Path, command: str = "predict") -> str:
    return (f"lssat {command}: warning: {run} was trained on the built-in synthetic faces (cartoons); "
            "its scores on real images mean nothing")


def test_synthetic_model_table_says_so_and_warns_once(synthetic_run, photo, capsys):
    assert main(["predict", str(synthetic_run), str(photo), str(photo), "--faces", "crop"]) == 0
    captured = capsys.readouterr()
    first = captured.out.splitlines()[0]
    assert first.startswith("model: trained on the built-in synthetic faces (cartoons), expression (")
    assert f"run {synthetic_run.name}" in first and f"lssat {lssat.__version__}" in first
    assert [line for line in captured.err.splitlines() if "warning" in line] == [_warning(synthetic_run)]


def test_json_and_csv_carry_the_provenance(synthetic_run, photo, capsys):
    assert main(["predict", str(synthetic_run), str(photo), "--faces", "crop", "--format", "json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    model = row["model"]
    assert model["dataset"] == "synthetic" and model["synthetic"] is True and model["task"] == "expression"
    assert model["names"] == lssat.load(synthetic_run, device="cpu").names and model["image_size"] == 32
    assert model["lssat_version"] == lssat.__version__ and model["run_id"] == synthetic_run.name
    assert model["preprocessing"]["detector"] == "dlib" and "margin" in model["preprocessing"]
    assert main(["predict", str(synthetic_run), str(photo), "--faces", "crop", "--format", "csv"]) == 0
    (csv_row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert csv_row["trained_on"] == "synthetic" and csv_row["trained_on_synthetic"] == "true"
    assert csv_row["model_run_id"] == synthetic_run.name and csv_row["model_lssat_version"] == lssat.__version__


def test_quiet_silences_the_warning_not_the_field(synthetic_run, photo, capsys):
    assert main(["predict", str(synthetic_run), str(photo), "--faces", "crop", "--format", "json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert json.loads(captured.out)["model"]["synthetic"] is True


def test_model_trained_on_real_images_does_not_warn(real_run, photo, capsys):
    assert main(["predict", str(real_run), str(photo), "--faces", "crop", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    model = json.loads(captured.out)["model"]
    assert model["dataset"] == "people" and model["synthetic"] is False and model["names"] == ["calm", "happy"]
    assert main(["predict", str(real_run), str(photo), "--faces", "crop"]) == 0
    assert capsys.readouterr().out.startswith("model: trained on 'people', expression (calm, happy), 32 px")


def test_python_api_carries_the_provenance_and_warns_once(synthetic_run, real_run, photo):
    predictor = lssat.load(synthetic_run, device="cpu")
    assert predictor.provenance["synthetic"] and predictor.provenance["run_id"] == synthetic_run.name
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    with pytest.warns(SyntheticModelWarning, match="trained on the built-in synthetic faces") as caught:
        result = predictor.predict(str(photo), faces="crop")
        in_memory = predictor.predict(rgb, faces="crop")
    assert len(caught) == 1  # once per predictor
    assert result.model == predictor.provenance and result.to_dict()["model"]["dataset"] == "synthetic"
    assert in_memory.model == predictor.provenance
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = lssat.load(synthetic_run, device="cpu", quiet=True).predict(rgb, faces="crop")
        real = lssat.load(real_run, device="cpu").predict(rgb, faces="crop")
    assert quiet.model["synthetic"] and real.model["synthetic"] is False


def test_show_prints_the_provenance_and_warns(synthetic_run, photo, tmp_path, capsys):
    out = tmp_path / "show.png"
    assert main(["show", str(synthetic_run), str(photo), "-o", str(out), "--faces", "crop"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("model: trained on the built-in synthetic faces (cartoons)")
    assert captured.err.strip() == _warning(synthetic_run, "show")
    assert main(["show", str(synthetic_run), str(photo), "-o", str(out), "--faces", "crop", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_older_checkpoints_and_exported_specs_keep_a_provenance(synthetic_run, tmp_path):
    from lssat.engine.checkpoints import load_weights
    from lssat.infer.checkpoint import save_checkpoint
    from lssat.infer.predictor import build_model

    _, meta = load_weights(synthetic_run)
    meta.pop("lssat_version")  # written before lssat_version was recorded
    spec = spec_from_run_metadata(meta, "old")
    assert spec.provenance["synthetic"] and spec.provenance["dataset"] == "synthetic"
    assert spec.provenance["lssat_version"] is None and spec.provenance["run_id"] == synthetic_run.name
    spec, state = read_checkpoint(synthetic_run)
    saved = save_checkpoint(tmp_path / "model.pt", build_model(spec, state), spec)
    assert read_checkpoint(saved)[0].provenance == spec.provenance


def test_the_same_synthetic_data_on_disk_is_not_warned_about(tmp_path):
    data = tmp_path / "synthetic-data"
    inside, outside = data / "expression" / "test" / "0.jpg", tmp_path / "photo.jpg"
    meta = {"run_id": "r", "config": {"data": {"index": str(tmp_path / "index.jsonl")}},
            "header": {"dataset": "synthetic", "root": "synthetic-data"}}
    spec = ModelSpec("vit", 8, "expression", ["a"] * 8, provenance=provenance_from_run_metadata(meta))
    assert spec.provenance["data_root"] == str(data.resolve())
    assert synthetic_warning(spec, [inside], "RUN") is None
    assert synthetic_warning(spec, [inside, outside], "RUN").startswith("RUN was trained on the built-in")
    assert synthetic_warning(spec, None, "RUN") is not None  # in-memory images: cannot be the same data
