"""Fairness section of the report: per-subgroup results by recipe, for tasks with a subgroup label.

Reads the ``test/fair/<attribute>/...`` metrics of the run records (`lssat.metrics.fairness`):
per-group accuracy (``acc/<group>``), for deepfakes per-group AUC (``auc/<group>``), the largest
gap (``auc_gap`` for deepfakes, ``acc_gap`` otherwise), and the demographic-parity and
equalised-odds differences (``dp_diff``, ``eo_diff``: binary tasks only). Values are means over
backbones and seeds; the comparison of each texture recipe with the RGB ones tests the hybrid
paper's claim that texture targets give fairer features (smaller gaps).
"""

from __future__ import annotations

import math
import re

import pandas as pd

from lssat.bench.html import Block, Bullets, Heading, Table, Text
from lssat.bench.results import Results
from lssat.bench.stats import compare_two, fmt_p, mean_std
from lssat.bench.tables import BASELINE, main_slice

_FAIR = re.compile(r"^test/fair/([^/]+)/(.+)$")


def texture_recipes(recipes: list[str]) -> set[str]:
    """Recipes whose masked pass, targets or classified input use a texture descriptor."""
    out = set()
    try:
        from lssat.models.recipe import TEXTURE_KINDS, load_recipe
    except ImportError:  # pragma: no cover - the models package is part of lssat
        return {r for r in recipes if "ldp" in r or "lbp" in r}
    for name in recipes:
        try:
            recipe = load_recipe(name)
        except Exception:
            if "ldp" in name or "lbp" in name:
                out.add(name)
            continue
        kinds = set(recipe.targets if recipe.uses_mae else []) | {recipe.classify_input}
        if recipe.uses_mae:
            kinds.add(recipe.mask_input)
        if kinds & set(TEXTURE_KINDS):
            out.add(name)
    return out


def fairness_attributes(results: Results, task: str) -> list[str]:
    """Subgroup attributes with fairness metrics in a task's cells."""
    frame = main_slice(results)
    here = frame[frame.task == task].dropna(axis=1, how="all")
    return sorted({m.group(1) for c in here.columns if (m := _FAIR.match(c))})


def fairness_section(results: Results, alpha: float = 0.05) -> list[Block]:
    """Tables and a reading of the texture-fairness claim, per task and subgroup attribute."""
    blocks: list[Block] = []
    frame = main_slice(results)
    textures = texture_recipes(results.recipes)
    for task in results.tasks:
        kind = results.task_kind(task)
        here = frame[frame.task == task]
        for attr in fairness_attributes(results, task):
            prefix = f"test/fair/{attr}/"
            groups = sorted({c[len(prefix) + 2:] for c in here.columns
                             if c.startswith(prefix + "n/") and here[c].fillna(0).gt(0).any()})
            per_group = "auc" if kind == "deepfake" else "acc"
            gap_key = f"{per_group}_gap"
            columns = [(f"{per_group}/{g}", f"{per_group.upper()} {g}") for g in groups]
            columns += [(f"n/{g}", f"n {g}") for g in groups]
            columns += [(gap_key, f"largest {per_group.upper()} gap")]
            if kind == "deepfake":
                columns += [("acc_gap", "accuracy gap"), ("dp_diff", "DP difference"), ("eo_diff", "EO difference")]
            display, rows = {}, []
            for recipe in results.recipes:
                cells = here[here.recipe == recipe]
                if not len(cells):
                    continue
                row = {"recipe": recipe, "cells": len(cells)}
                for key, title in columns:
                    values = cells[prefix + key].tolist() if prefix + key in cells else []
                    m, s, n = mean_std(values)
                    row[key] = m
                    digits = 0 if key.startswith("n/") else 3
                    display.setdefault(title, {})[recipe] = "–" if math.isnan(m) else f"{m:.{digits}f}"
                rows.append(row)
            if not rows:
                continue
            disp = pd.DataFrame(display).reindex([r["recipe"] for r in rows])
            disp.index.name = "recipe"
            extra = "; DP / EO: demographic-parity / equalised-odds differences" if kind == "deepfake" else ""
            blocks.append(Heading(f"{task}: subgroups by {attr}", 3))
            disp = disp.fillna("–")
            blocks.append(Table(f"fairness_{task}_{attr}", f"Test {per_group.upper()} per {attr} group, and gaps "
                                f"(max - min over groups), mean over backbones and seeds{extra}",
                                disp, pd.DataFrame(rows), note=_empty_note(disp, groups, attr, per_group.upper())))
            blocks.append(_claim(here, prefix + gap_key, textures, results.recipes, alpha, per_group.upper()))
    if not blocks:
        return [Heading("Fairness", 2), Text("No task carries a subgroup label with fairness metrics in its "
                                             "run records; nothing to report.")]
    return [Heading("Fairness", 2), Text("Texture targets are claimed to give fairer features (Reddy et al., "
                                         "arXiv 2409.19582): a texture recipe should show smaller gaps than "
                                         "the RGB recipes.")] + blocks


def _empty_note(display: pd.DataFrame, groups: list[str], attr: str, name: str) -> str | None:
    """Why cells of a fairness table are empty ('–'), in one sentence (None when none is)."""
    if not (display == "–").any().any():
        return None
    if len(groups) < 2:
        which = f"one {attr} subgroup only ({groups[0]})" if groups else f"no {attr} subgroup"
        return (f"–: the test split holds {which}, so gaps and differences between groups are undefined "
                "(they need two groups with test samples).")
    return (f"–: undefined on these cells' test split: a group's {name} needs test samples of that group "
            f"(an AUC, both classes among them), and a gap needs a value for at least two groups.")


def _claim(here: pd.DataFrame, column: str, textures: set[str], recipes: list[str], alpha: float,
           name: str) -> Block:
    """Each texture recipe's gap against the supervised (or first RGB) recipe's, over cells."""
    rgb = [r for r in recipes if r not in textures]
    reference = BASELINE if BASELINE in rgb else (rgb[0] if rgb else None)
    if reference is None or not textures or column not in here:
        return Text("No texture-versus-RGB comparison: the grid lacks " +
                    ("an RGB recipe." if reference is None else "a texture recipe."))
    ref_values = here[here.recipe == reference][column].tolist()
    items = []
    for recipe in [r for r in recipes if r in textures]:
        values = here[here.recipe == recipe][column].tolist()
        if not values:
            continue
        test = compare_two(values, ref_values)
        diff = mean_std(values)[0] - mean_std(ref_values)[0]
        if math.isnan(diff):
            continue
        smaller = "smaller" if diff < 0 else "larger"
        sure = (f"significant (Welch {fmt_p(test['welch_p'])})" if test.get("ran") and test["welch_p"] < alpha
                else f"not significant (Welch {fmt_p(test['welch_p'])})" if test.get("ran")
                else f"untested: {test['reason']}")
        items.append(f"{recipe}: {name} gap {abs(diff):.3f} {smaller} than {reference}'s; {sure}.")
    return Bullets(items) if items else Text("No gap values to compare.")
