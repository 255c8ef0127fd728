"""Statistics for the benchmark report: comparisons over seeds, ranks, Friedman, Pareto fronts.

Every test returns a plain dict with ``ran`` (bool) and, when it could not run, ``reason`` in
words, so the report can say what the numbers cannot support instead of printing a nan.
All metrics here are "higher is better" unless a function says otherwise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[~np.isnan(arr)]


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; nan for one value) and count of the non-nan values."""
    arr = _clean(values)
    if not arr.size:
        return math.nan, math.nan, 0
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan, int(arr.size)


def compare_two(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Welch's t-test and the Mann-Whitney U test between two groups of seed results.

    Needs at least 2 values per group. When both groups have no spread, the t statistic is
    undefined; the result then says whether the (constant) values differ.
    """
    from scipy import stats

    x, y = _clean(a), _clean(b)
    out: dict[str, Any] = {"n": (int(x.size), int(y.size)), "diff": float(x.mean() - y.mean()) if x.size and y.size else math.nan}
    if x.size < 2 or y.size < 2:
        return {**out, "ran": False, "reason": f"needs at least 2 seeds per group (has {x.size} and {y.size})"}
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        same = bool(x[0] == y[0])
        return {**out, "ran": False, "reason": "no spread over seeds in either group" +
                ("" if same else f" (constant values {x[0]:.4g} vs {y[0]:.4g})")}
    with warnings.catch_warnings():  # near-identical seeds: scipy warns of precision loss
        warnings.simplefilter("ignore", RuntimeWarning)
        welch = stats.ttest_ind(x, y, equal_var=False)
        mw = stats.mannwhitneyu(x, y, alternative="two-sided")
    return {**out, "ran": True, "welch_t": float(welch.statistic), "welch_p": float(welch.pvalue),
            "mwu_u": float(mw.statistic), "mwu_p": float(mw.pvalue)}


def across_groups(groups: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """One-way ANOVA and Kruskal-Wallis across several groups (e.g. backbones, seeds as samples)."""
    from scipy import stats

    data = {k: _clean(v) for k, v in groups.items()}
    sizes = {k: int(v.size) for k, v in data.items()}
    if len(data) < 2:
        return {"ran": False, "reason": "needs at least 2 groups", "n": sizes}
    if min(sizes.values()) < 2:
        return {"ran": False, "reason": "needs at least 2 seeds per group", "n": sizes}
    values = list(data.values())
    if all(np.ptp(v) == 0 for v in values):
        return {"ran": False, "reason": "no spread over seeds in any group", "n": sizes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        anova = stats.f_oneway(*values)
    try:
        kw = stats.kruskal(*values)
        kw_stat, kw_p = float(kw.statistic), float(kw.pvalue)
    except ValueError:  # all values identical across groups
        kw_stat, kw_p = math.nan, math.nan
    return {"ran": True, "n": sizes, "anova_f": float(anova.statistic), "anova_p": float(anova.pvalue),
            "kruskal_h": kw_stat, "kruskal_p": kw_p}


def average_ranks(table: pd.DataFrame, higher_is_better: bool = True) -> pd.DataFrame:
    """Ranks of the columns (treatments, e.g. backbones) within each row (block, e.g. task):
    1 = best, ties share the average rank. Rows with a missing value are left out.
    Returns the per-block ranks plus a final row "average"."""
    complete = table.dropna(axis=0, how="any")
    ranks = complete.rank(axis=1, ascending=not higher_is_better, method="average")
    return pd.concat([ranks, ranks.mean(axis=0).to_frame("average").T])


def friedman(table: pd.DataFrame, min_blocks: int = 2) -> dict[str, Any]:
    """Friedman test of whether the treatments (columns) rank alike across blocks (rows).

    Needs at least 3 treatments and `min_blocks` complete blocks; with few blocks the chi-square
    approximation is rough and the test has little power (the result says so in ``caveat``).
    """
    from scipy import stats

    complete = table.dropna(axis=0, how="any")
    k, n = table.shape[1], complete.shape[0]
    out: dict[str, Any] = {"k": int(k), "n": int(n), "dropped_blocks": int(table.shape[0] - n)}
    if k < 3:
        return {**out, "ran": False, "reason": f"needs at least 3 backbones (has {k})"}
    if n < min_blocks:
        return {**out, "ran": False, "reason": f"needs at least {min_blocks} complete blocks (tasks) (has {n})"}
    values = complete.to_numpy(dtype=float)
    if all(np.ptp(row) == 0 for row in values):
        return {**out, "ran": False, "reason": "every backbone ties within every block"}
    res = stats.friedmanchisquare(*values.T)
    out.update(ran=True, statistic=float(res.statistic), p=float(res.pvalue))
    if n < 5 or k < 4 and n < 10:
        out["caveat"] = (f"only {n} blocks for {k} backbones: the chi-square p-value is approximate and "
                         "the test can detect only large, consistent differences")
    return out


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """Mask of the points no other point beats: lower-or-equal cost and higher-or-equal value,
    strictly better in one. Points with a nan are never on the front."""
    c = np.asarray(cost, dtype=float)
    v = np.asarray(value, dtype=float)
    valid = ~(np.isnan(c) | np.isnan(v))
    on = valid.copy()
    for i in np.flatnonzero(valid):
        dominated = valid & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        on[i] = not dominated.any()
    return on


def fmt_p(p: float) -> str:
    """A p-value for prose: 'p = 0.031', 'p < 0.001', 'p = n/a'."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def fmt_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """'0.912 ± 0.013', or '0.912' for a single seed, or '–' when missing."""
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
