"""The report's way down from a number to the run that produced it, and the metrics the main tables
leave out.

- `cells_table`: every cell of the spec (done, failed, not run) with its status, headline, cost and
  links into its run folder (the folder, its config, its CSV log, its learning curves); each row has
  an anchor (`tables.cell_anchor`), and the first seed of each (backbone, task, recipe, fraction)
  group another one (`tables.group_anchor`) that the numbers of the main and recipe tables link to.
- `detail_blocks`: per task, what every run record already holds: per-method AUC, EER and AP for
  deepfakes; per-class recall and confusion matrices for expression; per-attribute accuracy.
- `curve_blocks`: learning curves of every recipe per backbone and task (`plots.recipe_curves`).

Links are relative to the benchmark folder, where report.html lies; a link is written only to a file
that exists when the report is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from lssat.bench import adapter, plots
from lssat.bench.html import Block, Heading, Image, Table, Text, anchor_id, fmt_sig
from lssat.bench.results import Results
from lssat.bench.stats import fmt_mean_std, mean_std
from lssat.bench.store import ResultsStore
from lssat.bench.tables import cell_anchor, choose_recipes, group_anchor, main_slice

EMPTY = "–"


def curves_file(task: str) -> str:
    """File name of a task's per-recipe learning curves in the plots folder."""
    return f"curves_{anchor_id(task)}.png"


def curves_anchor(task: str) -> str:
    """The id `html.render_html` gives the figure of a task's learning curves."""
    return anchor_id("fig", Path(curves_file(task)).stem)


def _href(bench_dir: Path, path: Path | None, folder: bool = False) -> str | None:
    """A relative link from the benchmark folder to `path`, or None when it does not exist."""
    if path is None or not (path.is_dir() if folder else path.is_file()):
        return None
    try:
        rel = path.resolve().relative_to(bench_dir.resolve()).as_posix()
    except ValueError:
        return None
    return quote(rel) + ("/" if folder else "")


def _files(bench_dir: Path, run_dir: str | None) -> dict[str, str | None]:
    """Links to a cell's run folder, config and CSV log (None for what is not there)."""
    if not run_dir:
        return {"run folder": None, "config": None, "log": None}
    folder = bench_dir / str(run_dir)
    engines = adapter.engine_folders(folder) if folder.is_dir() else []
    config = engines[-1] / "config.yaml" if engines else None
    if config is None or not config.is_file():
        config = folder / "cell_config.yaml"
    return {"run folder": _href(bench_dir, folder, folder=True), "config": _href(bench_dir, config),
            "log": _href(bench_dir, adapter.metrics_csv(folder) if folder.is_dir() else None)}


_LINK_TEXT = {"run folder": "folder", "config": "config", "log": "metrics.csv", "curves": "curves"}


def cells_table(results: Results, curves: set[str]) -> Table:
    """Every cell of the spec, one row each (see the module docstring); `curves`: the tasks whose
    learning-curve figure is in the report."""
    bench_dir = results.bench_dir
    frame = results.frame
    several = len(frame) and frame.fraction.nunique() > 1
    rows: list[dict[str, Any]] = []
    for r in frame.to_dict("records"):
        metric = results.primary.get(r["task"])
        rows.append({**r, "status": "done", "metric": metric,
                     "test": r.get(f"test/{metric}", math.nan), "val": r.get(f"val/{metric}", math.nan)})
    for e in results.failed:
        axes = e.get("axes") or {}
        error = str(e.get("error") or (e.get("record") or {}).get("error") or "no error recorded")
        rows.append({**axes, "label": e.get("label", e["cell_id"]), "run_dir": e.get("run_dir"),
                     "status": e.get("status", "failed"), "why": error})
    order = {key: {v: i for i, v in enumerate(values)} for key, values in
             (("backbone", results.backbones), ("task", results.tasks), ("recipe", results.recipes))}

    def sort_key(row: dict[str, Any]) -> tuple:
        return tuple(order[k].get(row.get(k), len(order[k])) for k in ("backbone", "task", "recipe")) + (
            -float(row.get("fraction") or 1.0), float(row.get("seed") or 0))

    rows.sort(key=sort_key)
    for label in results.missing:
        rows.append({"label": label, "status": "not run", "why": "no result yet: rerun `lssat bench` on this spec"})
    display, links, numeric, anchors = {}, {}, [], {}
    seen_groups: set[str] = set()
    for row in rows:
        label = str(row["label"])
        ids = [cell_anchor(label)]
        if row.get("backbone") is not None and row.get("task") is not None and row.get("recipe") is not None:
            group = group_anchor(row["backbone"], row["task"], row["recipe"], row.get("fraction") or 1.0)
            if group not in seen_groups:
                seen_groups.add(group)
                ids.insert(0, group)
        anchors[label] = ids
        metric = row.get("metric")
        shown: dict[str, str] = {"status": row["status"]}
        for key in ("backbone", "task", "recipe", "seed"):
            shown[key] = EMPTY if row.get(key) is None else str(row[key])
        if several:
            shown["fraction"] = EMPTY if row.get("fraction") is None else f"{float(row['fraction']):g}"
        shown["test headline"] = f"{fmt_sig(row.get('test'))} ({metric})" if metric else EMPTY
        shown["val headline"] = fmt_sig(row.get("val")) if metric else EMPTY
        if "why" in row:
            shown["test headline"] = row["why"]
        shown["parameters (M)"] = fmt_sig(_scaled(row.get("cost/parameters"), 1e-6))
        shown["GFLOPs / image"] = fmt_sig(_scaled(row.get("cost/flops_per_image"), 1e-9))
        shown["wall time (s)"] = fmt_sig(_scaled(row.get("cost/wall_time"), 1.0))
        files = _files(bench_dir, row.get("run_dir"))
        files["curves"] = "#" + curves_anchor(row["task"]) if row.get("task") in curves and row["status"] == "done" \
            else None
        for key, href in files.items():
            shown[key] = _LINK_TEXT[key] if href else EMPTY
            links.setdefault(key, {})[label] = href
        display[label] = shown
        numeric.append({"cell": label, **{k: v for k, v in shown.items() if k not in files}, **files,
                        "test": row.get("test", math.nan), "val": row.get("val", math.nan)})
    disp = pd.DataFrame(display).T if display else pd.DataFrame(columns=["status"])
    disp.index.name = "cell"
    note = ("Each row is one cell (one seed); the main and recipe tables link to the first seed of a group. "
            "Links are relative to this report's folder.")
    link_columns = [c for c in _LINK_TEXT if c in disp.columns]
    if link_columns and (disp[link_columns] == EMPTY).any().any():
        note += (" –: in a link column, the file is not in the cell's folder (a failed cell can stop before "
                 "writing it; a cell not run has no folder; curves exist for tasks with per-step logs).")
    return Table("cells", "Every cell: status, test and validation headline metric, cost, and its files",
                 disp, pd.DataFrame(numeric), links=pd.DataFrame(links), anchors=anchors, note=note)


def _scaled(value: Any, scale: float) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return float(value) * scale


def _names(results: Results, entries: dict[str, dict[str, Any]], task: str, prefix: str) -> list[str]:
    """Class or attribute names of a task in the records' order (`record.task.names`), else the
    metric columns' order."""
    frame = main_slice(results)
    here = frame[frame.task == task].dropna(axis=1, how="all")
    present = [c[len(f"test/{prefix}/"):] for c in here.columns if c.startswith(f"test/{prefix}/")]
    names = _record_names(entries).get(task) or []
    return [n for n in names if n in present] + [n for n in present if n not in names]


def _load_entries(results: Results) -> dict[str, dict[str, Any]]:
    """The store's entries by cell id (for what the results frame does not hold: confusion matrices,
    class names); empty when the store cannot be read, so the detail section never fails the report."""
    try:
        return ResultsStore(results.bench_dir).load()
    except Exception:
        return {}


def _record_names(entries: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for entry in entries.values():
        task = (entry.get("axes") or {}).get("task")
        names = ((entry.get("record") or {}).get("task") or {}).get("names")
        if task and isinstance(names, list) and task not in out:
            out[task] = [str(n) for n in names]
    return out


def _by_recipe(results: Results, task: str, columns: list[tuple[str, str]]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                      pd.DataFrame]:
    """(display, numeric, links): rows 'backbone / recipe', columns the given test metrics, mean ± std
    over seeds; each number links to its group in the cells table."""
    frame = main_slice(results)
    here = frame[frame.task == task]
    fraction = frame.fraction.max()
    display, links, rows = {}, {}, []
    for backbone in results.backbones:
        for recipe in results.recipes:
            cells = here[(here.backbone == backbone) & (here.recipe == recipe)].sort_values("seed")
            if not len(cells):
                continue
            key = f"{backbone} / {recipe}"
            row = {"backbone": backbone, "recipe": recipe, "seeds": len(cells)}
            for metric, title in columns:
                values = cells[f"test/{metric}"].astype(float).tolist() if f"test/{metric}" in cells else []
                m, s, _ = mean_std(values)
                row[metric] = m
                display.setdefault(title, {})[key] = fmt_mean_std(m, s)
                links.setdefault(title, {})[key] = "#" + group_anchor(backbone, task, recipe, fraction)
            rows.append(row)
    disp = pd.DataFrame(display).fillna(EMPTY)
    disp.index.name = "backbone / recipe"
    return disp, pd.DataFrame(rows), pd.DataFrame(links)


def _deepfake(results: Results, entries: dict[str, dict[str, Any]], task: str) -> list[Block]:
    frame = main_slice(results)
    here = frame[frame.task == task].dropna(axis=1, how="all")
    methods = sorted(c[len("test/auc/"):] for c in here.columns if c.startswith("test/auc/"))
    columns = [(m, t) for m, t in (("video_auc", "video AUC"), ("frame_auc", "frame AUC"), ("acc", "accuracy"),
                                   ("eer", "EER"), ("ap", "AP")) if f"test/{m}" in here]
    columns += [(f"auc/{m}", f"AUC {m}") for m in methods]
    if not columns:
        return []
    disp, numeric, links = _by_recipe(results, task, columns)
    note = ("Per-method AUC: that method's fake frames against all real frames of the test split. EER: equal "
            "error rate, lower is better; AP: average precision.")
    if (disp == EMPTY).any().any():
        note += (" –: undefined on these cells' test split (an AUC, EER or AP needs both real and fake frames; "
                 "a video AUC needs video ids and videos of both classes).")
    return [Table(f"deepfake_{anchor_id(task)}", f"{task}: test detection metrics per backbone and recipe, mean ± "
                  "std over seeds", disp, numeric, links=links, note=note)]


def _expression(results: Results, entries: dict[str, dict[str, Any]], task: str) -> list[Block]:
    blocks: list[Block] = []
    names = _names(results, entries, task, "recall")
    if names:
        disp, numeric, links = _by_recipe(results, task, [(f"recall/{n}", n) for n in names])
        note = "Recall of a class: the share of its test faces predicted as that class."
        if (disp == EMPTY).any().any():
            note += " –: the class is absent from the test split, so its recall is undefined."
        blocks.append(Table(f"recall_{anchor_id(task)}", f"{task}: test recall per class, per backbone and recipe, "
                            "mean ± std over seeds", disp, numeric, links=links, note=note))
    blocks += _confusions(results, entries, task, names)
    return blocks


def _confusions(results: Results, entries: dict[str, dict[str, Any]], task: str, names: list[str]) -> list[Block]:
    """One confusion matrix per backbone, of the recipe the main table shows for it, summed over its
    seeds (test split)."""
    frame = main_slice(results)
    chosen = choose_recipes(results)
    record_names = _record_names(entries).get(task) or names
    blocks: list[Block] = []
    for backbone in results.backbones:
        recipe = chosen.get((backbone, task))
        cells = frame[(frame.task == task) & (frame.backbone == backbone) & (frame.recipe == recipe)]
        total, seeds = None, 0
        for cid in cells.cell_id:
            matrix = ((((entries.get(cid) or {}).get("record") or {}).get("metrics") or {}).get("test") or {}).get(
                "confusion_matrix")
            if not isinstance(matrix, list) or not matrix:
                continue
            array = pd.DataFrame(matrix).astype(float)
            if total is not None and array.shape != total.shape:
                continue
            total = array if total is None else total + array
            seeds += 1
        if total is None:
            continue
        labels = record_names if len(record_names) == total.shape[0] else [str(i) for i in range(total.shape[0])]
        total.index, total.columns = labels, labels
        disp = total.map(lambda v: f"{v:,.0f}")
        disp.index.name = "true \\ predicted"
        blocks.append(Table(f"confusion_{anchor_id(task, backbone)}", f"{task}: confusion matrix of {backbone} "
                            f"({recipe}, the main table's recipe), test split, summed over {seeds} seed(s); rows: "
                            "true class, columns: predicted class", disp, total))
    return blocks


def _attributes(results: Results, entries: dict[str, dict[str, Any]], task: str) -> list[Block]:
    names = _names(results, entries, task, "acc")
    if not names:
        return []
    disp, numeric, links = _by_recipe(results, task, [(f"acc/{n}", n) for n in names])
    note = None
    if (disp == EMPTY).any().any():
        note = "–: no test accuracy recorded for this attribute in these cells."
    return [Table(f"attributes_{anchor_id(task)}", f"{task}: test accuracy per attribute, per backbone and recipe, "
                  "mean ± std over seeds", disp, numeric, links=links, note=note)]


def detail_blocks(results: Results) -> list[Block]:
    """'Per-task detail': per-method deepfake metrics, expression recall and confusion matrices,
    per-attribute accuracy."""
    blocks: list[Block] = []
    entries = _load_entries(results)
    for task in results.tasks:
        kind = results.task_kind(task)
        made = {"deepfake": _deepfake, "expression": _expression, "attributes": _attributes}.get(kind, lambda *_: [])(
            results, entries, task)
        if made:
            blocks += [Heading(task if task == kind else f"{task} ({kind})", 3)] + made
    if not blocks:
        return [Heading("Per-task detail"), Text("The run records hold no per-method, per-class or per-attribute "
                                                 "metrics.")]
    return [Heading("Per-task detail"), Text("Metrics every run record holds beyond the headline, on the test "
                                             "split at the largest training fraction.")] + blocks


def curve_blocks(results: Results, plot_dir: Path, rel: Path) -> tuple[list[Block], set[str]]:
    """Per task, the learning curves of every recipe per backbone; also the tasks that got a figure."""
    blocks: list[Block] = []
    made: set[str] = set()
    for task in results.tasks:
        if (p := plots.recipe_curves(results, task, plot_dir / curves_file(task))) is not None:
            made.add(task)
            blocks.append(Image(rel / p.name, f"{task}: validation {results.primary[task]} (top) and training loss "
                                "(bottom) per step, every recipe of each backbone: mean over seeds, band: min-max "
                                "over seeds"))
    return blocks, made
