"""Per-sample test predictions saved next to the run record (`predictions/test.npz`): their shape
per task kind, and the record's test metrics recomputed from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata

from lssat.cli import main


def _train(tmp_path: Path, task: str, *extra: str) -> tuple[dict, dict]:
    args = ["train", "-c", "smoke", "-o", str(tmp_path), "trainer.progress=false", f"task.kind={task}",
            f"data.synthetic.task={task}", "trainer.limit_test_batches=null", *extra]
    assert main(args) == 0
    folder = next(p for p in tmp_path.iterdir() if (p / "run_record.json").is_file())
    text = (folder / "run_record.json").read_text()
    assert "NaN" not in text  # strict JSON
    record = json.loads(text)
    assert record["predictions"] == {"test": "predictions/test.npz"}
    with np.load(folder / record["predictions"]["test"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return record, arrays


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = rankdata(scores)
    pos = labels == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_deepfake_predictions_match_the_record(tmp_path):
    record, arrays = _train(tmp_path, "deepfake")
    n = record["metrics"]["test"]["n_frames"]
    assert arrays["index"].tolist() == list(range(n))
    assert arrays["target"].shape == arrays["score"].shape == (n,)
    assert set(arrays["target"].tolist()) <= {0, 1} and arrays["video_id"].dtype.kind == "U"
    assert ((arrays["score"] >= 0) & (arrays["score"] <= 1)).all()
    assert _auc(arrays["score"], arrays["target"]) == pytest.approx(record["metrics"]["test"]["frame_auc"], abs=1e-5)
    videos, inverse = np.unique(arrays["video_id"], return_inverse=True)
    v_score = np.bincount(inverse, arrays["score"]) / np.bincount(inverse)
    v_label = np.zeros(len(videos), int)
    np.maximum.at(v_label, inverse, arrays["target"])
    assert len(videos) == record["metrics"]["test"]["n_videos"]
    assert _auc(v_score, v_label) == pytest.approx(record["metrics"]["test"]["video_auc"], abs=1e-5)
    assert any(k.startswith("subgroup/") for k in arrays)


def test_expression_and_attribute_predictions_match_the_record(tmp_path):
    record, arrays = _train(tmp_path / "e", "expression")
    n, c = record["metrics"]["test"]["n"], len(record["task"]["names"])
    assert arrays["score"].shape == (n, c) and arrays["target"].shape == (n,)
    assert np.allclose(arrays["score"].sum(axis=1), 1, atol=1e-5)
    acc = (arrays["score"].argmax(axis=1) == arrays["target"]).mean()
    assert acc == pytest.approx(record["metrics"]["test"]["acc"])
    record, arrays = _train(tmp_path / "a", "attributes")
    n, a = record["metrics"]["test"]["n"], len(record["task"]["names"])
    assert arrays["score"].shape == arrays["target"].shape == (n, a)
    mean_acc = ((arrays["score"] >= 0.5) == arrays["target"]).mean()
    assert mean_acc == pytest.approx(record["metrics"]["test"]["mean_acc"])


@pytest.mark.slow
def test_ddp_predictions_hold_every_test_sample_once(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "lssat.cli", "train", "-c", "smoke", "-o", str(tmp_path),
           "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.progress=false",
           "trainer.limit_test_batches=null", "task.kind=deepfake", "data.synthetic.task=deepfake",
           "data.synthetic.test=19", "data.batch_size=4"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = next(p for p in tmp_path.iterdir() if (p / "run_record.json").is_file())
    record = json.loads((folder / "run_record.json").read_text())
    with np.load(folder / record["predictions"]["test"]) as npz:
        assert npz["index"].tolist() == list(range(19))
        assert _auc(npz["score"], npz["target"]) == pytest.approx(record["metrics"]["test"]["frame_auc"], abs=1e-5)
