"""End to end: `lssat train` a tiny model on the synthetic faces, then predict (CLI and API) on a
synthetic video and a real photo, export to ONNX with matching outputs, and draw `lssat show`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lssat
from lssat.cli import main


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    status = main(["train", "-c", "smoke", "task.kind=deepfake", "data.synthetic.task=deepfake",
                   "data.synthetic.train=32", "data.synthetic.val=16", "data.synthetic.test=16",
                   "trainer.progress=false", "-o", str(out)])
    assert status == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert (folder / "checkpoints" / "best.safetensors").is_file()
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    from skimage import data

    from lssat.data.synthetic import generate, write_clip_video

    folder = tmp_path_factory.mktemp("inputs")
    photo = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    video = folder / "clip.mp4"
    # seed 3: a clip dlib finds in every frame (about 80% of synthetic frames are found; some
    # clips not at all, see docs/inference.md)
    write_clip_video(video, generate("deepfake", 8, size=160, seed=3).images)
    return photo, video


def test_trained_model_predicts_through_cli_and_api(run_folder, inputs, capsys):
    photo, video = inputs
    assert main(["predict", str(run_folder), str(video), str(photo), "--format", "json", "--faces", "detect"]) == 0
    rows = {Path(r["path"]).name: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    # dlib finds the synthetic faces in every frame and the astronaut's face in the photo
    assert rows["clip.mp4"]["frames_scored"] == 8 and rows["clip.mp4"]["frames_no_face"] == 0
    assert rows["astronaut.png"]["frames_scored"] == 1 and rows["astronaut.png"]["ok"]
    predictor = lssat.load(run_folder, device="cpu")
    assert predictor.kind == "deepfake" and predictor.img_size == 32
    api_video = predictor.predict(video, faces="detect")
    api_photo = predictor.predict(str(photo), faces="detect")
    assert api_video.prediction.fake_probability == pytest.approx(rows["clip.mp4"]["fake_probability"], abs=1e-6)
    assert api_photo.prediction.fake_probability == pytest.approx(rows["astronaut.png"]["fake_probability"], abs=1e-6)
    assert 0.0 < api_video.prediction.fake_probability < 1.0
    assert api_video.prediction.fake_probability == pytest.approx(api_video.frame_scores.astype(np.float64).mean(), abs=1e-9)
    feats = predictor.features([str(photo)], faces="detect")
    assert feats.shape == (1, predictor.model.backbone.num_features) and np.isfinite(feats).all()


def test_trained_model_exports_to_matching_onnx(run_folder, tmp_path):
    from lssat.infer.export import example_input, run_onnx

    out = tmp_path / "model.onnx"
    assert main(["export", str(run_folder), "--format", "onnx", "-o", str(out)]) == 0
    predictor = lssat.load(run_folder, device="cpu")
    x = example_input(predictor.img_size, 4, "uint8", seed=11)
    with torch.no_grad():
        ref = predictor.model(x).numpy()
    logits, probs = run_onnx(out, x)
    assert np.abs(logits - ref).max() < 1e-4
    assert np.abs(probs - 1 / (1 + np.exp(-ref))).max() < 1e-5


def test_show_draws_every_panel(run_folder, inputs, tmp_path, capsys):
    from lssat.infer.show import panels

    photo, _ = inputs
    out = tmp_path / "show.png"
    assert main(["show", str(run_folder), str(photo), "-o", str(out)]) == 0
    with Image.open(out) as img:
        width, height = img.size
    assert width > 4 * height  # one row of 5 panels
    predictor = lssat.load(run_folder, device="cpu")
    crop = torch.from_numpy(np.array(Image.open(photo).convert("RGB").resize((32, 32)))).permute(2, 0, 1)
    items, caption = panels(predictor, crop.contiguous())
    titles = [t for t, _, _ in items]
    assert titles == ["input", "masked rgb (75%)", "target ldp", "reconstruction ldp", "attention rollout"]
    masked = items[1][1]
    assert np.isclose(masked, 0.5).all(axis=-1).mean() == pytest.approx(0.75, abs=0.07)  # 12 of 16 patches grey
    saliency = items[-1][1]
    assert saliency.shape == (32, 32) and saliency.min() == 0.0 and saliency.max() == 1.0
    grad = panels(predictor, crop.contiguous(), saliency="gradxinput")[0][-1]
    assert grad[0].startswith("gradient x input") and grad[1].shape == (32, 32)
    assert "MRGB/RLDP/CRGB" in caption
    assert main(["show", str(run_folder), str(tmp_path / "missing.png"), "-o", str(out)]) == 2
