"""Inference: checkpoints, the predictor API, video scoring, `lssat predict`, export parity."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lssat.cli import main
from lssat.errors import ConfigError, DataError, InputError
from lssat.infer.predictor import ModelSpec, Predictor, load, read_checkpoint, save_checkpoint
from lssat.infer.results import FileResult, make_prediction, to_csv, to_json, to_table
from lssat.infer.video import aggregate_scores, check_aggregate
from lssat.models import LSSATModel, load_recipe

TINY = dict(patch_size=8, depth=1, embed_dim=32, num_heads=2)
SIZE = 32


def tiny_spec(kind: str = "deepfake", recipe: str | dict = "lssat-ldp") -> ModelSpec:
    names = {"deepfake": ["real", "fake"], "expression": ["neutral", "happy", "sad"],
             "attributes": ["glasses", "beard"]}[kind]
    n = 1 if kind == "deepfake" else len(names)
    return ModelSpec("vit_tiny_patch16_224", n, kind, names, img_size=SIZE, recipe=recipe, backbone_kwargs=TINY)


def tiny_model(spec: ModelSpec, seed: int = 0) -> LSSATModel:
    torch.manual_seed(seed)
    recipe = load_recipe(load_recipe("ssat"), spec.recipe) if isinstance(spec.recipe, dict) else spec.recipe
    model = LSSATModel(spec.backbone, spec.num_outputs, recipe, spec.img_size, backbone_kwargs=TINY).eval()
    with torch.no_grad():  # a head that is not all near zero, so outputs differ between inputs
        model.head.fc.weight.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    spec = tiny_spec()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "model.pt", tiny_model(spec), spec)


@pytest.fixture(scope="module")
def predictor(ckpt) -> Predictor:
    return load(ckpt, device="cpu")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """An 8-frame synthetic clip (one identity in motion) at 160x160 as a real video file."""
    from lssat.data.synthetic import generate, write_clip_video

    g = generate("deepfake", 8, size=160, seed=3)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_clip_video(path, g.images)
    return path, g.images


# --------------------------------------------------------------------------- results, aggregation

def test_predictions_are_typed_and_render():
    fake = make_prediction("deepfake", ["real", "fake"], np.array([0.7]))
    assert fake.is_fake and fake.label == "fake" and fake.scores.tolist() == [0.7]
    expr = make_prediction("expression", ["a", "b", "c"], np.array([0.2, 0.5, 0.3]))
    assert expr.label == "b" and expr.confidence == 0.5
    attrs = make_prediction("attributes", ["x", "y"], np.array([0.9, 0.1]))
    assert attrs.present == ["x"]
    results = [FileResult("a.png", "image", expr, 1), FileResult("b.mp4", "video", None, 0, 3, error="no face")]
    rows = list(csv.reader(io.StringIO(to_csv(results))))
    assert rows[0] == ["path", "kind", "status", "label", "frames_scored", "frames_no_face", "a", "b", "c", "error"]
    assert rows[1][:4] == ["a.png", "image", "ok", "b"] and rows[2][2] == "failed" and rows[2][-1] == "no face"
    lines = [json.loads(line) for line in to_json(results).splitlines()]
    assert lines[0]["probabilities"]["b"] == 0.5 and lines[1]["frames_no_face"] == 3 and not lines[1]["ok"]
    table = to_table(results).splitlines()
    assert len(table) == 3 and "FAILED: no face" in table[2]


def test_aggregation_rules():
    s = np.array([[0.1], [0.9], [0.5], [0.3]])
    assert aggregate_scores(s, "mean")[0] == pytest.approx(0.45)
    assert aggregate_scores(s, "median")[0] == pytest.approx(0.4)
    assert aggregate_scores(s, "max")[0] == pytest.approx(0.9)
    assert aggregate_scores(s, "topk:2")[0] == pytest.approx(0.7)
    assert aggregate_scores(s, "topk:10")[0] == pytest.approx(0.45)  # k capped at the frame count
    probs = np.array([[0.8, 0.2], [0.4, 0.6]])
    assert aggregate_scores(probs, "max", renormalise=True).sum() == pytest.approx(1.0)
    for bad in ("sum", "topk:0", "topk:x"):
        with pytest.raises(ConfigError):
            check_aggregate(bad)


# --------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_round_trip_is_exact(tmp_path, suffix):
    spec = tiny_spec("expression", recipe="fusion")
    model = tiny_model(spec, seed=1)
    path = save_checkpoint(tmp_path / f"m{suffix}", model, spec)
    loaded = load(path, device="cpu")
    x = torch.randint(0, 256, (3, 3, SIZE, SIZE), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))
    assert loaded.kind == "expression" and loaded.names == spec.names
    assert loaded.spec.recipe == "fusion" and loaded.model.recipe.fusion


def test_bad_checkpoints_are_data_errors(tmp_path):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    for path, words in ((tmp_path / "junk.pt", "not a weights-only"), (tmp_path / "other.pt", "not an lssat"),
                        (tmp_path / "missing.pt", "not found"), (tmp_path, "no checkpoint in this folder")):
        with pytest.raises(DataError, match=words):
            read_checkpoint(path)


# --------------------------------------------------------------------------- predictor API

def test_predict_crops_matches_model_on_resized_input(predictor):
    from torchvision.transforms import v2

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(3)]
    preds = predictor.predict(crops, faces="crop")
    resize = v2.Compose([v2.Resize(SIZE, antialias=True), v2.CenterCrop(SIZE)])
    batch = torch.stack([resize(torch.from_numpy(c).permute(2, 0, 1)) for c in crops])
    with torch.no_grad():
        expected = torch.sigmoid(predictor.model(batch))[:, 0].numpy()
    got = np.array([p.fake_probability for p in preds])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert len(set(np.round(got, 6))) == 3  # the three crops score differently
    feats = predictor.features(crops, faces="crop")
    assert feats.shape == (3, predictor.model.backbone.num_features)
    # a single tensor input (3, H, W) and a PIL image give the same answer as the array
    t = predictor.predict(torch.from_numpy(crops[0]).permute(2, 0, 1), faces="crop")
    p = predictor.predict(Image.fromarray(crops[0]), faces="crop")
    assert t.fake_probability == pytest.approx(got[0], abs=1e-6) == p.fake_probability


def test_detect_on_real_photo_matches_manual_pipeline(predictor, astronaut):
    from lssat.preprocess.align import crop_faces
    from lssat.preprocess.faces import DlibDetector

    pred = predictor.predict(astronaut, faces="detect")
    crop = crop_faces(astronaut, DlibDetector(), 1.3, 256)[0].image
    manual = predictor.predict(crop, faces="crop")
    assert pred.fake_probability == pytest.approx(manual.fake_probability, abs=1e-6)
    with pytest.raises(InputError, match="no face"):
        predictor.predict(np.full((200, 200, 3), 128, np.uint8), faces="detect")
    # auto: a face-less image is scored whole, and the file result says so
    with pytest.raises(ConfigError):
        predictor.predict(astronaut, faces="guess")


def test_video_scores_every_frame_and_aggregates(predictor, face_video):
    path, frames = face_video
    result = predictor.predict(path, frames=0)
    assert result.ok and result.kind == "video"
    assert result.frames_scored == len(frames) and result.frames_no_face == 0  # dlib finds the synthetic faces
    assert result.frame_scores.shape == (result.frames_scored, 1)
    assert result.prediction.fake_probability == pytest.approx(result.frame_scores.astype(np.float64).mean(), abs=1e-9)
    sampled = predictor.predict(path, frames=4, aggregate="max")
    assert sampled.frame_indices == [0, 2, 5, 7]  # evenly spaced, first and last included
    assert sampled.prediction.fake_probability == pytest.approx(sampled.frame_scores.max(), abs=1e-9)
    tracked = predictor.predict(path, frames=0, detect_every=4)
    assert tracked.frames_scored == len(frames)
    # re-using the face box (landmarks re-fitted) stays close to detecting on every frame; the
    # detection frames (0 and 4) are identical
    np.testing.assert_allclose(tracked.frame_scores, result.frame_scores, atol=0.05)
    np.testing.assert_array_equal(tracked.frame_scores[[0, 4]], result.frame_scores[[0, 4]])


def test_video_without_faces_and_bad_files_are_reported(predictor, tmp_path):
    from lssat.data.synthetic import write_clip_video

    blank = tmp_path / "blank.mp4"
    write_clip_video(blank, np.full((5, 64, 64, 3), 90, np.uint8))
    r = predictor.predict(blank, frames=0, faces="detect")
    assert not r.ok and r.frames_no_face == 5 and r.frames_scored == 0 and "no face" in r.error
    crop_mode = predictor.predict(blank, frames=0, faces="crop")
    assert crop_mode.ok and crop_mode.frames_scored == 5
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    assert "cannot read video" in predictor.predict(broken).error
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    assert "not an image or video" in predictor.predict(text).error


# --------------------------------------------------------------------------- the command

def test_predict_cli_statuses_and_formats(ckpt, astronaut, face_video, tmp_path, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(folder / "flat.png")
    (folder / "readme.txt").write_text("skipped: not an image or video")
    video, _ = face_video
    assert main(["predict", str(ckpt), str(folder), str(video), "--format", "json", "--frames", "4"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["path"]).name for r in out] == ["astronaut.png", "flat.png", "clip.mp4"]
    assert all(r["ok"] for r in out) and out[2]["kind"] == "video"
    assert out[1]["notes"] == ["no face detected; scored the whole image as a face crop"]
    # a missing file and a file that is not an image: reported per file, exit 1, the rest scored
    status = main(["predict", str(ckpt), str(folder / "astronaut.png"), str(tmp_path / "nope.png"),
                   str(folder / "readme.txt"), "--format", "csv", "--faces", "detect"])
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert status == 1 and [r["status"] for r in rows] == ["ok", "failed", "failed"]
    assert rows[1]["error"] == "file not found" and "not an image or video" in rows[2]["error"]
    assert "1 of 3 files scored, 2 failed" in captured.err
    # usage errors: exit 2 with one line
    assert main(["predict", str(tmp_path / "nope.pt"), str(folder)]) == 2
    assert main(["predict", str(ckpt), str(folder), "--aggregate", "sum"]) == 2
    assert "aggregate must be" in capsys.readouterr().err


# --------------------------------------------------------------------------- export

@pytest.mark.parametrize("recipe,kind,dtype", [("fusion", "deepfake", "uint8"), ("ssat", "expression", "float32"),
                                               ({"classify_input": "ldp"}, "attributes", "uint8")])
def test_onnx_export_matches_pytorch(tmp_path, recipe, kind, dtype):
    from lssat.infer.export import example_input, export_model, read_metadata, run_onnx

    spec = tiny_spec(kind, recipe)
    path = save_checkpoint(tmp_path / "m.pt", tiny_model(spec, seed=2), spec)
    pred = load(path, device="cpu")
    out = export_model(pred, tmp_path / "m.onnx", "onnx", input_dtype=dtype)
    x = example_input(SIZE, 5, dtype, seed=7)  # another batch size than the export's example
    with torch.no_grad():
        ref = pred.model(x)
    logits, probs = run_onnx(out, x)
    assert logits.shape == tuple(ref.shape) and np.abs(logits - ref.numpy()).max() < 1e-4
    expected = torch.softmax(ref, -1) if kind == "expression" else torch.sigmoid(ref)
    assert np.abs(probs - expected.numpy()).max() < 1e-5
    meta = read_metadata(out)
    assert meta["task"] == kind and meta["names"] == spec.names and meta["img_size"] == SIZE


def test_torchscript_export_and_cli(ckpt, tmp_path, capsys):
    from lssat.infer.export import example_input, read_metadata

    out = tmp_path / "model.ts"
    assert main(["export", str(ckpt), "--format", "torchscript", "-o", str(out)]) == 0
    assert "match PyTorch" in capsys.readouterr().out
    pred = load(ckpt, device="cpu")
    x = example_input(SIZE, 3, "uint8", seed=3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logits, _ = torch.jit.load(str(out))(x)
    with torch.no_grad():
        assert (logits - pred.model(x)).abs().max() < 1e-4
    assert read_metadata(out)["task"] == "deepfake"
    assert main(["export", str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "x.onnx")]) == 2
