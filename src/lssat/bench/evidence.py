"""The report's statistical evidence from a benchmark's results (tests in `lssat.bench.inference`).

- Recipe gains (``estimate``: the mean paired difference the chosen test is about): each recipe against ``supervised`` per task and training fraction, on the task's
  primary test metric. Pairs are the (backbone, seed) cells that share everything but the recipe;
  the seed-level test is a paired t (df = n - 1, pairs treated as independent). A paired bootstrap
  over the test samples (videos for a video AUC) of the cells' per-sample scores is computed where
  the predictions exist, pooled over all pairs and per backbone; it stands in for the t-test when
  there are fewer than 3 pairs.
- Backbones: per task, blocks = (recipe, seed, fraction) cells where every backbone has a result;
  over all tasks, blocks = (task, recipe, seed, fraction). Average ranks (1 = best), Friedman test,
  Nemenyi critical difference.
- Learned: each cell against its task's best constant prediction on the test split
  (`inference.LEARNED_CRITERIA`); without per-sample scores, the metric must exceed the baseline by
  `inference.FALLBACK_MARGIN`.
- Holm: one family of every test in `family` (see `holm_family`), adjusted together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lssat.bench import inference as inf
from lssat.bench.results import Results
from lssat.bench.stats import average_ranks, friedman
from lssat.bench.tables import BASELINE

MIN_T_PAIRS = 3  # below this many seed-level pairs, the bootstrap carries the verdict


@dataclass
class Evidence:
    """Everything the verdicts and the statistics section show."""

    alpha: float
    gains: pd.DataFrame  # one row per (task, fraction, recipe)
    detail: pd.DataFrame  # per (task, fraction, recipe, backbone): bootstrap over test samples
    backbones: dict[str, dict[str, Any]]  # task label or ALL -> ranks, Friedman, CD, cliques
    learned: pd.DataFrame  # one row per done cell
    family: pd.DataFrame = field(default_factory=pd.DataFrame)  # test, raw p, Holm-adjusted p


ALL = "all tasks"


def loader_for(results: Results):
    """A memoised reader of the cells' prediction files (paths relative to the benchmark folder)."""
    read = inf.cached(inf.load_predictions)
    return lambda rel: None if not isinstance(rel, str) or not rel else read(str(results.bench_dir / rel))


def _pairs(results: Results, task: str, fraction: float, recipe: str) -> pd.DataFrame:
    frame = results.frame
    metric = f"test/{results.primary[task]}"
    here = frame[(frame.task == task) & (frame.fraction == fraction)]
    cols = ["backbone", "seed", metric, "predictions"]
    if metric not in here:
        return pd.DataFrame(columns=["backbone", "seed", "a", "b", "pred_a", "pred_b"])
    a = here[here.recipe == recipe][cols].rename(columns={metric: "a", "predictions": "pred_a"})
    b = here[here.recipe == BASELINE][cols].rename(columns={metric: "b", "predictions": "pred_b"})
    return a.merge(b, on=["backbone", "seed"]).sort_values(["backbone", "seed"])


def _bootstrap(pairs: pd.DataFrame, kind: str, load) -> dict[str, Any]:
    loaded = [(load(r.pred_a), load(r.pred_b)) for r in pairs.itertuples()]
    usable = [(x, y) for x, y in loaded if x is not None and y is not None]
    if not usable:
        return {"ran": False, "reason": "no per-sample scores"}
    return {**inf.paired_bootstrap(usable, kind), "pairs": len(usable)}


def recipe_gains(results: Results, load) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired gains of every recipe over supervised (see the module docstring)."""
    rows, detail = [], []
    if BASELINE not in results.recipes:
        return pd.DataFrame(), pd.DataFrame()
    fractions = sorted(results.frame.fraction.unique().tolist())
    for task in results.tasks:
        kind = results.task_kind(task)
        for fraction in fractions:
            for recipe in results.recipes:
                if recipe == BASELINE:
                    continue
                pairs = _pairs(results, task, fraction, recipe)
                if not len(pairs):
                    continue
                t = inf.paired_t(pairs.a, pairs.b)
                boot = _bootstrap(pairs, kind, load)
                row = {"task": task, "fraction": fraction, "recipe": recipe, "metric": results.primary[task],
                       "pairs": len(pairs), "mean": float((pairs.a - pairs.b).mean()),
                       "t_ran": t["ran"], "t_reason": t.get("reason", ""), "t_p": t.get("p", math.nan),
                       "t_ci_low": t.get("ci", (math.nan,) * 2)[0], "t_ci_high": t.get("ci", (math.nan,) * 2)[1],
                       "df": t["df"], "boot_ran": boot["ran"], "boot_pairs": boot.get("pairs", 0),
                       "boot_mean": boot.get("mean", math.nan), "boot_p": boot.get("p", math.nan),
                       "boot_ci_low": boot.get("ci", (math.nan,) * 2)[0],
                       "boot_ci_high": boot.get("ci", (math.nan,) * 2)[1], "boot_units": boot.get("units", 0)}
                if t["ran"] and t["n"] >= MIN_T_PAIRS:
                    row.update(test="paired t", p=row["t_p"], ci_low=row["t_ci_low"], ci_high=row["t_ci_high"],
                               estimate=row["mean"])
                elif boot["ran"]:
                    row.update(test="paired bootstrap", p=row["boot_p"], ci_low=row["boot_ci_low"],
                               ci_high=row["boot_ci_high"], estimate=row["boot_mean"])
                elif t["ran"]:
                    row.update(test="paired t", p=row["t_p"], ci_low=row["t_ci_low"], ci_high=row["t_ci_high"],
                               estimate=row["mean"])
                else:
                    row.update(test="none", p=math.nan, ci_low=math.nan, ci_high=math.nan, estimate=row["mean"])
                rows.append(row)
                for backbone, group in pairs.groupby("backbone", sort=False):
                    b = _bootstrap(group, kind, load)
                    if b["ran"]:
                        detail.append({"task": task, "fraction": fraction, "recipe": recipe, "backbone": backbone,
                                       "seeds": len(group), "mean": b["mean"], "ci_low": b["ci"][0],
                                       "ci_high": b["ci"][1], "p": b["p"], "metric": b["metric"],
                                       "units": b["units"]})
    return pd.DataFrame(rows), pd.DataFrame(detail)


def _rank_test(table: pd.DataFrame, alpha: float) -> dict[str, Any]:
    complete = table.dropna(axis=0, how="any")
    out: dict[str, Any] = {"k": int(table.shape[1]), "n": int(len(complete)), "friedman": friedman(table),
                           "average": {}, "cd": math.nan, "cliques": []}
    if len(complete) and table.shape[1] >= 2:
        ranks = average_ranks(complete)
        out["average"] = {str(k): float(v) for k, v in ranks.loc["average"].items()}
        out["cd"] = inf.critical_difference(out["k"], out["n"], alpha)
        out["cliques"] = inf.cliques(out["average"], out["cd"])
    return out


def backbone_ranks(results: Results, alpha: float) -> dict[str, dict[str, Any]]:
    """Average ranks, Friedman and Nemenyi CD per task (blocks = recipe x seed x fraction) and over
    all tasks (blocks = task x recipe x seed x fraction)."""
    frame = results.frame
    out, tables = {}, []
    for task in results.tasks:
        metric = f"test/{results.primary[task]}"
        here = frame[frame.task == task]
        if metric not in here or here.backbone.nunique() < 2:
            continue
        table = here.pivot_table(index=["recipe", "seed", "fraction"], columns="backbone", values=metric,
                                 aggfunc="mean")
        table = table[[b for b in results.backbones if b in table.columns]]
        out[task] = {**_rank_test(table, alpha), "blocks": "recipe × seed × fraction"}
        tables.append(pd.concat({task: table}, names=["task"]))
    if len(out) > 1:
        table = pd.concat(tables)
        out[ALL] = {**_rank_test(table, alpha), "blocks": "task × recipe × seed × fraction"}
    return out


def learned_cells(results: Results, load, alpha: float) -> pd.DataFrame:
    """Each done cell against the best constant prediction on its test split."""
    rows = []
    for r in results.frame.to_dict("records"):
        pred = load(r.get("predictions"))
        if pred is not None:
            res = {**inf.learned(pred, str(r["task_kind"]), alpha), "source": "per-sample scores"}
        else:
            value = r.get(f"test/{results.primary[r['task']]}")
            chance = r.get("chance")
            res = {**inf.learned_from_metric(math.nan if value is None else float(value),
                                             math.nan if chance is None else float(chance)),
                   "source": f"metric > baseline + {inf.FALLBACK_MARGIN:g} (no per-sample scores)"}
        rows.append({"cell": r["label"], "backbone": r["backbone"], "task": r["task"], "recipe": r["recipe"],
                     "seed": r["seed"], "fraction": r["fraction"], "value": res.get("value", math.nan),
                     "baseline": res.get("baseline", math.nan), "p": res.get("p", math.nan),
                     "test": res.get("test", ""), "learned": res.get("learned") if res.get("ran") else None,
                     "source": res["source"] if res.get("ran") else res.get("reason", "")})
    return pd.DataFrame(rows)


def holm_family(evidence: Evidence, extra: list[tuple[str, float]] = ()) -> pd.DataFrame:
    """Holm-adjust every test of the report together: the recipe-vs-supervised tests, the backbone
    Friedman tests (per task and over all tasks) and `extra` (the research questions' tests).
    Writes ``p_holm`` back into `evidence.gains` and the backbone entries; returns the family."""
    names: list[str] = []
    raw: list[float] = []
    where: list[tuple[str, Any]] = []
    for i, row in evidence.gains.iterrows():
        if not math.isnan(row["p"]):
            names.append(f"{row['recipe']} vs {BASELINE}, {row['task']}, fraction {row['fraction']:g} ({row['test']})")
            raw.append(float(row["p"]))
            where.append(("gain", i))
    for key, entry in evidence.backbones.items():
        test = entry["friedman"]
        if test.get("ran"):
            names.append(f"backbones differ, {key} (Friedman over {entry['n']} blocks)")
            raw.append(float(test["p"]))
            where.append(("backbone", key))
    for name, p in extra:
        if p is not None and not math.isnan(p):
            names.append(name)
            raw.append(float(p))
            where.append(("extra", name))
    adjusted = inf.holm(raw)
    if len(evidence.gains):
        evidence.gains["p_holm"] = math.nan
    for (what, key), p in zip(where, adjusted):
        if what == "gain":
            evidence.gains.loc[key, "p_holm"] = p
        elif what == "backbone":
            evidence.backbones[key]["friedman"]["p_holm"] = float(p)
    evidence.family = pd.DataFrame({"test": names, "p": raw, "p_holm": adjusted})
    return evidence.family


def gather(results: Results, alpha: float = 0.05, extra: list[tuple[str, float]] = ()) -> Evidence:
    """All the evidence of a benchmark, Holm-adjusted as one family."""
    load = loader_for(results)
    gains, detail = recipe_gains(results, load)
    evidence = Evidence(alpha, gains, detail, backbone_ranks(results, alpha), learned_cells(results, load, alpha))
    holm_family(evidence, list(extra))
    return evidence


def fmt_ci(low: float, high: float) -> str:
    """'[+0.012, +0.034]' or 'n/a'."""
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return "n/a"
    return f"[{low:+.3f}, {high:+.3f}]"
