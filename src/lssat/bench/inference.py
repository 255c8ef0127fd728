"""Statistical tests behind the report's verdicts: paired t, paired bootstrap, Holm, Friedman with
the Nemenyi critical difference, and the per-cell "learned" tests against a constant predictor.

Every function is plain numpy/scipy on arrays; the report's wiring lives in `lssat.bench.evidence`.
Tests return dicts with ``ran`` (bool) and ``reason`` (words) when they could not run.

- `paired_t`: mean of the paired differences a - b, its 95% CI ``mean ± t(0.975, df = n-1) · sd/√n``
  and the two-sided p of the paired t-test (= ``scipy.stats.ttest_rel``).
- `paired_bootstrap`: resample the *test samples* (videos for a video AUC), the same resample for
  both models of every pair; the statistic is the mean over pairs of metric(a) - metric(b);
  percentile 95% CI and p = twice the smaller share of resampled differences on either side of 0.
  It measures test-set sampling noise only, not seed-to-seed variation.
- `holm`: Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1).
- `critical_difference`: Nemenyi CD = q_α · sqrt(k (k+1) / (6 N)), q_α = studentized range / √2.
- `learned`: one-sided tests (α = 0.05) that a cell beats the best constant prediction on the test split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
_CHUNK = 100  # resamples evaluated together (memory: cells x chunk x units floats)


# ---------------------------------------------------------------- paired seed-level test

def paired_t(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Paired t-test of a - b (pairs with a nan in either are dropped); df = n - 1."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    n = int(d.size)
    out: dict[str, Any] = {"n": n, "df": n - 1, "mean": float(d.mean()) if n else math.nan}
    if n < 2:
        return {**out, "ran": False, "reason": f"needs at least 2 pairs (has {n})"}
    sd = float(d.std(ddof=1))
    if sd == 0:
        return {**out, "ran": False, "sd": 0.0, "reason": "every pair differs by the same amount (no spread)"}
    se = sd / math.sqrt(n)
    t = out["mean"] / se
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(t), n - 1))
    return {**out, "ran": True, "sd": sd, "se": se, "t": t, "p": p, "ci": (out["mean"] - half, out["mean"] + half)}


# ---------------------------------------------------------------- multiple testing

def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values; nan entries stay nan and do not count in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if not m:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


# ---------------------------------------------------------------- ranks and critical difference

_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """q_α of the Nemenyi test: the studentized range quantile (infinite df) divided by √2."""
    if alpha == 0.05 and k in _Q05:
        return _Q05[k]
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks of k treatments over n blocks."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n)) if k >= 2 and n >= 1 else math.nan


def cliques(average: dict[str, float], cd: float) -> list[list[str]]:
    """Maximal groups of treatments whose average ranks lie within `cd` of each other (size >= 2),
    best rank first: the bars of a critical-difference diagram."""
    names = sorted(average, key=average.get)
    groups: list[list[str]] = []
    for i, name in enumerate(names):
        group = [m for m in names[i:] if average[m] - average[name] <= cd]
        if len(group) > 1 and not any(set(group) <= set(g) for g in groups):
            groups.append(group)
    return groups


# ---------------------------------------------------------------- per-sample scores

def load_predictions(path: Path | str) -> dict[str, np.ndarray]:
    """A predictions file (`lssat.engine.record.write_predictions`) as a dict of arrays."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC from ranks (ties count half); nan when a class is absent."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if not n1 or not n0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _resampled_aucs(scores: np.ndarray, label: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """`auc` of every cell on every resample: scores (cells, units), label (units,), idx (resamples,
    units) the units each resample drew (the same number of positives in every resample); returns
    (cells, resamples).

    Each resample is the units weighted by how often it drew them, so one sort per cell serves all
    resamples: the Mann-Whitney count sum over tie groups g (in score order) of P_g (N_before_g + N_g / 2),
    P_g and N_g the group's drawn positives and negatives. Every term is a multiple of 1/2, so the sums
    are exact in float64 and equal the rank formula of `auc` bit for bit, without ranking
    resamples x units scores per cell.
    """
    label = np.asarray(label).astype(bool)
    n_res, n_units = idx.shape
    n1 = int(label[idx[0]].sum())
    n0 = n_units - n1
    flat = (np.arange(n_res)[:, None] * n_units + idx).ravel()
    weights = np.bincount(flat, minlength=n_res * n_units).reshape(n_res, n_units).astype(float)
    out = np.empty((scores.shape[0], n_res))
    for c, row in enumerate(np.asarray(scores, float)):
        order = np.argsort(row, kind="stable")
        ranked = row[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        w = weights[:, order]
        pos = np.add.reduceat(w * label[order], starts, axis=1)
        neg = np.add.reduceat(w, starts, axis=1) - pos  # integer counts: exact
        below = np.cumsum(neg, axis=1) - neg
        out[c] = (pos * (below + neg / 2)).sum(axis=1) / (n1 * n0)
    return out


def video_level(pred: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Deepfake per-video scores (mean frame score) and labels (fake if any frame is), as the engine's
    video AUC; frames without a video id are left out. Without any video id: the frames themselves.
    Returns (scores, labels, whether these are videos)."""
    scores, target = np.asarray(pred["score"], float), np.asarray(pred["target"], int)
    videos = pred.get("video_id")
    if videos is None or not (videos != "").any():
        return scores, target, False
    keep = videos != ""
    _, inverse = np.unique(videos[keep], return_inverse=True)
    counts = np.bincount(inverse)
    label = np.zeros(counts.size, int)
    np.maximum.at(label, inverse, target[keep])
    return np.bincount(inverse, scores[keep]) / counts, label, True


def units(pred: dict[str, np.ndarray], kind: str) -> dict[str, Any]:
    """What a bootstrap resamples for one cell: per-unit data and the metric's name.

    deepfake: videos (score, label) for the video AUC (frames when there are no video ids);
    expression: per-sample correctness (accuracy); attributes: per-sample share of correctly
    predicted attributes at threshold 0.5 (its mean is the mean accuracy)."""
    if kind == "deepfake":
        scores, labels, videos = video_level(pred)
        return {"kind": "auc", "score": scores, "label": labels, "metric": "video_auc" if videos else "frame_auc"}
    score, target = np.asarray(pred["score"]), np.asarray(pred["target"])
    if kind == "expression":
        return {"kind": "mean", "value": (score.argmax(axis=1) == target).astype(float), "metric": "acc"}
    return {"kind": "mean", "value": ((score >= 0.5) == target.astype(bool)).mean(axis=1), "metric": "mean_acc"}


def align(preds: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The predictions restricted to the sample indices all of them hold (same order)."""
    common = preds[0]["index"]
    for p in preds[1:]:
        common = np.intersect1d(common, p["index"])
    out = []
    for p in preds:
        where = np.searchsorted(p["index"], common)
        out.append({k: v[where] for k, v in p.items()})
    return out


def paired_bootstrap(pairs: Sequence[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]], kind: str,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Bootstrap of the mean over pairs of metric(a) - metric(b), resampling the shared test units.

    Every pair's two models (and all pairs, which share the test split) see the same resample;
    AUC resamples are stratified by label (each resample keeps the number of real and fake videos)."""
    if not pairs:
        return {"ran": False, "reason": "no pair with per-sample scores"}
    aligned = align([p for pair in pairs for p in pair])
    cells = [units(p, kind) for p in aligned]
    metric = cells[0]["metric"]
    rng = np.random.default_rng(seed)
    if cells[0]["kind"] == "auc":
        label = cells[0]["label"]
        if not (label.any() and (~label.astype(bool)).any()):
            return {"ran": False, "reason": "the test split holds one class only", "metric": metric}
        strata = [np.flatnonzero(label == v) for v in (0, 1)]

        def draw() -> np.ndarray:
            return np.concatenate([rng.choice(s, s.size) for s in strata])

        scores = np.stack([c["score"] for c in cells])  # (cells, units)

        def stats(idx: np.ndarray) -> np.ndarray:  # idx: (resamples, units) -> one mean gain per resample
            values = _resampled_aucs(scores, label, idx)
            return (values[::2] - values[1::2]).mean(axis=0)
        n_units = label.size
    else:
        diff = np.mean([a["value"] - b["value"] for a, b in zip(cells[::2], cells[1::2])], axis=0)
        n_units = diff.size
        if not n_units:
            return {"ran": False, "reason": "no shared test sample", "metric": metric}

        def draw() -> np.ndarray:
            return rng.integers(0, n_units, n_units)

        def stats(idx: np.ndarray) -> np.ndarray:
            return diff[idx].mean(axis=-1)
    observed = float(stats(np.arange(n_units)[None])[0])
    samples = np.concatenate([stats(np.stack([draw() for _ in range(min(_CHUNK, resamples - start))]))
                              for start in range(0, resamples, _CHUNK)])
    low, high = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    # two-sided: twice the smaller tail share at 0, floored at 1 / resamples (never a bare 0)
    p = max(min(1.0, 2 * min(float((samples <= 0).mean()), float((samples >= 0).mean()))), 1 / resamples)
    return {"ran": True, "metric": metric, "mean": observed, "ci": (float(low), float(high)), "p": p,
            "pairs": len(pairs), "units": int(n_units), "resamples": resamples}


# ---------------------------------------------------------------- learned or not

LEARNED_CRITERIA = {
    "expression": "accuracy above the best constant prediction's accuracy on the test split (the majority "
                  "class share), one-sided exact binomial test",
    "deepfake": "video AUC above 0.5, one-sided Mann-Whitney U test of fake against real video scores "
                "(frame AUC on frames when there are no video ids)",
    "attributes": "mean accuracy above the mean of the per-attribute majority rates on the test split (the best "
                  "constant prediction per attribute), one-sided one-sample t-test on the per-sample difference "
                  "between the model's and the constant prediction's share of correct attributes",
}
FALLBACK_MARGIN = 0.05


def learned(pred: dict[str, np.ndarray], kind: str, alpha: float = 0.05) -> dict[str, Any]:
    """Whether one cell beats the best constant prediction on its test split (one-sided, at `alpha`)."""
    from scipy import stats

    score, target = np.asarray(pred["score"]), np.asarray(pred["target"])
    if kind == "expression":
        n = int(target.size)
        baseline = float(np.bincount(target).max() / n) if n else math.nan
        correct = int((score.argmax(axis=1) == target).sum())
        p = float(stats.binomtest(correct, n, baseline, alternative="greater").pvalue) if n else math.nan
        value, test = correct / n if n else math.nan, "binomial"
    elif kind == "deepfake":
        scores, labels, _ = video_level(pred)
        baseline, test = 0.5, "Mann-Whitney U"
        pos, neg = scores[labels == 1], scores[labels == 0]
        if not pos.size or not neg.size:
            return {"ran": False, "reason": "the test split holds one class only", "baseline": baseline}
        res = stats.mannwhitneyu(pos, neg, alternative="greater")
        value, p = float(res.statistic) / (pos.size * neg.size), float(res.pvalue)
    else:
        truth = target.astype(bool)
        majority = truth.mean(axis=0) >= 0.5
        d = ((score >= 0.5) == truth).mean(axis=1) - (truth == majority).mean(axis=1)
        baseline, value, test = float((truth == majority).mean()), float(((score >= 0.5) == truth).mean()), "t"
        if d.size < 2 or np.ptp(d) == 0:
            p = 0.0 if d.size and d.mean() > 0 else 1.0
        else:
            p = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    return {"ran": True, "value": value, "baseline": baseline, "p": p, "test": test,
            "learned": bool(p < alpha), "n": int(target.shape[0])}


def learned_from_metric(value: float, baseline: float) -> dict[str, Any]:
    """Fallback without per-sample scores: the metric exceeds the baseline by `FALLBACK_MARGIN`."""
    if value is None or baseline is None or math.isnan(value) or math.isnan(baseline):
        return {"ran": False, "reason": "no per-sample scores and no known baseline"}
    return {"ran": True, "value": value, "baseline": baseline, "p": math.nan, "test": "margin",
            "learned": bool(value > baseline + FALLBACK_MARGIN)}


def cached(loader: Callable[[str], Any]) -> Callable[[str], Any]:
    """A per-path memo for `load_predictions` (one report reads each file several times)."""
    memo: dict[str, Any] = {}

    def get(path: str) -> Any:
        if path not in memo:
            try:
                memo[path] = loader(path)
            except (OSError, ValueError, KeyError):
                memo[path] = None
        return memo[path]
    return get
