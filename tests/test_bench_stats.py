"""The report's statistics (`lssat.bench.inference`, `evidence`, `verdicts`) against scipy on fixed
inputs, the per-cell "learned" tests on fabricated predictions, and the verdicts on fabricated grids."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lssat.bench import inference as inf
from lssat.bench.report import write_report
from lssat.bench.results import load_results
from lssat.bench.runner import run_benchmark
from lssat.bench.spec import load_spec
from lssat.bench.stats import friedman
from lssat.bench.verdicts import verdicts
from lssat.engine.record import write_predictions

A = np.array([0.81, 0.84, 0.79, 0.88, 0.83, 0.86])
B = np.array([0.80, 0.80, 0.78, 0.85, 0.84, 0.82])


def test_paired_t_matches_scipy():
    res = inf.paired_t(A, B)
    ref = stats.ttest_rel(A, B)
    assert res["ran"] and res["df"] == 5
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    d = A - B
    half = stats.t.ppf(0.975, 5) * d.std(ddof=1) / math.sqrt(6)
    assert res["ci"] == pytest.approx((d.mean() - half, d.mean() + half))
    assert not inf.paired_t([0.5], [0.4])["ran"]
    assert "no spread" in inf.paired_t([0.5, 0.6], [0.4, 0.5])["reason"]
    assert inf.paired_t([0.5, np.nan, 0.7, 0.9], [0.4, 0.1, 0.5, 0.6])["n"] == 3  # nan pairs dropped


def test_holm_hand_checked():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.06 for the last
    adjusted = inf.holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])
    assert inf.holm([0.6, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert inf.holm([]).size == 0


def test_friedman_and_nemenyi_match_scipy():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(8, 4)) + [0, 0.5, 1.0, 1.5], columns=list("abcd"))
    res = friedman(table)
    ref = stats.friedmanchisquare(*table.to_numpy().T)
    assert res["statistic"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    for k in range(2, 11):
        assert inf.nemenyi_q(k) == pytest.approx(stats.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2), abs=2e-3)
    assert inf.critical_difference(4, 8) == pytest.approx(2.569 * math.sqrt(4 * 5 / 48))
    assert inf.cliques({"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2}, 1.0) == [["a", "b"], ["c", "d"]]
    assert inf.cliques({"a": 1.0, "b": 2.0, "c": 3.0}, 1.5) == [["a", "b"], ["b", "c"]]


def _deepfake(good: bool, n_videos: int = 40, frames: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(n_videos) % 2, frames)
    score = rng.random(label.size)
    if good:
        score = np.clip(0.5 * score + 0.5 * label, 0, 1)
    return {"index": np.arange(label.size), "target": label, "score": score.astype(np.float32),
            "video_id": np.repeat([f"v{i:03d}" for i in range(n_videos)], frames)}


def _expression(good: bool, n: int = 200, c: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.choice(c, n, p=[0.4, 0.3, 0.2, 0.1])
    logits = rng.normal(size=(n, c)) + (3 * np.eye(c)[target] if good else 0)
    score = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"index": np.arange(n), "target": target, "score": score}


def _attributes(good: bool, n: int = 300, a: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = (rng.random((n, a)) < [0.2, 0.5, 0.7, 0.9, 0.4]).astype(int)
    score = rng.random((n, a))
    if good:
        score = np.clip(0.3 * score + 0.7 * target, 0, 1)
    return {"index": np.arange(n), "target": target, "score": score}


def test_learned_tests_match_scipy():
    pred = _expression(True)
    res = inf.learned(pred, "expression")
    correct = int((pred["score"].argmax(1) == pred["target"]).sum())
    base = np.bincount(pred["target"]).max() / pred["target"].size
    assert res["baseline"] == pytest.approx(base)
    assert res["p"] == pytest.approx(stats.binomtest(correct, 200, base, alternative="greater").pvalue)
    pred = _deepfake(True)
    scores, labels, videos = inf.video_level(pred)
    assert videos and scores.size == 40
    res = inf.learned(pred, "deepfake")
    ref = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="greater")
    assert res["p"] == pytest.approx(ref.pvalue) and res["value"] == pytest.approx(inf.auc(scores, labels))
    pred = _attributes(True)
    res = inf.learned(pred, "attributes")
    truth = pred["target"].astype(bool)
    majority = truth.mean(0) >= 0.5
    d = ((pred["score"] >= 0.5) == truth).mean(1) - (truth == majority).mean(1)
    assert res["p"] == pytest.approx(stats.ttest_1samp(d, 0, alternative="greater").pvalue)
    assert res["baseline"] == pytest.approx(np.maximum(truth.mean(0), 1 - truth.mean(0)).mean())


@pytest.mark.parametrize("kind, make", [("deepfake", _deepfake), ("expression", _expression),
                                        ("attributes", _attributes)])
def test_random_scores_are_not_above_chance_and_good_ones_learned(kind, make):
    assert inf.learned(make(True), kind)["learned"]
    shuffled = make(True)
    rng = np.random.default_rng(1)
    shuffled["target"] = rng.permutation(shuffled["target"])  # labels no longer match the scores
    if kind == "deepfake":  # keep one label per video: shuffle whole videos
        shuffled = make(False)
    assert not inf.learned(shuffled, kind)["learned"]
    assert not inf.learned(make(False, seed=3), kind)["learned"]


def test_paired_bootstrap_auc_equals_the_resample_by_resample_definition():
    rng = np.random.default_rng(3)
    videos, frames = 40, 4
    target = np.repeat(rng.integers(0, 2, videos), frames)
    vid = np.repeat(np.arange(videos), frames).astype(str)

    def pred(gain):
        score = np.round(np.clip(target * gain + rng.random(target.size), 0, 2) / 2, 2)  # ties on purpose
        return {"index": np.arange(target.size), "target": target, "score": score, "video_id": vid}
    pairs = [(pred(0.6), pred(0.2)), (pred(0.5), pred(0.4))]
    res = inf.paired_bootstrap(pairs, "deepfake", resamples=150, seed=7)
    # the definition: the same stratified draws, one AUC per model per resample via `auc`
    cells = [inf.units(p, "deepfake") for p in inf.align([p for pair in pairs for p in pair])]
    label = cells[0]["label"]
    strata = [np.flatnonzero(label == v) for v in (0, 1)]
    draw_rng = np.random.default_rng(7)
    expected = []
    for _ in range(150):
        idx = np.concatenate([draw_rng.choice(s, s.size) for s in strata])
        values = [inf.auc(c["score"][idx], c["label"][idx]) for c in cells]
        expected.append(np.mean([a - b for a, b in zip(values[::2], values[1::2])]))
    low, high = np.quantile(expected, [0.025, 0.975])
    assert res["ci"] == pytest.approx((low, high), abs=1e-12)
    full = [inf.auc(c["score"], c["label"]) for c in cells]
    assert res["mean"] == pytest.approx(np.mean([full[0] - full[1], full[2] - full[3]]), abs=1e-12)


def test_resampled_aucs_equal_auc_bit_for_bit():
    rng = np.random.default_rng(11)
    label = rng.integers(0, 2, 60)
    scores = np.round(rng.random((3, 60)) + label * rng.random((3, 1)), 1)  # many ties
    strata = [np.flatnonzero(label == v) for v in (0, 1)]
    idx = np.stack([np.concatenate([rng.choice(s, s.size) for s in strata]) for _ in range(25)])
    got = inf._resampled_aucs(scores, label, idx)
    expected = np.array([[inf.auc(row[i], label[i]) for i in idx] for row in scores])
    assert got.shape == (3, 25) and np.array_equal(got, expected)


def test_paired_bootstrap():
    good, bad = _deepfake(True), _deepfake(False, seed=5)
    res = inf.paired_bootstrap([(good, bad)], "deepfake", resamples=300)
    assert res["ran"] and res["metric"] == "video_auc" and res["units"] == 40
    assert res["ci"][0] > 0 and res["p"] < 0.01
    same = inf.paired_bootstrap([(bad, bad)], "deepfake", resamples=100)
    assert same["mean"] == 0 and same["p"] == 1.0
    e_good, e_bad = _expression(True), _expression(False)
    res = inf.paired_bootstrap([(e_good, e_bad)], "expression", resamples=300)
    acc = lambda p: (p["score"].argmax(1) == p["target"]).mean()  # noqa: E731
    assert res["mean"] == pytest.approx(acc(e_good) - acc(e_bad)) and res["ci"][0] > 0
    a_good, a_bad = _attributes(True), _attributes(False)
    res = inf.paired_bootstrap([(a_good, a_bad)], "attributes", resamples=200)
    mean_acc = lambda p: ((p["score"] >= 0.5) == p["target"]).mean()  # noqa: E731
    assert res["mean"] == pytest.approx(mean_acc(a_good) - mean_acc(a_bad))


def test_predictions_file_round_trip(tmp_path):
    pred = _deepfake(True)
    rel = write_predictions(tmp_path, "test", pred)
    back = inf.load_predictions(tmp_path / rel)
    assert rel == "predictions/test.npz" and set(back) == set(pred)
    assert (back["video_id"] == pred["video_id"]).all()


# ---------------------------------------------------------------- verdicts on fabricated grids

def _spec(seeds=(0, 1, 2), backbones=("s", "m", "b"), tasks=("attributes",)):
    return {"name": "v", "base": {"trainer": {"epochs": 1}},
            "backbones": {b: {"model": {"backbone": b}} for b in backbones},
            "tasks": {t: {"kind": t, "config": {"data": {"synthetic": {"task": t}}}} for t in tasks},
            "recipes": ["supervised", "lssat-ldp"], "seeds": list(seeds)}


def _fake(gain: float, with_predictions: bool = False):
    def train(config, run_dir, resume):
        bb, task = config["model"]["backbone"], config["data"]["synthetic"]["task"]
        recipe, seed = config["recipe"]["name"], config["trainer"]["seed"]
        rng = random.Random(f"{bb}{task}{recipe}{seed}")
        value = 0.8 + {"s": 0.0, "m": 0.01, "b": 0.02}[bb] + rng.gauss(0, 0.01) + (gain if recipe != "supervised" else 0)
        key = {"deepfake": "video_auc", "attributes": "mean_acc", "expression": "acc"}[task]
        record = {"run_id": "abc", "config": config, "status": "done", "seed": seed,
                  "metrics": {"val": {key: value}, "test": {key: value, "n": 300}},
                  "cost": {"parameters": {"s": 1e6, "m": 4e6, "b": 1.6e7}[bb]}}
        if with_predictions:
            pred = _deepfake(recipe != "supervised", seed=seed + 11 * len(recipe))
            record["predictions"] = {"test": write_predictions(Path(run_dir) / "abc", "test", pred)}
        return record
    return train


def _verdicts(tmp_path, spec, train):
    run_benchmark(load_spec(spec), tmp_path, train_fn=train, progress=False, write_report=False)
    return verdicts(load_results(tmp_path))


def test_a_clear_gain_is_a_helps_verdict(tmp_path):
    v = _verdicts(tmp_path, _spec(), _fake(0.03))
    (row,) = v["recipes"]
    assert row["answer"] == "helps" and row["test"] == "paired t" and row["pairs"] == 9
    assert row["p_holm"] < 0.05 and row["ci_low"] > 0
    assert "**helps**" in row["text"] and "paired t over 9 (backbone, seed) pairs, df = 8" in row["text"]
    assert "significant" in row["text"] and "Holm-adjusted" in row["text"]


def test_noise_is_not_resolved(tmp_path):
    v = _verdicts(tmp_path, _spec(), _fake(0.0))
    (row,) = v["recipes"]
    assert row["answer"] == "not resolved" and row["ci_low"] <= 0 <= row["ci_high"]
    assert "not resolved" in row["text"] and "includes 0" in row["text"]


def test_one_seed_falls_back_to_the_bootstrap_and_says_evidence_is_thin(tmp_path):
    spec = _spec(seeds=(0,), backbones=("s",), tasks=("deepfake",))
    v = _verdicts(tmp_path, spec, _fake(0.0, with_predictions=True))
    (row,) = v["recipes"]
    assert row["test"] == "paired bootstrap" and row["boot_units"] == 40
    assert row["answer"] == "helps"  # the lssat-ldp predictions are informative, supervised's random
    assert "Evidence is thin" in row["text"] and "one seed per cell" in row["text"]
    learned = v["evidence"].learned.set_index("cell").learned
    assert learned["s_deepfake_lssat-ldp_s0"] and not learned["s_deepfake_supervised_s0"]
    assert v["learned"]["not_learned"] == ["s_deepfake_supervised_s0"]
    md = write_report(tmp_path, pictures=False).read_text()
    verdict = md.split("## Verdicts")[1].split("## Main results")[0]
    assert "paired bootstrap over 40 videos" in verdict and "Not above chance: s_deepfake_supervised_s0" in verdict
    assert (tmp_path / "tables/learned.csv").is_file() and (tmp_path / "tables/holm_family.csv").is_file()


def test_backbone_verdicts_and_cd_diagram(tmp_path):
    spec = _spec(tasks=("attributes", "expression"))
    v = _verdicts(tmp_path, spec, _fake(0.03))
    q1 = {x["task"]: x for x in v["questions"]["q1"]}
    assert q1["attributes"]["best"] == "b"
    assert v["evidence"].backbones["all tasks"]["n"] == 2 * 2 * 3  # task x recipe x seed blocks
    md = write_report(tmp_path, pictures=False).read_text()
    assert "plots/cd_all.png" in md and (tmp_path / "plots/cd_attributes.png").is_file()
    assert "### Does one backbone serve all tasks?" in md
