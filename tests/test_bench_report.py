"""Benchmark spec, statistics and report on fabricated run records (no training)."""

from __future__ import annotations

import json
import math
import random
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest

from lssat.bench.html import latex_escape, table_markdown
from lssat.bench.report import write_report
from lssat.bench.runner import run_benchmark
from lssat.bench.spec import load_spec
from lssat.bench.stats import average_ranks, compare_two, friedman, pareto_front
from lssat.errors import ConfigError

SKILL = {"s": 0.70, "m": 0.80, "b": 0.85}  # backbone -> base score
FLOPS = {"s": 1e6, "m": 4e6, "b": 1.6e7}
BONUS = {"supervised": 0.0, "ssat": 0.01, "lssat-ldp": 0.02}
GAP = {"supervised": 0.10, "ssat": 0.09, "lssat-ldp": 0.03}  # deepfake AUC gap light - dark


def spec_dict(seeds=(0, 1, 2), tasks=("deepfake", "attributes", "expression"), backbones=("small", "mid", "big")):
    codes = {"small": "s", "mid": "m", "big": "b"}
    return {
        "name": "fake",
        "base": {"trainer": {"epochs": 1}},
        "backbones": {b: {"model": {"backbone": codes[b]}} for b in backbones},
        "tasks": {t: {"kind": t, "config": {"data": {"synthetic": {"task": t}}}} for t in tasks},
        "recipes": ["supervised", "ssat", "lssat-ldp"],
        "seeds": list(seeds),
    }


def fake_train(config, run_dir, resume, *, expression_winner="s"):
    """A run record whose numbers follow SKILL + BONUS (+ small seed noise); expression favours
    `expression_winner` by a wide margin, so the best backbone depends on the task."""
    bb, task = config["model"]["backbone"], config["data"]["synthetic"]["task"]
    recipe, seed = config["recipe"]["name"], config["trainer"]["seed"]
    rng = random.Random(f"{bb}{task}{recipe}{seed}")
    base = SKILL[bb] + BONUS[recipe] + (0.2 if task == "expression" and bb == expression_winner else 0.0)

    def v():
        return min(1.0, base + rng.gauss(0, 0.005))

    if task == "deepfake":
        gap = GAP[recipe] + rng.gauss(0, 0.002)
        test = {"video_auc": v(), "frame_auc": v(), "acc": v() - 0.05, "n_videos": 400, "n_frames": 3200,
                "fair/skin_tone/n/light": 2400, "fair/skin_tone/n/dark": 800,
                "fair/skin_tone/auc/light": 0.9, "fair/skin_tone/auc/dark": 0.9 - gap,
                "fair/skin_tone/acc/light": 0.85, "fair/skin_tone/acc/dark": 0.8,
                "fair/skin_tone/auc_gap": gap, "fair/skin_tone/acc_gap": 0.05,
                "fair/skin_tone/dp_diff": 0.04, "fair/skin_tone/eo_diff": 0.06,
                "eer": 1.0 - base, "ap": base, "auc/Deepfakes": base + 0.05, "auc/NeuralTextures": base - 0.05}
        names = ["real", "fake"]
    elif task == "attributes":
        test = {"mean_acc": v(), "n": 2000, "acc/Smiling": base + 0.02, "acc/Eyeglasses": base - 0.02}
        names = ["Smiling", "Eyeglasses"]
    else:
        test = {"acc": v(), "macro_f1": v() - 0.1, "n": 2000, "confusion_matrix": [[1, 0], [0, 1]],
                "recall/Happy": 1.0, "recall/Sad": 1.0}
        names = ["Happy", "Sad"]
    val = {k: x + 0.01 for k, x in test.items() if isinstance(x, float)}
    log = Path(run_dir) / "abc" / "logs" / "version_0"
    log.mkdir(parents=True, exist_ok=True)
    key = {"deepfake": "video_auc", "attributes": "mean_acc", "expression": "acc"}[task]
    rows = ["epoch,step,train/loss_epoch,val/" + key] + [f"{e},{e},{1 / (e + 1)},{base - 0.1 + 0.05 * e}" for e in range(3)]
    (log / "metrics.csv").write_text("\n".join(rows) + "\n")
    return {"run_id": "abc", "config": config, "status": "done", "seed": seed, "data": {"dataset": "synthetic"},
            "task": {"kind": task, "names": names},
            "metrics": {"val": val, "test": test},
            "cost": {"parameters": FLOPS[bb] / 10, "flops_per_image": FLOPS[bb], "wall_time_s": 3.0,
                     "train_images_per_second": 1e9 / FLOPS[bb] / (1 + 10 * BONUS[recipe]),
                     "peak_memory_bytes": 2**27}}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    run_benchmark(load_spec(spec_dict()), out, train_fn=fake_train, progress=False, write_report=False)
    write_report(out, pictures=False)
    return out


# ---------------------------------------------------------------- spec

def test_spec_cells_and_ids():
    spec = load_spec(spec_dict())
    cells = spec.cells()
    assert len(cells) == 3 * 3 * 3 * 3
    assert len({c.cell_id for c in cells}) == len(cells)
    assert [c.cell_id for c in load_spec(spec_dict()).cells()] == [c.cell_id for c in cells]  # stable
    cell = next(c for c in cells if c.label == "mid_attributes_ssat_s2")
    assert cell.config == {"trainer": {"epochs": 1, "seed": 2}, "model": {"backbone": "m"},
                           "data": {"synthetic": {"task": "attributes"}}, "recipe": {"name": "ssat"}}
    changed = load_spec(spec_dict(), overrides=["trainer.epochs=2"]).cells()
    assert not {c.cell_id for c in changed} & {c.cell_id for c in cells}  # a changed setting is a new cell


def test_spec_presets_resolve():
    for name in ("default", "quick"):
        cells = load_spec(name).cells()
        assert {c.task_kind for c in cells} >= {"deepfake", "expression"}
        assert len({c.backbone for c in cells}) >= 3
    default = load_spec("default")
    assert {"supervised", "ssat", "lssat-ldp", "lssat-lbp", "rrlnrc"} <= set(default.recipes)
    assert {c.task_kind for c in default.cells()} == {"deepfake", "attributes", "expression"}
    # the default study: three backbone families, at least 3 seeds, a limited-data fraction
    from lssat.models.backbones import family_of

    families = {family_of(b["model"]["backbone"]).name for b in default.backbones.values()}
    assert len(families) >= 3 and len(default.seeds) >= 3 and min(default.fractions) < 1
    with pytest.raises(ConfigError, match="ffpp_index"):
        load_spec("paper")  # data roots are settings that must be given
    paper = load_spec("paper", settings={"ffpp_index": "/d/ffpp.jsonl", "celeba_index": "/d/celeba.jsonl",
                                         "affectnet_index": "/d/affectnet.jsonl"})
    assert len(paper.seeds) == 3 and set(paper.backbones) == {"vit-b16", "vit-l16", "vit-h14"}
    assert any(c.config["data"]["index"] == "/d/ffpp.jsonl" for c in paper.cells())


@pytest.mark.parametrize("change, message", [
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"seeds": [0, 0]}, "seed twice"),
    ({"tasks": {"x": {"kind": "faces"}}}, "kind must be one of"),
    ({"backbones": {"a_b": {}}}, "label 'a_b'"),
    ({"fractions": [0]}, "fractions must be"),
    ({"runner": {"threads": 0}}, "runner.threads"),
])
def test_spec_errors_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        load_spec({**spec_dict(), **change})


# ---------------------------------------------------------------- statistics

def test_friedman_known_case():
    # 3 backbones ranked identically on 3 tasks: chi2 = 12/(n k (k+1)) * sum R^2 - 3 n (k+1) = 6
    table = pd.DataFrame([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4], [0.95, 0.9, 0.85]], columns=["a", "b", "c"])
    res = friedman(table)
    assert res["ran"] and res["statistic"] == pytest.approx(6.0)
    assert res["p"] == pytest.approx(math.exp(-3.0))  # chi2 with 2 dof: p = exp(-x/2)
    assert "caveat" in res
    assert not friedman(table[["a", "b"]])["ran"]  # two backbones only
    assert "3 backbones" in friedman(table[["a", "b"]])["reason"]
    assert not friedman(table.iloc[:1])["ran"]  # one block


def test_average_ranks_ties_and_missing():
    table = pd.DataFrame({"a": [0.9, 0.5, np.nan], "b": [0.8, 0.5, 0.1], "c": [0.7, 0.4, 0.2]})
    ranks = average_ranks(table)
    assert ranks.loc[0].tolist() == [1.0, 2.0, 3.0]
    assert ranks.loc[1].tolist() == [1.5, 1.5, 3.0]  # tie shares the average rank
    assert 2 not in ranks.index  # incomplete block left out
    assert ranks.loc["average"].tolist() == [1.25, 1.75, 3.0]


def test_pareto_front_known_case():
    flops = [1, 2, 3, 4, 2, np.nan]
    value = [0.5, 0.7, 0.6, 0.9, 0.7, 0.99]
    # 3 is beaten by 2 (cheaper, better); the two equal points at (2, 0.7) both stay; nan never
    assert pareto_front(flops, value).tolist() == [True, True, False, True, True, False]


def test_compare_two_needs_seeds():
    assert not compare_two([0.5], [0.6, 0.7])["ran"]
    assert "2 seeds" in compare_two([0.5], [0.6, 0.7])["reason"]
    res = compare_two([0.90, 0.91, 0.92], [0.70, 0.71, 0.72])
    assert res["ran"] and res["welch_p"] < 0.001 and res["diff"] == pytest.approx(0.2)
    assert not compare_two([0.5, 0.5], [0.5, 0.5])["ran"]


# ---------------------------------------------------------------- report

def test_report_files(bench):
    for name in ("report.md", "report.html", "tables/main.csv", "tables/main.tex", "tables/recipes.csv",
                 "tables/ranks.csv", "tables/cost.csv", "tables/fairness_deepfake_skin_tone.csv",
                 "plots/heatmap.png", "plots/pareto_deepfake.png", "plots/learning_curves.png"):
        assert (bench / name).is_file(), name
    html = (bench / "report.html").read_text()
    # heatmap, 3 Pareto, learning curves, 4 CD diagrams, 3 per-recipe learning curves (one per task)
    assert html.count("data:image/png;base64,") == 12
    assert (bench / "plots/curves_deepfake.png").is_file()
    assert (bench / "plots/cd_all.png").is_file() and (bench / "plots/cd_deepfake.png").is_file()
    assert "<b>" in html and "**" not in html
    assert "\\textbf{" in (bench / "tables/main.tex").read_text()


def test_main_table_marks_best(bench):
    main = pd.read_csv(bench / "tables/main.csv")
    assert len(main) == 3 * 5  # 3 backbones x (2 + 1 + 2 headline metrics)
    assert set(main.recipe) == {"lssat-ldp"}  # chosen on validation: the recipe with the bonus
    row = main[(main.backbone == "big") & (main.metric == "video_auc")].iloc[0]
    assert row["mean"] == pytest.approx(0.87, abs=0.01) and row.seeds == 3
    md = (bench / "report.md").read_text()
    table = md.split("## Main results")[1].split("##")[0]
    big = next(line for line in table.splitlines() if line.startswith("| big"))
    small = next(line for line in table.splitlines() if line.startswith("| small"))
    assert big.count("**") == 2 * 3  # best on deepfake (2 metrics) and attributes
    assert small.count("**") == 2 * 2  # best on expression (2 metrics)


def test_research_questions(bench):
    md = (bench / "report.md").read_text()
    q1 = md.split("### Q1")[1].split("### Q2")[0]
    spread = re.search(r"\*\*deepfake\*\* \(video_auc\): spread (\S+) between big \(\S+\) and small", q1)
    assert spread and float(spread.group(1)) == pytest.approx(0.15, abs=0.01)
    assert "best vs worst significant at α = 0.05 (Welch p < 0.001" in q1
    q2 = md.split("### Q2")[1].split("### Q3")[0]
    assert "**expression**: best backbone **small**" in q2
    assert "**deepfake**: best backbone **big**" in q2
    q3 = md.split("### Q3")[1].split("## Cost")[0]
    ranks = pd.read_csv(bench / "tables/ranks.csv", index_col=0)
    assert ranks.loc["average"].to_dict() == pytest.approx({"small": 7 / 3, "mid": 7 / 3, "big": 4 / 3})
    assert "Friedman test over 3 tasks and 3 backbones" in q3
    assert "**Verdict:** No single backbone serves all tasks" in q3
    assert "significantly behind on expression" in q3


def test_recipe_table_and_fairness(bench):
    recipes = pd.read_csv(bench / "tables/recipes.csv")
    gain = recipes[(recipes.recipe == "lssat-ldp") & (recipes.task == "attributes")]["delta_vs_supervised"]
    assert gain.tolist() == pytest.approx([0.02] * 3, abs=0.01)
    fair = pd.read_csv(bench / "tables/fairness_deepfake_skin_tone.csv").set_index("recipe")
    assert fair.loc["supervised", "auc_gap"] == pytest.approx(0.10, abs=0.005)
    assert fair.loc["lssat-ldp", "auc_gap"] == pytest.approx(0.03, abs=0.005)
    assert fair.loc["lssat-ldp", "n/dark"] == 800 and {"dp_diff", "eo_diff"} <= set(fair.columns)
    md = (bench / "report.md").read_text()
    assert "lssat-ldp: AUC gap 0.070 smaller than supervised's; significant" in md


def test_cost_table(bench):
    cost = pd.read_csv(bench / "tables/cost.csv").set_index("backbone")
    assert cost.loc["big", "GFLOPs / image"] == pytest.approx(0.016)
    assert cost.loc["mid", "peak memory (MB)"] == pytest.approx(128)
    ratio = pd.read_csv(bench / "tables/recipe_cost.csv")
    assert ratio[ratio.recipe == "lssat-ldp"].step_time_ratio.tolist() == pytest.approx([1.2] * 3)


def test_thin_evidence_is_said(tmp_path):
    run_benchmark(load_spec(spec_dict(seeds=(0,), tasks=("deepfake",), backbones=("small", "big"))), tmp_path,
                  train_fn=fake_train, progress=False, write_report=False)
    md = write_report(tmp_path, pictures=False).read_text()
    limits = md.split("## Limits of this evidence")[1].split("## Main")[0]
    assert "**single seed**" in limits
    assert "Friedman test across tasks could not be run: needs at least 3 backbones" in limits
    assert "built-in synthetic faces" in limits
    assert "cannot be tested: needs at least 2 seeds per group" in md
    assert "Verdict:** big ranks first on every task" in md and "not evidence for it" in md


def test_missing_and_failed_cells_are_reported(tmp_path):
    spec = load_spec(spec_dict(seeds=(0, 1), tasks=("attributes",)))

    def sometimes(config, run_dir, resume):
        if config["model"]["backbone"] == "s" and config["recipe"]["name"] == "ssat":
            raise RuntimeError("out of memory")
        return fake_train(config, run_dir, resume)

    run_benchmark(spec, tmp_path, train_fn=sometimes, progress=False, write_report=False)
    bigger = spec_dict(seeds=(0, 1, 2), tasks=("attributes",))
    (tmp_path / "spec.yaml").write_text(json.dumps(bigger))  # the spec grew a seed: 9 cells not run
    md = write_report(tmp_path, pictures=False).read_text()
    assert "2 cell(s) **failed**" in md and "9 cell(s) of the spec have **no result yet**" in md
    failed = pd.read_csv(tmp_path / "tables/failed.csv", index_col=0)
    assert set(failed.index) == {"small_attributes_ssat_s0", "small_attributes_ssat_s1"}
    assert set(failed.error) == {"RuntimeError: out of memory"}
    cells = pd.read_csv(tmp_path / "tables/cells.csv")  # the drill-down lists every cell of the spec
    assert (cells.status == "failed").sum() == 2 and (cells.status == "not run").sum() == 9
    assert cells[cells.status == "failed"]["test headline"].str.contains("out of memory").all()
    assert cells[cells.status == "failed"]["run folder"].str.startswith("runs/small_attributes_ssat_s").all()


def test_render_helpers():
    frame = pd.DataFrame({"a|b": ["**1**", "2"]}, index=pd.Index(["x", "y"], name="k"))
    assert table_markdown(frame).splitlines()[0] == "| k | a\\|b |"
    assert latex_escape("**0.9 ± 0.1** a_b 5%") == "\\textbf{0.9 $\\pm$ 0.1} a\\_b 5\\%"


# ---------------------------------------------------------------- navigation (no browser)

class _Page(HTMLParser):
    """Ids, links, TOC entries and the table cells (per table id) of report.html."""

    def __init__(self):
        super().__init__()
        self.ids, self.hrefs, self.toc, self.h2 = set(), [], [], []
        self.tables: dict[str, list[list[list[str]]]] = {}  # table box id -> rows -> cells -> hrefs in cell
        self._nav = self._box = None
        self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "nav":
            self._nav = True
        if tag == "div" and a.get("class") == "tablebox":
            self._box = a["id"]
            self.tables[self._box] = []
        if tag == "h2":
            self.h2.append(a.get("id"))
        if self._box and tag == "tr":
            self._row = []
            self.tables[self._box].append(self._row)
        if self._row is not None and tag == "td":
            self._cell = []
            self._row.append(self._cell)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
            if self._nav:
                self.toc.append(a["href"])
            if self._cell is not None:
                self._cell.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "nav":
            self._nav = None
        if tag == "div":
            self._box = None
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._cell = None


def _page(folder: Path) -> _Page:
    page = _Page()
    page.feed((folder / "report.html").read_text())
    return page


def test_report_links_anchors_and_toc(bench):
    page = _page(bench)
    assert page.h2 and all(f"#{h}" in page.toc for h in page.h2)  # every section in the contents
    assert "#s-cells" in page.toc and "#s-per-task_detail" in page.toc
    for href in page.hrefs:  # every link resolves: an anchor of the page or a file beside it
        if href.startswith("#"):
            assert href[1:] in page.ids, href
        else:
            assert (bench / unquote(href)).exists(), href
    main = [row for row in page.tables["table-main"] if row]
    assert len(main) == 3 and all(len(row) == 1 + 5 for row in main)
    for row in main:  # every number of the main table links to its cells' row
        assert all(len(cell) == 1 and cell[0].startswith("#cells-") for cell in row[1:])
    cells = [row for row in page.tables["table-cells"] if row]
    assert len(cells) == 81
    folders = [href for row in cells for cell in row for href in cell if href.startswith("runs/")]
    assert len([h for h in folders if h.endswith("/")]) == 81  # every cell row links to its run folder
    assert any(h.endswith("cell_config.yaml") for h in folders) and any(h.endswith("metrics.csv") for h in folders)
    assert all(f"cell-{label}" in page.ids for label in ("big_deepfake_ssat_s2", "small_expression_supervised_s0"))
    assert "cells-big-deepfake-lssat-ldp-1" in page.ids  # the group anchor the main table links to


def test_report_detail_tables_and_numbers(bench):
    deepfake = pd.read_csv(bench / "tables/deepfake_deepfake.csv").set_index(["backbone", "recipe"])
    assert deepfake.loc[("big", "lssat-ldp"), "auc/Deepfakes"] == pytest.approx(0.85 + 0.02 + 0.05)
    assert deepfake.loc[("small", "supervised"), "eer"] == pytest.approx(0.30)
    assert {"ap", "auc/NeuralTextures"} <= set(deepfake.columns)
    attributes = pd.read_csv(bench / "tables/attributes_attributes.csv")
    assert {"acc/Smiling", "acc/Eyeglasses"} <= set(attributes.columns)
    confusion = pd.read_csv(bench / "tables/confusion_expression-small.csv", index_col=0)
    assert confusion.to_numpy().tolist() == [[3, 0], [0, 3]] and list(confusion.columns) == ["Happy", "Sad"]
    md = (bench / "report.md").read_text()
    assert "recall per class" in md and "Per-method AUC" in md
    cost = md.split("## Cost")[1].split("##")[0]
    small = next(line for line in cost.splitlines() if line.startswith("| small"))
    assert "| 0.00100 |" in small and "0.000 " not in small  # GFLOPs in significant digits, never 0.000


def test_empty_fairness_cells_say_why(tmp_path):
    def one_group(config, run_dir, resume):
        record = fake_train(config, run_dir, resume)
        record["metrics"]["test"] = {k: v for k, v in record["metrics"]["test"].items() if "/dark" not in k}
        for key in ("auc_gap", "acc_gap", "dp_diff", "eo_diff"):
            record["metrics"]["test"][f"fair/skin_tone/{key}"] = None
        return record

    run_benchmark(load_spec(spec_dict(seeds=(0,), tasks=("deepfake",), backbones=("small", "big"))), tmp_path,
                  train_fn=one_group, progress=False, write_report=False)
    md = write_report(tmp_path, pictures=False).read_text()
    fairness = md.split("### deepfake: subgroups by skin_tone")[1]
    assert "| AUC light |" in fairness and "AUC dark" not in fairness
    assert "–: the test split holds one skin_tone subgroup only (light), so gaps" in fairness


def test_significant_digits():
    from lssat.bench.html import fmt_sig

    assert [fmt_sig(v) for v in (0.000221504, 0.0123, 0.5, 12.345, 905.9, 6824.0, 0.0, math.nan, None)] == \
        ["0.000222", "0.0123", "0.500", "12.3", "906", "6,824", "0", "–", "–"]
    assert fmt_sig(-0.00004567, 2) == "-0.000046" and fmt_sig(3e-15) == "3.00e-15"
