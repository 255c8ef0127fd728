"""Distributed training: `lssat train` with Lightning DDP on 2 CPU processes (gloo).

The validation metrics of the DDP run must be over the whole validation split, every sample
exactly once (27 samples: a padding sampler would show 28), and equal to a single-process
evaluation of the same checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lssat.engine.run import evaluate

N_VAL = 27  # odd: split over 2 ranks, the padding of a DistributedSampler would repeat one sample


@pytest.mark.slow
def test_ddp_validation_metrics_cover_the_whole_split_once(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "lssat.cli", "train", "-c", "smoke", "-o", str(tmp_path),
           "trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.progress=false",
           "trainer.limit_val_batches=null", "trainer.limit_test_batches=null",
           "task.kind=deepfake", "data.synthetic.task=deepfake", f"data.synthetic.val={N_VAL}",
           "data.synthetic.test=19", "data.batch_size=4"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [p for p in Path(tmp_path).iterdir() if p.is_dir() and (p / "run_record.json").is_file()]
    assert len(runs) == 1
    record = json.loads((runs[0] / "run_record.json").read_text())
    assert record["status"] == "done" and record["trainer"]["world_size"] == 2
    # 2 ranks x 4 steps x batch 4: the global batch is 8, so the lr scales with it
    assert record["trainer"]["peak_lr"] == pytest.approx(1e-3 * 8 / 256)
    assert record["cost"]["train_images"] == 32
    val, test = record["metrics"]["val"], record["metrics"]["test"]
    assert val["n_frames"] == N_VAL and test["n_frames"] == 19

    single = evaluate(runs[0], split="val", progress=False, accelerator="cpu")["metrics"]
    assert single["n_frames"] == N_VAL
    for key in ("frame_auc", "acc", "ap", "n_real", "n_fake", "n_videos"):
        assert single[key] == pytest.approx(val[key], abs=1e-6), key
    single_test = evaluate(runs[0], split="test", progress=False, accelerator="cpu")["metrics"]
    assert single_test["frame_auc"] == pytest.approx(test["frame_auc"], abs=1e-6)
