"""Plots of the report (matplotlib, PNG): heatmap, accuracy versus FLOPs, learning curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lssat.bench import adapter
from lssat.bench.results import Results
from lssat.bench.stats import mean_std, pareto_front
from lssat.bench.tables import main_slice, seed_values


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def heatmap(results: Results, chosen: dict[tuple[str, str], str], path: Path) -> Path | None:
    """Backbones x tasks, colour = the task's primary test metric (mean over seeds)."""
    frame = main_slice(results)
    data = pd.DataFrame(index=results.backbones, columns=results.tasks, dtype=float)
    for (backbone, task), recipe in chosen.items():
        data.loc[backbone, task] = mean_std(seed_values(frame, f"test/{results.primary[task]}", task=task,
                                                        backbone=backbone, recipe=recipe))[0]
    if data.isna().all().all():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(results.tasks), 1.2 + 0.5 * len(results.backbones)))
    values = data.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(results.tasks)), [f"{t}\n({results.primary[t]})" for t in results.tasks])
    ax.set_yticks(range(len(results.backbones)), results.backbones)
    lo, hi = np.nanmin(values), np.nanmax(values)
    for (i, j), v in np.ndenumerate(values):
        if not math.isnan(v):
            light = hi > lo and (v - lo) / (hi - lo) < 0.5
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="white" if light else "black", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("Test headline metric (recipe chosen on validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_vs_flops(results: Results, task: str, path: Path) -> Path | None:
    """One point per (backbone, recipe): FLOPs per image against the primary test metric,
    mean over seeds; the Pareto front (fewer FLOPs and better) is drawn and marked."""
    frame = main_slice(results)
    metric = results.primary[task]
    here = frame[frame.task == task]
    if "cost/flops_per_image" not in here or f"test/{metric}" not in here:
        return None
    points = here.groupby(["backbone", "recipe"]).agg(
        flops=("cost/flops_per_image", "mean"), value=(f"test/{metric}", "mean")).reset_index()
    points = points.dropna()
    if points.empty:
        return None
    on_front = pareto_front(points.flops.to_numpy(), points.value.to_numpy())
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = dict(zip(results.recipes, "osD^v<>pPX*h"))
    colours = dict(zip(results.backbones, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for _, p in points.iterrows():
        ax.scatter(p.flops, p.value, marker=markers.get(p.recipe, "o"), color=colours.get(p.backbone, "k"),
                   s=46, edgecolors="black", linewidths=0.4, zorder=3)
    front = points[on_front].sort_values("flops")
    ax.step(front.flops, front.value, where="post", color="crimson", lw=1.2, zorder=2, label="Pareto front")
    ax.scatter(front.flops, front.value, s=150, facecolors="none", edgecolors="crimson", lw=1.2, zorder=4)
    for b in results.backbones:
        ax.scatter([], [], color=colours[b], label=b)
    for r in results.recipes:
        ax.scatter([], [], marker=markers.get(r, "o"), color="grey", label=r)
    if points.flops.max() / max(points.flops.min(), 1) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("FLOPs per image (inference)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{task}: {metric} vs FLOPs")
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curve_columns(log: pd.DataFrame, metric: str) -> tuple[str | None, str | None]:
    val = [c for c in log.columns if "val" in c and c.split("/")[-1].split("_", 1)[-1] == metric
           or c in (f"val/{metric}", f"val_{metric}")]
    loss = [c for c in ("train/loss_step", "train/loss_epoch", "train/loss") if c in log.columns]
    return (val[0] if val else None), (loss[0] if loss else None)


def learning_curves(results: Results, chosen: dict[tuple[str, str], str], path: Path) -> Path | None:
    """Validation headline and training loss over the training steps of each task's best cell
    (engine CSV logs)."""
    frame = main_slice(results)
    curves = []
    for task in results.tasks:
        metric = results.primary[task]
        here = frame[frame.task == task]
        if f"val/{metric}" not in here or here[f"val/{metric}"].isna().all():
            continue
        best = here.loc[here[f"val/{metric}"].idxmax()]
        csv = adapter.metrics_csv(results.bench_dir / str(best.run_dir))
        if csv is None:
            continue
        log = pd.read_csv(csv)
        val_col, loss_col = _curve_columns(log, metric)
        if val_col is None and loss_col is None:
            continue
        curves.append((task, str(best.label), metric, log, val_col, loss_col))
    if not curves:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), squeeze=False)
    for ax, (task, label, metric, log, val_col, loss_col) in zip(axes[0], curves):
        x = "step" if "step" in log else "epoch" if "epoch" in log else None
        if val_col:
            v = log.dropna(subset=[val_col])
            ax.plot(v[x] if x else range(len(v)), v[val_col], "o-", color="tab:blue", label=f"val {metric}")
            ax.set_ylabel(f"val {metric}", color="tab:blue")
        if loss_col:
            twin = ax.twinx()
            t = log.dropna(subset=[loss_col])
            t = t.groupby(x)[loss_col].mean().reset_index() if x else t
            twin.plot(t[x] if x else range(len(t)), t[loss_col], "--", color="tab:orange", label="train loss")
            twin.set_ylabel("train loss", color="tab:orange")
        ax.set_xlabel(x or "logged point")
        ax.set_title(f"{task}\n{label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path



def _seed_series(csv: Path, column_of) -> tuple[pd.Series | None, pd.Series | None]:
    """(validation headline, training loss) of one cell's CSV log, indexed by step (mean per step)."""
    try:
        log = pd.read_csv(csv)
    except (OSError, ValueError, pd.errors.ParserError):
        return None, None
    val_col, loss_col = column_of(log)
    x = "step" if "step" in log else "epoch" if "epoch" in log else None
    out = []
    for col in (val_col, loss_col):
        if col is None or x is None:
            out.append(None)
            continue
        part = log.dropna(subset=[col])
        out.append(part.groupby(x)[col].mean() if len(part) else None)
    return out[0], out[1]


def recipe_curves(results: Results, task: str, path: Path) -> Path | None:
    """Learning curves of every recipe, one panel column per backbone: validation headline (top) and
    training loss (bottom) against the step, mean over seeds (line) with the seeds' min-max (band)."""
    frame = main_slice(results)
    here = frame[frame.task == task]
    metric = results.primary[task]
    panels: dict[str, dict[str, list[tuple[pd.Series | None, pd.Series | None]]]] = {}
    for backbone in results.backbones:
        for recipe in results.recipes:
            cells = here[(here.backbone == backbone) & (here.recipe == recipe)].sort_values("seed")
            series = []
            for run_dir in cells.run_dir:
                csv = adapter.metrics_csv(results.bench_dir / str(run_dir)) if run_dir else None
                if csv is not None:
                    val, loss = _seed_series(csv, lambda log: _curve_columns(log, metric))
                    if val is not None or loss is not None:
                        series.append((val, loss))
            if series:
                panels.setdefault(backbone, {})[recipe] = series
    if not panels:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(panels), figsize=(0.6 + 3.0 * len(panels), 5.0), squeeze=False, sharex="col")
    colours = dict(zip(results.recipes, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for j, (backbone, recipes) in enumerate(panels.items()):
        for row, what in enumerate((f"val {metric}", "train loss")):
            ax = axes[row][j]
            for recipe, series in recipes.items():
                parts = [s[row] for s in series if s[row] is not None]
                if not parts:
                    continue
                table = pd.concat(parts, axis=1).sort_index()
                mean = table.mean(axis=1)
                ax.plot(mean.index, mean.to_numpy(), "-" if row else "o-", ms=3, color=colours[recipe],
                        label=f"{recipe} ({len(parts)} seed{'s' if len(parts) > 1 else ''})")
                if len(parts) > 1:
                    ax.fill_between(mean.index, table.min(axis=1).to_numpy(), table.max(axis=1).to_numpy(),
                                    color=colours[recipe], alpha=0.2, lw=0)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(what)
            if row == 0:
                ax.set_title(backbone, fontsize=10)
            else:
                ax.set_xlabel("step")
        axes[0][j].legend(fontsize=7, loc="best")
    fig.suptitle(f"{task}: learning curves per recipe (mean over seeds, band: min-max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cd_diagram(average: dict[str, float], cd: float, groups: list[list[str]], title: str, path: Path) -> Path | None:
    """A critical-difference diagram: the average-rank axis (1 = best, at the left), each backbone
    placed at its average rank, a bar of length CD, and thick bars joining backbones whose average
    ranks differ by at most CD (not significantly different by the Nemenyi test)."""
    if len(average) < 2 or math.isnan(cd):
        return None
    plt = _pyplot()
    names = sorted(average, key=average.get)
    k = len(names)
    lo, hi = 1, max(k, math.ceil(max(average.values())))
    half = math.ceil(k / 2)
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.3 * (half + len(groups))))
    ax.set_xlim(lo - 0.3, hi + 0.3)
    depth = half * 0.7 + 0.3 * len(groups) + 0.7
    ax.set_ylim(-depth, 2.2)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="black", lw=1)
    for r in range(lo, hi + 1):
        ax.vlines(r, 0, 0.18, color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", va="bottom", fontsize=9)
    ax.hlines(1.3, lo, lo + min(cd, hi - lo), color="crimson", lw=2)
    ax.text(lo + min(cd, hi - lo) / 2, 1.45, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8, color="crimson")
    for i, name in enumerate(names):
        left = i < half
        level = -(1 + (i if left else k - 1 - i)) * 0.7 - 0.3 * len(groups)
        x = average[name]
        end = lo - 0.25 if left else hi + 0.25
        ax.plot([x, x, end], [0, level, level], color="dimgray", lw=0.8)
        ax.text(end + (-0.05 if left else 0.05), level, f"{name} ({x:.2f})", ha="right" if left else "left",
                va="center", fontsize=9)
    for j, group in enumerate(groups):
        y = -0.25 - 0.28 * j
        ax.hlines(y, average[group[0]] - 0.03, average[group[-1]] + 0.03, color="black", lw=3.5)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
