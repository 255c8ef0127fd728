"""Metrics against scikit-learn on the same predictions, accumulated over several uneven batches."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score,
                             confusion_matrix, f1_score, roc_auc_score, roc_curve)

from lssat.errors import InputError
from lssat.metrics.classification import (MulticlassMetrics, MultilabelMetrics, json_ready,
                                          scalar_metrics, stable_hash)
from lssat.metrics.deepfake import DeepfakeMetrics, equal_error_rate
from lssat.metrics.fairness import FairnessMetrics

METHODS = ["Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"]
CUTS = [0, 7, 7, 40, 41, 150, 260, 300]  # uneven batches, one of them empty


def batches(n_total: int):
    cuts = [c for c in CUTS if c < n_total] + [n_total]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def reference_eer(y: np.ndarray, s: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, s)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


def deepfake_data(seed: int = 0, n_videos: int = 20, frames: int = 15):
    """FF++-like frames: every method reuses the real videos' names, so only the full path is unique."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(n_videos):
        name = f"{v // 2:03d}.mp4"  # fake v reuses the name of real v - 1
        method = "real" if v % 2 == 0 else METHODS[(v // 2) % 4]
        folder = "original_sequences/youtube" if method == "real" else f"manipulated_sequences/{method}"
        base = 0.35 + 0.3 * (method != "real") + rng.normal(0, 0.15)
        for _ in range(frames):
            score = float(np.clip(np.round(base + rng.normal(0, 0.2), 2), 0, 1))  # rounded: many ties
            rows.append((f"{folder}/c23/videos/{name}", method, int(method != "real"), score))
    rng.shuffle(rows)
    vid, meth, y, s = zip(*rows)
    return list(vid), list(meth), np.array(y), np.array(s, dtype=np.float32)


def test_deepfake_matches_sklearn_over_batches():
    vid, meth, y, s = deepfake_data()
    metric = DeepfakeMetrics()
    for sl in batches(len(y)):
        metric.update(torch.from_numpy(s[sl]), torch.from_numpy(y[sl]), vid[sl], meth[sl])
    out = metric.compute()

    assert out["n_frames"] == len(y) and out["n_fake"] == int(y.sum())
    assert out["frame_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert out["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-6)
    assert out["acc"] == pytest.approx(accuracy_score(y, s >= 0.5), abs=1e-12)
    assert out["eer"] == pytest.approx(reference_eer(y, s), abs=1e-6)

    # videos keyed by the full path: 20 videos, although the file names repeat across methods
    assert len({v.rsplit("/", 1)[1] for v in vid}) < 20 and out["n_videos"] == 20
    ids = sorted(set(vid))
    v_score = np.array([s[[i for i, v in enumerate(vid) if v == key]].astype(np.float64).mean() for key in ids])
    v_label = np.array([y[vid.index(key)] for key in ids])
    assert out["video_auc"] == pytest.approx(roc_auc_score(v_label, v_score), abs=1e-6)
    assert out["video_acc"] == pytest.approx(accuracy_score(v_label, v_score >= 0.5))

    meth_arr = np.array(meth)
    for m in METHODS:
        keep = (meth_arr == m) | (y == 0)
        assert out[f"auc/{m}"] == pytest.approx(roc_auc_score(y[keep], s[keep]), abs=1e-6)
    assert not any(k.startswith("auc/real") for k in out)
    assert out["notes"] == []
    json.dumps(out)  # ready for a run record


def test_deepfake_single_class_and_no_videos_give_nan_with_notes():
    metric = DeepfakeMetrics()
    metric.update(torch.tensor([0.2, 0.7, 0.4]), torch.tensor([0, 0, 0]))
    out = metric.compute()
    assert out["acc"] == pytest.approx(2 / 3)
    for key in ("frame_auc", "eer", "ap", "video_auc"):
        assert math.isnan(out[key])
    assert out["n_videos"] == 0
    assert any("only real" in n for n in out["notes"])
    assert any("no video ids" in n for n in out["notes"])
    assert json_ready(out)["frame_auc"] is None and json_ready(out)["acc"] == out["acc"]


def test_deepfake_without_updates_and_bad_inputs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute before update
        out = DeepfakeMetrics().compute()
    assert out["n_frames"] == 0 and math.isnan(out["acc"]) and "no samples" in out["notes"]
    metric = DeepfakeMetrics()
    with pytest.raises(InputError, match="probabilities"):
        metric.update(torch.tensor([2.5]), torch.tensor([1]))
    with pytest.raises(InputError, match="0 \\(real\\) or 1"):
        metric.update(torch.tensor([0.5]), torch.tensor([2]))
    with pytest.raises(InputError, match="video ids"):
        metric.update(torch.tensor([0.5, 0.1]), torch.tensor([1, 0]), ["a"])


def test_eer_on_hand_made_curves():
    y = torch.tensor([0, 0, 1, 1])
    assert equal_error_rate(torch.tensor([0.1, 0.2, 0.8, 0.9]), y) == 0.0
    assert equal_error_rate(torch.tensor([0.9, 0.8, 0.2, 0.1]), y) == 1.0
    # ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1): the line tpr = 1 - fpr crosses at fpr = 0.5
    assert equal_error_rate(torch.tensor([0.1, 0.6, 0.4, 0.9]), y) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    yy = rng.integers(0, 2, 500)
    ss = (rng.random(500) + 0.4 * yy).astype(np.float32)
    eer = equal_error_rate(torch.from_numpy(ss), torch.from_numpy(yy))
    assert eer == pytest.approx(reference_eer(yy, ss), abs=1e-6)


def test_multiclass_matches_sklearn_over_batches():
    rng = np.random.default_rng(1)
    c, n = 5, 300
    y = rng.choice([0, 1, 2, 4], size=n)  # class 3 never a target
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[np.arange(n), y] += 1.0
    pred = logits.argmax(1)
    names = ["Neutral", "Happy", "Sad", "Surprise", "Fear"]
    metric = MulticlassMetrics(names)
    for sl in batches(n):
        metric.update(torch.from_numpy(logits[sl]), torch.from_numpy(y[sl]))
    out = metric.compute()
    assert out["acc"] == pytest.approx(accuracy_score(y, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: y_pred contains classes not in y_true
        assert out["balanced_acc"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert out["confusion_matrix"] == confusion_matrix(y, pred, labels=range(c)).tolist()
    assert math.isnan(out["recall/Surprise"])
    assert out["recall/Happy"] == pytest.approx(((pred == 1) & (y == 1)).sum() / (y == 1).sum())
    assert any("Surprise" in note for note in out["notes"])
    assert set(scalar_metrics(out)) == {k for k in out if k not in ("confusion_matrix", "notes")}

    ids = MulticlassMetrics(names)  # class ids instead of scores give the same result
    ids.update(torch.from_numpy(pred), torch.from_numpy(y))
    assert ids.compute()["confusion_matrix"] == out["confusion_matrix"]
    with pytest.raises(InputError, match="class ids"):
        ids.update(torch.tensor([0]), torch.tensor([7]))


def test_multilabel_matches_sklearn_over_batches():
    rng = np.random.default_rng(2)
    n, a = 300, 6
    y = (rng.random((n, a)) < 0.4).astype(np.int64)
    y[:, 5] = 0  # an attribute that is never present
    probs = np.clip(0.3 * y + rng.random((n, a)) * 0.7, 0, 1).astype(np.float32)
    pred = (probs >= 0.5).astype(np.int64)
    names = [f"attr{i}" for i in range(a)]
    metric = MultilabelMetrics(names)
    for sl in batches(n):
        metric.update(torch.from_numpy(probs[sl]), torch.from_numpy(y[sl]))
    out = metric.compute()
    per_acc = [accuracy_score(y[:, i], pred[:, i]) for i in range(a)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_bal = [balanced_accuracy_score(y[:, i], pred[:, i]) for i in range(a)]
    assert out["mean_acc"] == pytest.approx(np.mean(per_acc))
    assert out["balanced_acc"] == pytest.approx(np.mean(per_bal))
    for i, name in enumerate(names):
        assert out[f"acc/{name}"] == pytest.approx(per_acc[i])
        assert out[f"balanced_acc/{name}"] == pytest.approx(per_bal[i])
    assert out["n"] == n
    assert any("attr5" in note for note in out["notes"])


def test_fairness_binary_hand_computed():
    # group a: scores .9 .8 .3 .6, labels 1 1 0 0 -> predictions 1 1 0 1
    # group b: scores .7 .2 .4 .1 .55, labels 1 1 0 0 0 -> predictions 1 0 0 0 1
    scores = torch.tensor([0.9, 0.7, 0.8, 0.2, 0.3, 0.4, 0.6, 0.1, 0.55])
    labels = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0])
    groups = ["a", "b", "a", "b", "a", "b", "a", "b", "b"]
    metric = FairnessMetrics("skin_tone", "binary")
    metric.update(scores[:4], labels[:4], groups[:4])
    metric.update(scores[4:], labels[4:], groups[4:])
    out = metric.compute()
    assert (out["n/a"], out["n/b"]) == (4, 5)
    assert out["acc/a"] == pytest.approx(0.75) and out["acc/b"] == pytest.approx(0.6)
    assert out["acc_gap"] == pytest.approx(0.15)
    assert out["auc/a"] == pytest.approx(1.0) and out["auc/b"] == pytest.approx(4 / 6)
    assert out["auc_gap"] == pytest.approx(1 / 3)
    assert out["pos_rate/a"] == pytest.approx(0.75) and out["pos_rate/b"] == pytest.approx(0.4)
    assert out["dp_diff"] == pytest.approx(0.35)
    assert (out["tpr/a"], out["tpr/b"]) == (pytest.approx(1.0), pytest.approx(0.5))
    assert (out["fpr/a"], out["fpr/b"]) == (pytest.approx(0.5), pytest.approx(1 / 3))
    assert out["tpr_gap"] == pytest.approx(0.5) and out["fpr_gap"] == pytest.approx(1 / 6)
    assert out["eo_diff"] == pytest.approx(0.5)
    assert out["notes"] == []

    # a sample without a value joins "unknown": a real scored .9 (wrong, positive; no TPR defined)
    metric.update(torch.tensor([0.9]), torch.tensor([0]), [None])
    out = metric.compute()
    assert out["n/unknown"] == 1 and out["acc/unknown"] == 0.0 and math.isnan(out["auc/unknown"])
    assert out["acc_gap"] == pytest.approx(0.75)
    assert out["auc_gap"] == pytest.approx(1 / 3)
    assert out["dp_diff"] == pytest.approx(0.6)
    assert out["eo_diff"] == pytest.approx(2 / 3)


def test_fairness_multiclass_and_multilabel_hand_computed():
    mc = FairnessMetrics("age", "multiclass")
    mc.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), ["x", "x", "x"])
    mc.update(torch.tensor([[0.1, 0.2, 0.7], [0.0, 0.1, 0.9]]), torch.tensor([2, 0]), ["y", "y"])
    out = mc.compute()
    assert out["acc/x"] == pytest.approx(2 / 3) and out["acc/y"] == pytest.approx(0.5)
    assert out["acc_gap"] == pytest.approx(1 / 6)
    assert "auc_gap" not in out and "dp_diff" not in out

    ml = FairnessMetrics("sex", "multilabel")
    ml.update(torch.tensor([[0.9, 0.1], [0.6, 0.7], [0.2, 0.2]]), torch.tensor([[1, 0], [0, 1], [1, 1]]),
              ["x", "x", "y"])
    out = ml.compute()
    assert out["acc/x"] == pytest.approx(0.75) and out["acc/y"] == 0.0 and out["acc_gap"] == pytest.approx(0.75)

    one = FairnessMetrics("sex", "multiclass")
    one.update(torch.tensor([1]), torch.tensor([1]), ["x"])
    out = one.compute()
    assert math.isnan(out["acc_gap"]) and "one subgroup only" in out["notes"][0]
    with pytest.raises(InputError, match="kind"):
        FairnessMetrics("sex", "regression")


def test_stable_hash_is_fixed_across_processes_and_versions():
    # a constant, not python's salted hash(): every rank and every later run keys a string alike
    assert stable_hash("original_sequences/youtube/c23/videos/000.mp4") == 8258335065779017889
    assert 0 <= stable_hash("x") < 2**63 and stable_hash("x") != stable_hash("y")
