"""Self-blended images (`lssat.data.sbi`): the blend stays inside its mask, is seeded, finds its
landmarks (synthetic geometry, stored 68 points, dlib), and `data.sbi` feeds training batches on
both loading paths; config errors are one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from lssat.cli import main
from lssat.data.datamodule import FaceDataModule
from lssat.data.index import Record
from lssat.data.sbi import LandmarkFinder, SBIConfig, hull_mask, self_blend
from lssat.data.synthetic import SyntheticFaces
from lssat.errors import ConfigError, DataError, MissingDependencyError

QUIET = ["trainer.progress=false"]


@pytest.fixture(scope="module")
def faces():
    """Eight real frames of synthetic deepfake clips (64 px) and their outline landmarks."""
    ds = SyntheticFaces("deepfake", "train", n=8, size=64)
    return [ds[i][0] for i in range(8)], ds.landmarks(range(8))


def test_blend_differs_from_the_source_only_inside_its_mask(faces):
    images, landmarks = faces
    changed = 0
    for i, (image, points) in enumerate(zip(images, landmarks)):
        blended, mask = self_blend(image, points, torch.Generator().manual_seed(i))
        assert blended.dtype == torch.uint8 and blended.shape == image.shape
        assert mask.dtype == torch.float32 and mask.shape == image.shape[1:]
        assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0 and float(mask.max()) >= 0.25
        outside = mask == 0
        assert outside.any() and torch.equal(blended[:, outside], image[:, outside])  # exactly identical
        changed += int((blended != image).any(0).sum())
        # the mask lies on the face: inside the landmark hull, grown by the blur, never far outside
        hull = hull_mask(points, *image.shape[1:]) > 0
        assert (mask > 0)[hull].float().mean() > 0.6
    assert changed > 100  # it does change the faces


def test_blend_is_deterministic_under_a_seed(faces):
    image, points = faces[0][0], faces[1][0]
    a = self_blend(image, points, torch.Generator().manual_seed(7))
    b = self_blend(image, points, torch.Generator().manual_seed(7))
    c = self_blend(image, points, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_hull_mask_and_bad_landmarks():
    square = [[2, 2], [7, 2], [7, 7], [2, 7], [4, 4]]
    mask = hull_mask(square, 10, 12)
    assert mask.shape == (10, 12) and int(mask.sum()) == 36 and bool(mask[2:8, 2:8].all())
    assert int(hull_mask([[0, 0], [1, 1], [2, 2]], 5, 5).sum()) == 0  # collinear: no area
    with pytest.raises(DataError, match="at least 3 finite"):
        hull_mask([[0, 0], [1, float("nan")], [2, 0]], 5, 5)
    with pytest.raises(DataError, match="uint8 image"):
        self_blend(torch.zeros(3, 8, 8), square, torch.Generator())


def test_landmarks_from_records_and_dlib(monkeypatch):
    points = [[float(10 + k % 9), float(8 + k // 9)] for k in range(68)]
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    finder = LandmarkFinder([Record("a.jpg", "train", label=0, landmarks=points),
                             Record("b.jpg", "train", label=0, landmarks=[[1, 1]] * 5, box=[4, 4, 27, 27])], object())
    assert np.array_equal(finder(0, image), np.array(points))  # stored 68 points are used as they are
    assert not finder.needs_dlib([0]) and finder.needs_dlib([1])  # 5 points (dlib5) are no face outline
    pytest.importorskip("dlib")
    got = finder(1, image)  # dlib's 68-point model inside the record's box
    assert got.shape == (68, 2) and np.isfinite(got).all()
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(MissingDependencyError, match=r"lssat\[faces\]"):
        LandmarkFinder(finder.records, object()).check([1])


def _module(in_memory: bool, **sbi) -> FaceDataModule:
    return FaceDataModule({"synthetic": {"task": "deepfake", "train": 48, "val": 16, "test": 16}, "image_size": 32,
                           "batch_size": 8, "num_workers": 0, "in_memory": in_memory,
                           "augment": {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "color_jitter": 0.0,
                                       "hflip": 0.0},
                           "sbi": {"enabled": True, **sbi}})


def test_training_batches_draw_self_blended_fakes_from_real_frames():
    batches = {}
    for in_memory in (True, False):
        dm = _module(in_memory, real_only=True)
        dm.setup()
        assert len(dm.train_positions) == 24 and all(dm.records("train")[p].label == 0 for p in dm.train_positions)
        batches[in_memory] = list(dm.train_dataloader())
        for b in batches[in_memory]:
            assert set(b["method"]) <= {"real", "sbi"} and 0 < b["label"].sum() < len(b["label"])
            assert b["label"].tolist() == [int(m == "sbi") for m in b["method"]]
        records = dm.records("val")  # validation is left alone
        val = next(iter(dm.val_dataloader()))
        assert val["label"].tolist() == [records[i].label for i in val["index"].tolist()]
    for a, b in zip(batches[True], batches[False]):  # both loading paths blend the same frames the same way
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    again = list(_module(True, real_only=True).train_dataloader())  # seeded: the same draws again
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(again, batches[True]))
    with_fakes = _module(True, probability=1.0)
    with_fakes.setup()
    b = next(iter(with_fakes.train_dataloader()))
    assert len(with_fakes.train_positions) == 48 and "sbi" in b["method"] and len(set(b["method"])) > 2
    assert all(m == "sbi" for m, r in zip(b["method"], b["index"].tolist()) if with_fakes.records("train")[r].label == 0)


@pytest.mark.parametrize("overrides, expected", [
    (["data.sbi.probability=2"], "data.sbi.probability must be a number in (0, 1], got 2"),
    (["data.sbi.prob=0.5"], "'data.sbi.prob'"),
    (["data.sbi.real_only=true"], "data.sbi.real_only needs data.sbi.enabled: true"),
    (["data.sbi.enabled=maybe"], "true or false, got 'maybe'"),
    (["data.sbi.enabled=true"], "data.sbi: self-blended images are fakes for the deepfake task"),
])
def test_config_errors_are_one_line(tmp_path, capsys, overrides, expected):
    assert main(["train", "-c", "smoke", "-o", str(tmp_path), *QUIET, *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lssat train: error: ") and "\n" not in err and expected in err, err
    with pytest.raises(ConfigError, match="data.sbi must be a mapping"):
        SBIConfig.from_dict([1])


def test_training_smoke_with_self_blended_fakes_only(tmp_path, capsys):
    args = ["train", "-c", "smoke", "-o", str(tmp_path), *QUIET, "task.kind=deepfake", "data.synthetic.task=deepfake",
            "data.sbi.enabled=true", "data.sbi.real_only=true"]
    assert main(args) == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    record = json.loads((folder / "run_record.json").read_text())
    assert record["status"] == "done" and record["config"]["data"]["sbi"] == {
        "enabled": True, "probability": 0.5, "real_only": True}
    assert record["data"]["train_subset"] == 16  # the 16 real frames of 32: manipulated ones left out
    assert {"frame_auc", "video_auc"} <= set(record["metrics"]["test"])
