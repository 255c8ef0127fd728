"""Metrics under DDP: two CPU processes (gloo), each updating with a different half of the data.

compute() on every rank must equal scikit-learn on the whole set: the metrics are over the whole
split, not per rank. Videos straddle the ranks, one manipulation method and one subgroup occur on
one rank only, and one metric is updated on rank 0 only (a rank without data must still take part).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             confusion_matrix, f1_score, roc_auc_score, roc_curve)
from scipy.interpolate import interp1d
from scipy.optimize import brentq

from lssat.metrics.deepfake import DeepfakeMetrics
from lssat.tasks import build_task

N = 96
HALF = 52  # uneven halves
CLASSES = ["Neutral", "Happy", "Sad"]
ATTRS = ["Smiling", "Eyeglasses", "Male"]


def make_data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = np.array([i % 2 for i in range(N)])
    # fakes of rank 1's half are all "FaceSwap", a method rank 0 never sees
    method = ["real" if y[i] == 0 else ("FaceSwap" if i >= HALF else ["Deepfakes", "Face2Face"][i % 4 // 2])
              for i in range(N)]
    # 12 videos of 8 frames in order, so videos 6 (frames 48..55) straddles the two halves
    video = [f"{'original' if y[i] == 0 else method[i]}/{i // 8:03d}.mp4" for i in range(N)]
    skin = ["dark" if i % 3 == 0 else "light" for i in range(N)]
    skin[HALF + 3] = "medium"  # a subgroup only rank 1 has
    logit = (rng.normal(size=N) + 1.2 * y).astype(np.float32)
    cls = rng.integers(0, 3, N)
    cls_logits = rng.normal(size=(N, 3)).astype(np.float32)
    cls_logits[np.arange(N), cls] += 0.8
    attrs = (rng.random((N, 3)) < 0.5).astype(np.int64)
    attr_logits = (rng.normal(size=(N, 3)) + 1.5 * (attrs - 0.5)).astype(np.float32)
    return dict(y=y, method=method, video=video, skin=skin, logit=logit, cls=cls, cls_logits=cls_logits,
                attrs=attrs, attr_logits=attr_logits)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # as in DataLoader workers: the forked child must not reuse the parent's pool
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        d = make_data()
        lo, hi = (0, HALF) if rank == 0 else (HALF, N)
        deepfake = build_task("deepfake", subgroups=["skin_tone"]).metrics()
        expression = build_task("expression", CLASSES, subgroups=["skin_tone"]).metrics()
        attributes = build_task("attributes", ATTRS).metrics()
        only_rank0 = DeepfakeMetrics()
        step = 10 if rank == 0 else 7  # different batch sizes on the two ranks
        for a in range(lo, hi, step):
            sl = slice(a, min(a + step, hi))
            subgroup = [{"skin_tone": s} for s in d["skin"][sl]]  # list-of-dicts form
            deepfake.update(torch.from_numpy(d["logit"][sl]).unsqueeze(1),
                            {"label": torch.from_numpy(d["y"][sl]), "video_id": d["video"][sl],
                             "method": d["method"][sl], "subgroup": subgroup})
            expression.update(torch.from_numpy(d["cls_logits"][sl]),
                              {"label": torch.from_numpy(d["cls"][sl]),
                               "subgroup": {"skin_tone": d["skin"][sl]}})  # dict-of-lists form
            attributes.update(torch.from_numpy(d["attr_logits"][sl]), {"attributes": torch.from_numpy(d["attrs"][sl])})
            if rank == 0:
                only_rank0.update(torch.sigmoid(torch.from_numpy(d["logit"][sl])), torch.from_numpy(d["y"][sl]),
                                  d["video"][sl], d["method"][sl])
        result = {"deepfake": deepfake.compute(), "expression": expression.compute(),
                  "attributes": attributes.compute(), "only_rank0": only_rank0.compute()}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    # fork: the children inherit the imported modules, so the test takes a fraction of a second
    # instead of two fresh torchmetrics imports; spawn where fork does not exist
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=2, join=True, start_method=method)
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]


def test_ranks_agree(ranks):
    assert json.dumps(ranks[0], sort_keys=True) == json.dumps(ranks[1], sort_keys=True)  # nan-safe
    assert any(k.startswith("fair/skin_tone/") for k in ranks[0]["deepfake"])


def test_deepfake_over_both_ranks_matches_sklearn(ranks):
    d = make_data()
    y, s = d["y"], 1 / (1 + np.exp(-d["logit"].astype(np.float64)))
    for out in (ranks[0]["deepfake"], ranks[1]["deepfake"]):
        assert out["n_frames"] == N and out["n_videos"] == len(set(d["video"]))
        assert out["frame_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
        assert out["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
        assert out["acc"] == pytest.approx(accuracy_score(y, s >= 0.5))
        fpr, tpr, _ = roc_curve(y, s)
        assert out["eer"] == pytest.approx(brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1), abs=1e-6)
        ids = sorted(set(d["video"]))
        v_s = [np.mean([s[i] for i in range(N) if d["video"][i] == v]) for v in ids]
        v_y = [y[d["video"].index(v)] for v in ids]
        assert out["video_auc"] == pytest.approx(roc_auc_score(v_y, v_s), abs=1e-6)
        meth = np.array(d["method"])
        for m in ("Deepfakes", "Face2Face", "FaceSwap"):  # FaceSwap lives on rank 1 only
            keep = (meth == m) | (y == 0)
            assert out[f"auc/{m}"] == pytest.approx(roc_auc_score(y[keep], s[keep]), abs=1e-6)
        skin = np.array(d["skin"])
        for g in ("dark", "light", "medium"):
            keep = skin == g
            assert out[f"fair/skin_tone/n/{g}"] == int(keep.sum())
            assert out[f"fair/skin_tone/acc/{g}"] == pytest.approx(accuracy_score(y[keep], s[keep] >= 0.5))
        for g in ("dark", "light"):
            assert out[f"fair/skin_tone/auc/{g}"] == pytest.approx(roc_auc_score(y[skin == g], s[skin == g]), abs=1e-6)
        rates = [np.mean(s[skin == g] >= 0.5) for g in ("dark", "light", "medium")]
        assert out["fair/skin_tone/dp_diff"] == pytest.approx(max(rates) - min(rates))
        assert math.isnan(out["fair/skin_tone/fpr/medium"])  # its one frame is fake: no FPR
        tprs = [np.mean(s[(skin == g) & (y == 1)] >= 0.5) for g in ("dark", "light", "medium")]
        fprs = [np.mean(s[(skin == g) & (y == 0)] >= 0.5) for g in ("dark", "light")]
        assert out["fair/skin_tone/eo_diff"] == pytest.approx(max(max(tprs) - min(tprs), max(fprs) - min(fprs)))


def test_multiclass_and_multilabel_over_both_ranks_match_sklearn(ranks):
    d = make_data()
    pred, y = d["cls_logits"].argmax(1), d["cls"]
    a_pred, a_y = (d["attr_logits"] >= 0).astype(int), d["attrs"]
    for r in ranks:
        out = r["expression"]
        assert out["acc"] == pytest.approx(accuracy_score(y, pred))
        assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
        assert out["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
        assert out["confusion_matrix"] == confusion_matrix(y, pred).tolist()
        skin = np.array(d["skin"])
        accs = [accuracy_score(y[skin == g], pred[skin == g]) for g in ("dark", "light", "medium")]
        assert out["fair/skin_tone/acc_gap"] == pytest.approx(max(accs) - min(accs))
        att = r["attributes"]
        assert att["mean_acc"] == pytest.approx(np.mean([accuracy_score(a_y[:, i], a_pred[:, i]) for i in range(3)]))
        assert att["balanced_acc"] == pytest.approx(
            np.mean([balanced_accuracy_score(a_y[:, i], a_pred[:, i]) for i in range(3)]))


def test_metric_updated_on_one_rank_only(ranks):
    d = make_data()
    y, s = d["y"][:HALF], 1 / (1 + np.exp(-d["logit"][:HALF].astype(np.float64)))
    for r in ranks:
        out = r["only_rank0"]
        assert out["n_frames"] == HALF
        assert out["frame_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
        assert "auc/FaceSwap" not in out and not math.isnan(out["auc/Deepfakes"])
