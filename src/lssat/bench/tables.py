"""The report's tables: main (backbone x task), recipe x task, cost, training fractions.

Values are test metrics, mean ± std over seeds. Where a table shows one recipe per backbone and
task (the main table, the research questions), the recipe is chosen on the *validation* split
(report option ``main_recipe: best``, the default) or fixed by name (``main_recipe: lssat-ldp``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lssat.bench.html import Table, anchor_id, fmt_sig
from lssat.bench.results import Results
from lssat.bench.stats import fmt_mean_std, mean_std

BASELINE = "supervised"


def cell_anchor(label: str) -> str:
    """The id of a cell's row in the report's cells table."""
    return anchor_id("cell", label)


def group_anchor(backbone: str, task: str, recipe: str, fraction: float) -> str:
    """The id of the first (lowest-seed) row of a (backbone, task, recipe, fraction) group in the cells
    table: where a number averaged over seeds links to."""
    return anchor_id("cells", backbone, task, recipe, f"{float(fraction):g}")


def main_slice(results: Results) -> pd.DataFrame:
    """The done cells at the largest training fraction (the one the main analyses use)."""
    frame = results.frame
    if not len(frame):
        return frame
    return frame[frame.fraction == frame.fraction.max()]


def seed_values(frame: pd.DataFrame, column: str, **axes: Any) -> list[float]:
    """The values of `column` over seeds for the cells matching `axes`, in seed order."""
    chosen = frame
    for key, value in axes.items():
        chosen = chosen[chosen[key] == value]
    if column not in chosen or not len(chosen):
        return []
    return chosen.sort_values("seed")[column].astype(float).tolist()


def choose_recipes(results: Results) -> dict[tuple[str, str], str]:
    """The recipe standing for each (backbone, task) in the main table and the research questions."""
    how = str((results.spec or {}).get("report", {}).get("main_recipe", "best"))
    frame = main_slice(results)
    chosen: dict[tuple[str, str], str] = {}
    for task in results.tasks:
        metric = f"val/{results.primary[task]}"
        for backbone in results.backbones:
            here = frame[(frame.task == task) & (frame.backbone == backbone)]
            recipes = [r for r in results.recipes if r in set(here.recipe)]
            if not recipes:
                continue
            if how != "best":
                if how in recipes:
                    chosen[(backbone, task)] = how
                continue
            scores = {r: mean_std(seed_values(here, metric, recipe=r))[0] for r in recipes}
            valid = {r: s for r, s in scores.items() if not math.isnan(s)}
            if valid:
                chosen[(backbone, task)] = max(valid, key=valid.get)
            else:
                chosen[(backbone, task)] = BASELINE if BASELINE in recipes else recipes[0]
                note = f"{task}/{backbone}: no validation {results.primary[task]}; main table uses {chosen[(backbone, task)]}"
                if note not in results.notes:
                    results.notes.append(note)
    return chosen


def _bold_best(display: pd.DataFrame, means: pd.DataFrame) -> pd.DataFrame:
    out = display.copy()
    for column in means.columns:
        col = means[column].astype(float)
        if col.notna().any():
            best = col.max()
            for idx in col.index[np.isclose(col.fillna(-np.inf), best)]:
                out.loc[idx, column] = f"**{out.loc[idx, column]}**"
    return out


def main_table(results: Results, chosen: dict[tuple[str, str], str]) -> Table:
    """Backbone x task: each task's headline metrics, mean ± std over seeds; best per column bold."""
    frame = main_slice(results)
    fraction = frame.fraction.max() if len(frame) else 1.0
    display, means, rows, links = {}, {}, [], {}
    for task in results.tasks:
        for i, metric in enumerate(results.headlines[task]):
            column = f"{task}: {metric}"
            display[column], means[column], links[column] = {}, {}, {}
            for backbone in results.backbones:
                recipe = chosen.get((backbone, task))
                if recipe is None:
                    continue
                values = seed_values(frame, f"test/{metric}", task=task, backbone=backbone, recipe=recipe)
                m, s, n = mean_std(values)
                text = fmt_mean_std(m, s)
                display[column][backbone] = text + (f" ({recipe})" if i == 0 else "")
                means[column][backbone] = m
                if values:
                    links[column][backbone] = "#" + group_anchor(backbone, task, recipe, fraction)
                rows.append({"backbone": backbone, "task": task, "metric": metric, "recipe": recipe,
                             "mean": m, "std": s, "seeds": n})
    disp = pd.DataFrame(display).reindex(results.backbones).fillna("–")
    mean = pd.DataFrame(means).reindex(results.backbones)
    disp = _bold_best(disp, mean)
    disp.index.name = "backbone"
    note = "Each number links to its cells (one row per seed) in the Cells table."
    if (disp == "–").any().any():
        note += " –: no cell of this backbone and task has finished."
    return Table("main", "Test headline metrics per backbone and task, mean ± std over seeds; "
                 "recipe in brackets (chosen on validation); best per column in bold",
                 disp, pd.DataFrame(rows), links=pd.DataFrame(links).reindex(results.backbones), note=note)


def recipe_table(results: Results) -> Table:
    """(backbone, recipe) x task on each task's first headline metric, with Δ over supervised."""
    frame = main_slice(results)
    fraction = frame.fraction.max() if len(frame) else 1.0
    baseline = BASELINE if BASELINE in results.recipes else (results.recipes[0] if results.recipes else None)
    display: dict[str, dict[str, str]] = {}
    links: dict[str, dict[str, str]] = {}
    rows = []
    for task in results.tasks:
        metric = results.primary[task]
        column = f"{task}: {metric}"
        display[column] = {}
        for backbone in results.backbones:
            base = mean_std(seed_values(frame, f"test/{metric}", task=task, backbone=backbone, recipe=baseline))[0]
            means = {}
            for recipe in results.recipes:
                values = seed_values(frame, f"test/{metric}", task=task, backbone=backbone, recipe=recipe)
                if not values:
                    continue
                m, s, n = mean_std(values)
                means[recipe] = m
                delta = m - base if not (math.isnan(m) or math.isnan(base)) else math.nan
                text = fmt_mean_std(m, s)
                if recipe != baseline and not math.isnan(delta):
                    text += f" (Δ {delta:+.3f})"
                display[column][f"{backbone} / {recipe}"] = text
                links.setdefault(column, {})[f"{backbone} / {recipe}"] = "#" + group_anchor(backbone, task, recipe,
                                                                                          fraction)
                rows.append({"backbone": backbone, "recipe": recipe, "task": task, "metric": metric,
                             "mean": m, "std": s, "seeds": n, "delta_vs_" + str(baseline): delta})
            valid = {r: v for r, v in means.items() if not math.isnan(v)}
            if len(valid) > 1:
                best = max(valid.values())
                for recipe, value in valid.items():
                    if np.isclose(value, best):
                        key = f"{backbone} / {recipe}"
                        display[column][key] = f"**{display[column][key]}**"
    order = [f"{b} / {r}" for b in results.backbones for r in results.recipes]
    disp = pd.DataFrame(display)
    disp = disp.reindex([o for o in order if o in disp.index]).fillna("–")
    disp.index.name = "backbone / recipe"
    note = "Each number links to its cells in the Cells table."
    if (disp == "–").any().any():
        note += " –: no finished cell of this backbone, recipe and task."
    return Table("recipes", f"Test headline metric per recipe and backbone, mean ± std over seeds, "
                 f"Δ = difference from {baseline}; best recipe per backbone and task in bold", disp, pd.DataFrame(rows),
                 links=pd.DataFrame(links), note=note)


def recipe_gain_table(results: Results) -> Table | None:
    """Mean Δ over the baseline recipe, averaged over backbones: what each recipe adds per task."""
    recipes = recipe_table(results).numeric
    key = next((c for c in recipes.columns if c.startswith("delta_vs_")), None)
    if recipes is None or not len(recipes) or key is None:
        return None
    gains = recipes.groupby(["recipe", "task"])[key].agg(["mean", "min", "max", "count"]).reset_index()
    display = {}
    for _, row in gains.iterrows():
        text = "–" if math.isnan(row["mean"]) else f"{row['mean']:+.3f} [{row['min']:+.3f}, {row['max']:+.3f}]"
        display.setdefault(row["task"], {})[row["recipe"]] = text
    disp = pd.DataFrame(display).reindex([r for r in results.recipes if r in set(gains.recipe)])
    disp = disp[[t for t in results.tasks if t in disp.columns]].fillna("–")
    disp.index.name = "recipe"
    return Table("recipe_gain", f"Gain over {key[len('delta_vs_'):]} on the headline metric, mean over backbones "
                 "[min, max over backbones]", disp, gains)


def cost_table(results: Results) -> Table:
    """Per backbone: parameters, FLOPs per image, training throughput, peak memory, wall time."""
    frame = main_slice(results)
    specs = [("cost/parameters", "parameters (M)", 1e-6, 3), ("cost/flops_per_image", "GFLOPs / image", 1e-9, 3),
             ("cost/train_images_per_second", "train images / s", 1.0, 3),
             ("cost/peak_memory", "peak memory (MB)", 1 / 2**20, 3), ("cost/wall_time", "wall time / cell (s)", 1.0, 3)]
    display, rows = {}, []
    for backbone in results.backbones:
        here = frame[frame.backbone == backbone]
        base = here[here.recipe == BASELINE] if (here.recipe == BASELINE).any() else here
        row = {"backbone": backbone}
        for column, title, scale, digits in specs:
            value = float(base[column].mean()) * scale if column in base and base[column].notna().any() else math.nan
            row[title] = value
            display.setdefault(title, {})[backbone] = fmt_sig(value, digits)
        rows.append(row)
    disp = pd.DataFrame(display).reindex(results.backbones).fillna("–")
    disp.index.name = "backbone"
    note = None
    if (disp == "–").any().any():
        note = ("–: the run records of this backbone's cells do not hold this figure (not measured on this "
                "machine or by this version of the engine).")
    return Table("cost", f"Cost per backbone (the {BASELINE} recipe's cells where present; training figures "
                 "include the recipe's extra passes), 3 significant digits", disp, pd.DataFrame(rows), note=note)


def recipe_cost_table(results: Results) -> Table | None:
    """Training throughput of each recipe relative to supervised, per backbone."""
    frame = main_slice(results)
    column = "cost/train_images_per_second"
    if column not in frame or BASELINE not in results.recipes:
        return None
    display, rows = {}, []
    for backbone in results.backbones:
        base = frame[(frame.backbone == backbone) & (frame.recipe == BASELINE)][column].mean()
        for recipe in results.recipes:
            value = frame[(frame.backbone == backbone) & (frame.recipe == recipe)][column].mean()
            ratio = base / value if value and not math.isnan(value) and not math.isnan(base) else math.nan
            rows.append({"backbone": backbone, "recipe": recipe, "step_time_ratio": ratio})
            display.setdefault(backbone, {})[recipe] = "–" if math.isnan(ratio) else f"{ratio:.2f}×"
    disp = pd.DataFrame(display).reindex(results.recipes).fillna("–")
    disp.index.name = "recipe"
    return Table("recipe_cost", "Training time per image relative to supervised (images/s of supervised ÷ "
                 "images/s of the recipe), per backbone", disp, pd.DataFrame(rows))


def fraction_table(results: Results) -> Table | None:
    """(task, recipe) x training fraction on the headline metric, mean over backbones and seeds."""
    frame = results.frame
    if not len(frame) or frame.fraction.nunique() < 2:
        return None
    fractions = sorted(frame.fraction.unique())
    display, rows = {}, []
    for task in results.tasks:
        metric = f"test/{results.primary[task]}"
        for recipe in results.recipes:
            for fraction in fractions:
                values = seed_values(frame, metric, task=task, recipe=recipe, fraction=fraction)
                m, s, n = mean_std(values)
                rows.append({"task": task, "recipe": recipe, "fraction": fraction, "mean": m, "std": s, "cells": n})
                display.setdefault(f"{fraction:g}", {})[f"{task} / {recipe}"] = fmt_mean_std(m, s)
    disp = pd.DataFrame(display).fillna("–")
    disp.index.name = "task / recipe"
    return Table("fractions", "Headline metric by fraction of the training data, mean ± std over backbones and seeds",
                 disp, pd.DataFrame(rows))
