"""The report's "Generalisation" section: how deepfake detectors do on data they were not trained on.

Shown only when a study has extra test sets or leave-one-method-out groups (`lssat.bench.protocols`).
Blocks, in order:

- a summary per recipe: in-domain video AUC (trained and tested on every method), cross-method
  (mean over the leave-one-method-out groups of the video AUC on the held-out method) and
  cross-domain (trained on every method, tested on each extra test set), with 95% intervals;
- the train -> test matrix: rows are training groups (every method, or all but one), columns the
  test sets (in-domain test split, the held-out method, each extra set); video AUC, frame AUC, EER
  and AP, each with its interval, as the mean over the cells (backbones, seeds) of a recipe;
- per-method tables in DeepfakeBench's style: AUC per manipulation method on the in-domain test
  and on each extra set (from the engine's ``auc/<method>`` metrics), and the held-out method's
  video AUC per leave-one-method-out group;
- ROC and DET curves (video level) of each recipe's main cell per test set.

Intervals: percentile bootstrap (1000 resamples) over the *test videos*, stratified by label (each
resample keeps the number of real and fake videos); frame-level metrics resample whole videos with
their frames. The same resamples serve every cell of a test set, so the mean over cells has one
interval; cross-method intervals average independent resamples of the four held-out sets. They
measure test-set sampling noise only, not seed-to-seed variation. Point values are the engine's
metrics (`lssat.metrics.deepfake`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lssat.bench import inference as inf
from lssat.bench.html import Block, Bullets, Heading, Image, Table, Text
from lssat.bench.results import Results, predictions_path
from lssat.bench.store import ResultsStore

METRICS = ("video_auc", "frame_auc", "eer", "ap")
NAMES = {"video_auc": "video AUC", "frame_auc": "frame AUC", "eer": "EER", "ap": "AP"}
IN_DOMAIN, HELDOUT = "test", "heldout"
RESAMPLES = 1000
CONFIDENCE = 0.95


# ----------------------------------------------------------------------------------- the cells

def cell_table(results: Results) -> pd.DataFrame:
    """One row per (done deepfake cell, test set): axes, protocol group, metrics and predictions.

    Columns: cell_id, backbone, recipe, seed, fraction, task (the group's label), base (the task
    the group came from), held_out (the held-out method, or None), test_set (``test``, ``heldout``
    or an eval set's name), metrics (dict), predictions (path relative to the benchmark folder, or
    None), error (an eval set that failed).
    """
    entries = ResultsStore(results.bench_dir).load()
    done = set(results.frame.cell_id) if len(results.frame) else set()
    rows = []
    for cid, entry in entries.items():
        axes = entry.get("axes") or {}
        if cid not in done or axes.get("task_kind") != "deepfake":
            continue
        record = entry.get("record") or {}
        protocol = axes.get("protocol") or {}
        base = {"cell_id": cid, "backbone": axes.get("backbone"), "recipe": axes.get("recipe"),
                "seed": axes.get("seed"), "fraction": axes.get("fraction"), "task": axes.get("task"),
                "base": protocol.get("task") or axes.get("task"), "held_out": protocol.get("held_out")}
        rows.append({**base, "test_set": IN_DOMAIN, "metrics": (record.get("metrics") or {}).get("test") or {},
                     "predictions": predictions_path(entry), "error": None})
        for name, result in (record.get("eval_sets") or {}).items():
            if not isinstance(result, dict):
                continue
            rel = result.get("predictions")
            path = str(Path(str(entry.get("run_dir"))) / str(record.get("run_id") or "") / rel) if rel else None
            rows.append({**base, "test_set": name, "metrics": result.get("metrics") or {}, "predictions": path,
                         "error": result.get("error")})
    return pd.DataFrame(rows)


def applies(results: Results) -> bool:
    """Whether the study has extra test sets or leave-one-method-out groups."""
    table = cell_table(results) if len(results.frame) else pd.DataFrame()
    return bool(len(table)) and (bool((table.test_set != IN_DOMAIN).any()) or bool(table.held_out.notna().any()))


# ----------------------------------------------------------------------------------- bootstrap

def _weighted(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """AUC, EER and AP of one score vector under many resample weights (R, n), vectorised.

    The ROC curve's points are the distinct scores (tied scores move together, and a tie between a
    fake and a real counts half in the AUC), as in `lssat.metrics.deepfake`: AP is scikit-learn's
    step-wise definition, EER interpolates FNR = FPR linearly on the ROC curve."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    w = weights[:, order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # one group per distinct score
    pos_g = np.add.reduceat(w * y, starts, axis=1)
    neg_g = np.add.reduceat(w * ~y, starts, axis=1)
    tp, fp = np.cumsum(pos_g, axis=1), np.cumsum(neg_g, axis=1)
    pos, neg = tp[:, -1], fp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (neg_g * (tp - pos_g + 0.5 * pos_g)).sum(axis=1) / (pos * neg)
        ap = (pos_g * tp / np.maximum(tp + fp, 1e-12)).sum(axis=1) / pos
        fpr = np.concatenate([np.zeros((len(w), 1)), fp / neg[:, None]], axis=1)
        fnr = np.concatenate([np.ones((len(w), 1)), 1 - tp / pos[:, None]], axis=1)
    gap = fnr - fpr
    k = np.maximum(np.argmax(gap <= 0, axis=1), 1)
    rows = np.arange(len(w))
    g0, g1 = gap[rows, k - 1], gap[rows, k]
    same = g0 == g1
    share = np.where(same, 0.0, g0 / np.where(same, 1.0, g0 - g1))
    eer = fpr[rows, k - 1] + share * (fpr[rows, k] - fpr[rows, k - 1])
    return {"auc": auc, "ap": ap, "eer": eer}


def _video_keys(pred: dict[str, np.ndarray]) -> np.ndarray:
    videos = pred.get("video_id")
    if videos is None or not (videos != "").any():
        return np.asarray([f"#frame{i}" for i in pred["index"]])
    return np.where(videos == "", np.asarray([f"#frame{i}" for i in pred["index"]]), videos)


class SetBootstrap:
    """Resamples of one test set's videos, shared by every cell evaluated on it."""

    def __init__(self, preds: list[dict[str, np.ndarray]], seed: int = 0, resamples: int = RESAMPLES) -> None:
        keys = [_video_keys(p) for p in preds]
        labels: dict[str, int] = {}
        for p, k in zip(preds, keys):
            for key, label in zip(k.tolist(), np.asarray(p["target"]).tolist()):
                labels[key] = max(labels.get(key, 0), int(label))
        self.videos = np.asarray(sorted(labels))
        label = np.asarray([labels[v] for v in self.videos])
        rng = np.random.default_rng(seed)
        counts = np.zeros((resamples, len(self.videos)), np.int32)
        for value in (0, 1):
            members = np.flatnonzero(label == value)
            if members.size:
                draws = rng.integers(0, members.size, (resamples, members.size))
                np.add.at(counts, (np.arange(resamples)[:, None], members[draws]), 1)
        self.counts, self.label = counts, label

    def metrics(self, pred: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-resample video AUC, frame AUC, EER and AP of one cell (arrays of length R)."""
        keys = _video_keys(pred)
        where = np.searchsorted(self.videos, keys)
        frame = _weighted(np.asarray(pred["score"], float), np.asarray(pred["target"]), self.counts[:, where])
        scores, labels, _ = inf.video_level(pred)
        video_keys = np.unique(keys[np.asarray(pred.get("video_id", np.full(len(keys), "")) != "")]) \
            if pred.get("video_id") is not None and (pred["video_id"] != "").any() else keys
        vw = self.counts[:, np.searchsorted(self.videos, video_keys)]
        video = _weighted(np.asarray(scores, float), labels, vw)
        return {"video_auc": video["auc"], "frame_auc": frame["auc"], "eer": frame["eer"], "ap": frame["ap"]}


def _interval(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        return math.nan, math.nan
    low, high = np.quantile(samples, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def group_estimate(rows: pd.DataFrame, load: Callable[[Any], Any], seed: int = 0) -> dict[str, Any]:
    """Mean over the cells of `rows` (one test set) of each metric, with bootstrap intervals and the
    per-resample means (``samples``) for averaging over test sets."""
    out: dict[str, Any] = {"cells": len(rows)}
    for metric in METRICS:
        values = [r.get(metric) for r in rows.metrics]
        values = [float(v) for v in values if isinstance(v, (int, float)) and v is not None]
        out[metric] = float(np.mean(values)) if values else math.nan
    preds = [load(p) for p in rows.predictions]
    usable = [p for p in preds if p is not None and "score" in p and np.asarray(p["score"]).ndim == 1]
    out["with_scores"] = len(usable)
    if not usable or len(usable) != len(rows):
        return out
    boot = SetBootstrap(usable, seed)
    per_cell = [boot.metrics(p) for p in usable]
    out["samples"] = {m: np.mean([c[m] for c in per_cell], axis=0) for m in METRICS}
    for metric in METRICS:
        out[f"{metric}_ci"] = _interval(out["samples"][metric])
    return out


def average_estimates(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of several test sets' estimates (independent resamples averaged resample-wise)."""
    out: dict[str, Any] = {"cells": sum(p["cells"] for p in parts), "sets": len(parts)}
    for metric in METRICS:
        out[metric] = float(np.mean([p[metric] for p in parts])) if parts else math.nan
        if parts and all("samples" in p for p in parts):
            out[f"{metric}_ci"] = _interval(np.mean([p["samples"][metric] for p in parts], axis=0))
    return out


def fmt(estimate: dict[str, Any] | None, metric: str) -> str:
    """``0.912 [0.870, 0.948]`` (no interval without per-sample scores; ``–`` when missing)."""
    if not estimate:
        return "–"
    value = estimate.get(metric, math.nan)
    if value is None or not math.isfinite(value):
        return "–"
    ci = estimate.get(f"{metric}_ci")
    if ci and all(math.isfinite(x) for x in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


# ----------------------------------------------------------------------------------- the section

def _train_label(held_out: Any, trained_on: str = "every method") -> str:
    return f"all but {held_out}" if isinstance(held_out, str) else trained_on


def estimates(table: pd.DataFrame, load: Callable[[Any], Any]) -> pd.DataFrame:
    """One row per (base task, recipe, training group, test set) with its `group_estimate`."""
    rows = []
    if not len(table):
        return pd.DataFrame()
    ok = table[table.error.isna()]
    keys = ["base", "recipe", "task", "test_set"]
    for n, ((base, recipe, task, test_set), group) in enumerate(ok.groupby(keys, sort=False)):
        held = group.held_out.iloc[0]
        rows.append({"base": base, "recipe": recipe, "task": task, "held_out": held if isinstance(held, str) else None,
                     "test_set": test_set, "estimate": group_estimate(group, load, seed=n)})
    return pd.DataFrame(rows)


def summary_table(est: pd.DataFrame, recipes: list[str], base: str) -> tuple[Table, list[str]]:
    """Per recipe: in-domain, cross-method and cross-domain video AUC with intervals; and one
    sentence per recipe for the report's text."""
    here = est[est.base == base]
    full = here[here.held_out.isna()]
    lomo = here[here.held_out.notna() & (here.test_set == HELDOUT)]
    extra = [s for s in dict.fromkeys(full.test_set) if s != IN_DOMAIN]
    display, numeric, sentences = {}, {}, []
    for recipe in recipes:
        mine = full[full.recipe == recipe]
        ind = mine[mine.test_set == IN_DOMAIN].estimate.tolist()
        row = {"in-domain": fmt(ind[0] if ind else None, "video_auc")}
        num = {"in-domain": (ind[0] if ind else {}).get("video_auc", math.nan)}
        held = lomo[lomo.recipe == recipe].estimate.tolist()
        cross = average_estimates(held) if held else None
        if len(lomo):
            row["cross-method (held out, mean)"] = fmt(cross, "video_auc")
            num["cross-method (held out, mean)"] = (cross or {}).get("video_auc", math.nan)
        words = [f"in-domain {fmt(ind[0] if ind else None, 'video_auc')}"]
        if cross:
            words.append(f"cross-method {fmt(cross, 'video_auc')} (mean of {cross['sets']} held-out methods)")
        for name in extra:
            got = mine[mine.test_set == name].estimate.tolist()
            row[f"cross-domain: {name}"] = fmt(got[0] if got else None, "video_auc")
            num[f"cross-domain: {name}"] = (got[0] if got else {}).get("video_auc", math.nan)
            if got:
                words.append(f"cross-domain ({name}) {fmt(got[0], 'video_auc')}")
        display[recipe], numeric[recipe] = row, num
        sentences.append(f"**{recipe}**: video AUC " + "; ".join(words) + ".")
    frame = pd.DataFrame(display).T
    frame.index.name = "recipe"
    num_frame = pd.DataFrame(numeric).T
    num_frame.index.name = "recipe"
    _bold_best(frame, num_frame)
    caption = (f"{base}: video AUC of each recipe, mean over its cells (backbones, seeds), trained on every method "
               "(in-domain, cross-domain) or on all but one (cross-method: the held-out method's fakes against the "
               "reals, mean over the held-out methods); 95% bootstrap intervals over test videos")
    return Table(f"generalisation_summary_{base}", caption, frame, num_frame), sentences


def _bold_best(display: pd.DataFrame, numeric: pd.DataFrame) -> None:
    for column in display.columns:
        if column not in numeric or numeric[column].isna().all() or len(numeric) < 2:
            continue
        best = numeric[column].idxmax()
        display.loc[best, column] = f"**{display.loc[best, column]}**"


def matrix_table(est: pd.DataFrame, base: str, recipe: str) -> Table:
    """Train -> test matrix of one recipe: rows training groups, columns test sets and metrics."""
    here = est[(est.base == base) & (est.recipe == recipe)]
    order = list(dict.fromkeys(here.task))
    sets = [IN_DOMAIN] + ([HELDOUT] if (here.test_set == HELDOUT).any() else []) + \
        [s for s in dict.fromkeys(here.test_set) if s not in (IN_DOMAIN, HELDOUT)]
    display, numeric = {}, {}
    for task in order:
        rows = here[here.task == task]
        held = rows.held_out.iloc[0]
        label = _train_label(held)
        display[label], numeric[label] = {}, {}
        for test_set in sets:
            got = rows[rows.test_set == test_set].estimate.tolist()
            name = {"test": "in-domain", HELDOUT: "held-out method"}.get(test_set, test_set)
            for metric in METRICS:
                column = f"{name}: {NAMES[metric]}"
                display[label][column] = fmt(got[0] if got else None, metric)
                numeric[label][column] = (got[0] if got else {}).get(metric, math.nan)
    frame, num = pd.DataFrame(display).T, pd.DataFrame(numeric).T
    frame.index.name = num.index.name = "trained on"
    caption = (f"{base}, {recipe}: train -> test matrix (rows: training methods; columns: test set and metric; "
               "EER lower is better), mean over backbones and seeds, 95% bootstrap intervals over test videos")
    return Table(f"generalisation_matrix_{base}_{recipe}", caption, frame, num)


def per_method_tables(table: pd.DataFrame, base: str, recipes: list[str]) -> list[Table]:
    """DeepfakeBench-style per-method AUC tables (in-domain and each extra set; LOMO held-out)."""
    out = []
    here = table[(table.base == base) & table.error.isna()]
    full = here[here.held_out.isna()]
    for test_set in dict.fromkeys(full.test_set):
        rows = full[full.test_set == test_set]
        values: dict[str, dict[str, float]] = {}
        for recipe in recipes:
            mine = rows[rows.recipe == recipe]
            per = pd.DataFrame([{k[4:]: v for k, v in m.items() if k.startswith("auc/") and isinstance(v, (int, float))}
                                for m in mine.metrics])
            if not len(per) or not len(per.columns):
                continue
            means = per.mean().to_dict()
            means["avg"] = float(np.mean(list(means.values())))
            means["video AUC"] = float(np.nanmean([m.get("video_auc", math.nan) for m in mine.metrics]))
            values[recipe] = means
        if values:
            num = pd.DataFrame(values).T
            num.index.name = "recipe"
            name = "in-domain test" if test_set == IN_DOMAIN else f"eval set {test_set}"
            out.append(Table(f"generalisation_methods_{base}_{test_set}",
                             f"{base}, trained on every method, {name}: frame AUC per manipulation method (each "
                             "method's fakes against all reals), their average, and the video AUC; mean over backbones "
                             "and seeds", num.map(lambda v: f"{v:.3f}" if math.isfinite(v) else "–"), num))
    lomo = here[here.held_out.notna() & (here.test_set == HELDOUT)]
    if len(lomo):
        values = {}
        for recipe in recipes:
            mine = lomo[lomo.recipe == recipe]
            row = {m: float(np.nanmean([x.get("video_auc", math.nan) for x in g.metrics]))
                   for m, g in mine.groupby("held_out", sort=False)}
            if row:
                row["avg"] = float(np.mean(list(row.values())))
                values[recipe] = row
        num = pd.DataFrame(values).T
        num.index.name = "recipe"
        out.append(Table(f"generalisation_heldout_{base}",
                         f"{base}, leave-one-method-out: video AUC on each held-out method (column: the method left "
                         "out of training), mean over backbones and seeds", num.map(
                             lambda v: f"{v:.3f}" if math.isfinite(v) else "–"), num))
    return out


def curves(table: pd.DataFrame, base: str, recipes: list[str], load: Callable[[Any], Any],
           plot_dir: Path) -> list[tuple[str, Path]]:
    """ROC and DET curves (video level) of each recipe's main cell per test set; returns (set, png)."""
    from scipy.stats import norm
    from sklearn.metrics import roc_curve

    from lssat.bench.plots import _pyplot

    plt = _pyplot()
    if plt is None:
        return []
    here = table[(table.base == base) & table.held_out.isna() & table.error.isna()]
    if not len(here):
        return []
    made = []
    ind = here[here.test_set == IN_DOMAIN]
    # the main cell of a recipe: its backbone with the best mean in-domain video AUC, first seed
    scores = ind.assign(v=[m.get("video_auc", math.nan) for m in ind.metrics])
    best_backbone = scores.groupby("backbone").v.mean().idxmax() if scores.v.notna().any() else here.backbone.iloc[0]
    for test_set in dict.fromkeys(here.test_set):
        rows = here[(here.test_set == test_set) & (here.backbone == best_backbone)].sort_values("seed")
        fig, (roc, det) = plt.subplots(1, 2, figsize=(9, 4))
        drawn = 0
        for recipe in recipes:
            mine = rows[rows.recipe == recipe]
            pred = load(mine.predictions.iloc[0]) if len(mine) else None
            if pred is None:
                continue
            s, y, _ = inf.video_level(pred)
            if not (y.any() and (~y.astype(bool)).any()):
                continue
            fpr, tpr, _ = roc_curve(y, s)
            roc.plot(fpr, tpr, label=recipe)
            clip = np.clip
            det.plot(norm.ppf(clip(fpr, 1e-3, 1 - 1e-3)), norm.ppf(clip(1 - tpr, 1e-3, 1 - 1e-3)), label=recipe)
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        ticks = [0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99]
        det.set_xticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
        det.set_yticks(norm.ppf(ticks), [f"{t:g}" for t in ticks])
        det.set(xlabel="false positive rate", ylabel="false negative rate", title="DET (probit axes)")
        roc.legend(fontsize=7)
        name = "in-domain test" if test_set == IN_DOMAIN else test_set
        fig.suptitle(f"{base} on {name}: {best_backbone}, video level")
        fig.tight_layout()
        path = plot_dir / f"roc_det_{base}_{test_set}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append((test_set, path))
    return made


def section(results: Results, plot_dir: Path, rel: Path) -> list[Block]:
    """The "Generalisation" section's blocks (empty without eval sets or protocol groups)."""
    if not len(results.frame):
        return []
    table = cell_table(results)
    if not len(table) or not ((table.test_set != IN_DOMAIN).any() or table.held_out.notna().any()):
        return []
    from lssat.bench.evidence import loader_for

    load = loader_for(results)
    est = estimates(table, load)
    recipes = [r for r in results.recipes if r in set(table.recipe)]
    blocks: list[Block] = [Heading("Generalisation"), Text(
        "How the deepfake detectors do on data they were not trained on: a manipulation method left out of "
        "training (leave-one-method-out) and other test sets (`eval_sets`). Intervals are 95% percentile "
        "bootstraps over the test videos (stratified by label; frame metrics resample whole videos), so they "
        "show test-set sampling noise, not seed-to-seed variation.")]
    failed = table[table.error.notna()]
    notes = [f"{len(failed)} evaluation(s) on extra test sets failed (e.g. {failed.test_set.iloc[0]}: "
             f"{failed.error.iloc[0]}); rerun `lssat bench` to try them again."] if len(failed) else []
    for base in dict.fromkeys(table.base):
        summary, sentences = summary_table(est, recipes, base)
        blocks += [Heading(f"{base}: in-domain, cross-method and cross-domain", 3), summary, Bullets(sentences + notes)]
        blocks.append(Heading(f"{base}: train -> test matrix", 3))
        blocks += [matrix_table(est, base, recipe) for recipe in recipes
                   if len(est[(est.base == base) & (est.recipe == recipe)])]
        blocks.append(Heading(f"{base}: per manipulation method", 3))
        blocks += per_method_tables(table, base, recipes)
        for test_set, path in curves(table, base, recipes, load, plot_dir):
            name = "the in-domain test split" if test_set == IN_DOMAIN else f"eval set {test_set}"
            blocks.append(Image(rel / path.name, f"{base}: ROC and DET curves (video level) on {name}, each "
                                "recipe's cell on the backbone with the best in-domain video AUC"))
    return blocks
