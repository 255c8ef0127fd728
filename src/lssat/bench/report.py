"""`write_report(bench_dir)`: the benchmark report from the results store.

Writes into the benchmark folder: ``report.md``, ``report.html`` (self-contained, images
embedded), ``tables/*.csv`` and ``tables/*.tex`` (one pair per table) and ``plots/*.png``.
The report knows only the store (run records plus their axes); the reconstruction pictures load the
cells' saved weights through `lssat.bench.pictures` and are left out, with a note, when they cannot.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from lssat.bench import drilldown, fairness_report, plots, questions, tables, verdicts
from lssat.bench import generalisation
from lssat.bench.html import Block, Bullets, Heading, Image, Table, Text, render_html, render_markdown, write_tables
from lssat.bench.results import Results, load_results
from lssat.fileio import atomic_write_text

REPORT_MD, REPORT_HTML = "report.md", "report.html"


def _seed_counts(results: Results) -> pd.Series:
    frame = tables.main_slice(results)
    if not len(frame):
        return pd.Series(dtype=int)
    return frame.groupby(["backbone", "task", "recipe"]).seed.nunique()


def limits(results: Results, q3: dict[str, Any]) -> list[str]:
    """What the numbers cannot support, in words."""
    out = []
    frame = results.frame
    seeds = _seed_counts(results)
    if len(seeds):
        low = int(seeds.min())
        if low == 1:
            out.append("Some cells have a **single seed**: their ± is missing and no difference involving them "
                       "can be tested for significance.")
        elif low == 2:
            out.append("Only **2 seeds** per cell: Welch's t-test rests on 1 degree of freedom per group and "
                       "the exact Mann-Whitney test cannot go below p = 0.33 (with tied values scipy falls back to a rough normal approximation); treat every p-value as a rough pointer.")
        elif low < 5:
            out.append(f"{low} seeds per cell: tests detect only large differences.")
    sizes = []
    for column in ("test/n_videos", "test/n"):
        if column in frame and frame[column].notna().any():
            sizes.append((column.split("/")[1], int(frame[column].min())))
    for name, n in sizes:
        if n and n < 1000:
            noise = 0.5 / math.sqrt(n)
            out.append(f"Small test sets (as few as {n} {'videos' if name == 'n_videos' else 'samples'}): an "
                       f"accuracy has a standard error up to {noise:.3f}, so differences below about "
                       f"{2 * noise:.3f} are within sampling noise.")
            break
    if "synthetic" in frame and frame.synthetic.any():
        out.append("Results come from the **built-in synthetic faces** (cartoon faces whose evidence is planted) "
                   "with tiny models and short training: what they show holds for these faces at this budget; they "
                   "are no evidence about FaceForensics++, CelebA or AffectNet, nor about the papers' claims.")
    if results.failed:
        out.append(f"{len(results.failed)} cell(s) **failed** and are left out (listed at the end); "
                   "comparisons involving them are missing.")
    if results.missing:
        out.append(f"{len(results.missing)} cell(s) of the spec have **no result yet** (not run or interrupted); "
                   "rerun `lssat bench` on the same spec to finish them.")
    if results.stale:
        out.append(f"{results.stale} stored record(s) belong to cells no longer in the spec and are not reported.")
    test = (q3 or {}).get("friedman") or {}
    if test and not test.get("ran"):
        out.append(f"The Friedman test across tasks could not be run: {test.get('reason')}.")
    elif test.get("caveat"):
        out.append(f"Friedman test: {test['caveat']}.")
    out.append("p-values in the Q1–Q3, recipe and fairness sections are raw (uncorrected); the Verdicts "
               "section calls a claim significant only after Holm's correction over the family it states.")
    out += results.notes
    return out


def _question_tests(q1: pd.DataFrame, q2: pd.DataFrame, q3: dict[str, Any]) -> list[tuple[str, float]]:
    """The research questions' tests, for the Holm family."""
    tests = [(f"Q1 best vs worst backbone, {r['task']} (Welch)", r.get("welch_p", math.nan))
             for r in q1.to_dict("records")]
    tests += [(f"Q2 best vs runner-up backbone, {r['task']} (Welch)", r.get("welch_p", math.nan))
              for r in q2.to_dict("records") if r.get("tested")]
    test = (q3 or {}).get("friedman") or {}
    if test.get("ran"):
        tests.append(("Q3 backbones rank alike across tasks (Friedman over task means)", test["p"]))
    return tests


def _failed_table(results: Results) -> Table | None:
    if not results.failed:
        return None
    rows = {e.get("label", e["cell_id"]): {"error": str(e.get("error") or (e.get("record") or {}).get("error")),
                                          "attempts": e.get("attempts", 1), "run folder": e.get("run_dir", "")}
            for e in results.failed}
    frame = pd.DataFrame(rows).T
    frame.index.name = "cell"
    return Table("failed", "Failed cells and their errors", frame)


def _environment(results: Results) -> list[str]:
    env = results.env
    if not env:
        return []
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
    items = [f"Python {env.get('python')} on {env.get('platform')} ({env.get('cpu_count')} CPUs, host "
             f"{env.get('host')})", f"Packages: {packages}"]
    if env.get("cuda_devices"):
        items.append("GPUs: " + ", ".join(env["cuda_devices"]))
    return items


def build_blocks(results: Results, plot_dir: Path, pictures: bool = True) -> tuple[list[Block], dict[str, Any]]:
    """All sections of the report; plots are written into `plot_dir`."""
    options = (results.spec or {}).get("report", {}) or {}
    alpha = float(options.get("alpha", 0.05))
    plot_dir.mkdir(parents=True, exist_ok=True)
    rel = Path(plot_dir.name)
    frame = results.frame
    seeds = sorted(frame.seed.unique().tolist()) if len(frame) else []
    blocks: list[Block] = [Text(
        f"{len(frame)} of {results.expected} cells done, {len(results.failed)} failed, {len(results.missing)} "
        f"not run; {len(results.backbones)} backbones × {len(results.tasks)} tasks × {len(results.recipes)} "
        f"recipes × {len(seeds)} seed(s) ({', '.join(map(str, seeds))}). Metrics are on the test split; "
        f"checkpoints and recipes are chosen on the validation split. Written {time.strftime('%Y-%m-%d %H:%M')}.")]
    if not len(frame):
        return blocks + [Text("No cell has finished yet: nothing to report.")], {}
    chosen = tables.choose_recipes(results)
    evidence = questions.gather(results, chosen)
    q1, q1_rows = questions.question_one(evidence, alpha)
    q2, q2_rows = questions.question_two(evidence, alpha)
    q3, q3_info = questions.question_three(evidence, alpha)

    blocks += [Heading("Limits of this evidence"), Bullets(limits(results, q3_info))]
    judged = verdicts.verdicts(results, alpha, _question_tests(q1_rows, q2_rows, q3_info), q3_info)
    blocks += verdicts.verdict_blocks(results, judged)
    blocks += [Heading("Main results"), tables.main_table(results, chosen)]
    if (p := plots.heatmap(results, chosen, plot_dir / "heatmap.png")) is not None:
        blocks.append(Image(rel / p.name, "Backbones × tasks: test headline metric"))
    blocks += [Heading("Recipes: what each auxiliary configuration adds"), tables.recipe_table(results)]
    if (gain := tables.recipe_gain_table(results)) is not None:
        blocks.append(gain)
    blocks += [Heading("The three research questions")] + q1 + q2 + q3
    if len(q1_rows):
        blocks.append(Table("q1_backbone_spread", "Q1 evidence per task", q1_rows.set_index("task").map(
            lambda v: f"{v:.4g}" if isinstance(v, float) else v), q1_rows))
    blocks += verdicts.statistics_blocks(results, judged, plot_dir, rel)
    blocks += generalisation.section(results, plot_dir, rel)  # only with eval sets or leave-one-method-out
    blocks += [Heading("Cost"), tables.cost_table(results)]
    if (rc := tables.recipe_cost_table(results)) is not None:
        blocks.append(rc)
    for task in results.tasks:
        if (p := plots.accuracy_vs_flops(results, task, plot_dir / f"pareto_{task}.png")) is not None:
            blocks.append(Image(rel / p.name, f"{task}: {results.primary[task]} versus FLOPs per image "
                                "(ringed: the Pareto front)"))
    blocks += drilldown.detail_blocks(results)
    if (ft := tables.fraction_table(results)) is not None:
        blocks += [Heading("Training-data fractions"), ft]
    blocks.append(Heading("Learning curves"))
    if (p := plots.learning_curves(results, chosen, plot_dir / "learning_curves.png")) is not None:
        blocks.append(Image(rel / p.name, "Validation headline metric and training loss per epoch of each "
                            "task's best cell"))
    else:
        blocks.append(Text("No per-epoch logs found in the run folders."))
    curves, curve_tasks = drilldown.curve_blocks(results, plot_dir, rel)
    blocks += curves
    blocks += fairness_report.fairness_section(results, alpha)
    if pictures:
        blocks += _pictures(results, plot_dir, rel)
    blocks += [Heading("Cells"), drilldown.cells_table(results, curve_tasks)]
    if (failed := _failed_table(results)) is not None:
        blocks += [Heading("Failed cells"), failed]
    if env := _environment(results):
        blocks += [Heading("Environment"), Bullets(env)]
    summary = {"chosen": {f"{b}/{t}": r for (b, t), r in chosen.items()}, "q1": q1_rows.to_dict("records"),
               "q2": q2_rows.to_dict("records"), "q3": q3_info,
               "verdicts": {"recipes": [{k: r[k] for k in ("recipe", "task", "fraction", "answer", "text")}
                                        for r in judged["recipes"]], "questions": judged["questions"],
                            "learned": judged["learned"]}}
    return blocks, summary


def _pictures(results: Results, plot_dir: Path, rel: Path) -> list[Block]:
    blocks: list[Block] = [Heading("Reconstructions")]
    try:
        from lssat.bench.pictures import reconstruction_pictures

        made = reconstruction_pictures(results, plot_dir)
    except Exception as err:  # pictures are a bonus: never lose the report over them
        return blocks + [Text(f"Reconstruction pictures could not be made: {type(err).__name__}: {err}")]
    if not made:
        return blocks + [Text("No cell with a reconstruction branch and saved weights to draw.")]
    for recipe, path in made:
        blocks.append(Image(rel / path.name, f"{recipe}: input, masked input, texture target and "
                            "reconstruction for validation faces"))
    return blocks


def write_report(bench_dir: Path | str, pictures: bool = True) -> Path:
    """Write report.md, report.html, tables/ and plots/ into `bench_dir`; returns report.md's path."""
    bench_dir = Path(bench_dir)
    results = load_results(bench_dir)
    blocks, _ = build_blocks(results, bench_dir / "plots", pictures=pictures)
    write_tables(blocks, bench_dir / "tables")
    name = (results.spec or {}).get("name", bench_dir.name)
    title = f"Backbone benchmark: {name}"
    atomic_write_text(bench_dir / REPORT_MD, render_markdown(title, blocks))
    atomic_write_text(bench_dir / REPORT_HTML, render_html(title, blocks, bench_dir))
    return bench_dir / REPORT_MD
