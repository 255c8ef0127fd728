"""Verdicts in words: what the numbers support, for the three questions and the texture auxiliaries.

`verdicts(results, alpha)` returns data plus sentences (so tests can check them on fabricated
results); `verdict_blocks` and `statistics_blocks` render them for the report. A claim is called
"significant" only when its Holm-adjusted p (family: `evidence.holm_family`) is below alpha;
otherwise it is "not resolved", with the 95% CI. Thin evidence (few pairs, one seed, small test
sets) is said next to the claim.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from lssat.bench import evidence as ev
from lssat.bench import inference as inf
from lssat.bench.html import Block, Bullets, Heading, Image, Table, Text
from lssat.bench.results import Results
from lssat.bench.stats import fmt_p
from lssat.bench.tables import BASELINE, cell_anchor

SMALL_TEST = 200  # fewer test units than this: "tiny data"


def _frac(results: Results, fraction: float) -> str:
    return f" at training fraction {fraction:g}" if results.frame.fraction.nunique() > 1 else ""


def _test_words(row: dict[str, Any]) -> str:
    if row["test"] == "paired t":
        return f"paired t over {row['pairs']} (backbone, seed) pairs, df = {row['pairs'] - 1}"
    unit = "videos" if row["metric"] == "video_auc" else "test samples"
    return (f"paired bootstrap over {row['boot_units']} {unit}, {row['boot_pairs']} pair(s), "
            f"{inf.BOOTSTRAP_RESAMPLES} resamples")


def _thin(row: dict[str, Any], seeds: int) -> list[str]:
    notes = []
    if row["pairs"] < ev.MIN_T_PAIRS:
        notes.append(f"only {row['pairs']} seed-level pair(s)" + ("; the bootstrap measures test-sample noise "
                     "only, not seed-to-seed variation" if row["test"] == "paired bootstrap" else ""))
    if seeds == 1:
        notes.append("one seed per cell")
    if row.get("boot_ran") and 0 < row.get("boot_units", 0) < SMALL_TEST:
        notes.append(f"tiny test set ({row['boot_units']} units)")
    return notes


def recipe_verdicts(results: Results, evidence: ev.Evidence) -> list[dict[str, Any]]:
    """One verdict per (recipe, task, fraction) against supervised: answer 'helps', 'hurts',
    'not resolved' or 'untested', and a sentence."""
    out = []
    alpha = evidence.alpha
    seeds = int(results.frame.seed.nunique()) if len(results.frame) else 0
    for row in evidence.gains.to_dict("records") if len(evidence.gains) else []:
        head = f"**{row['recipe']}** vs {BASELINE} on **{row['task']}**{_frac(results, row['fraction'])}"
        ci = ev.fmt_ci(row["ci_low"], row["ci_high"])
        if row["test"] == "none":
            answer = "untested"
            text = (f"{head}: mean difference {row['mean']:+.3f} {row['metric']} over {row['pairs']} pair(s); "
                    f"cannot be tested ({row['t_reason'] or 'no test ran'}; no per-sample scores for a bootstrap).")
        else:
            holm_p = row.get("p_holm", math.nan)
            numbers = (f"{row['estimate']:+.3f} {row['metric']} (95% CI {ci}, {_test_words(row)}; raw {fmt_p(row['p'])}, "
                       f"Holm-adjusted {fmt_p(holm_p)})")
            if holm_p < alpha:
                answer = "helps" if row["estimate"] > 0 else "hurts"
                text = f"{head}: {row['recipe']} **{answer}**: {numbers}; significant at α = {alpha:g}."
            else:
                answer = "not resolved"
                includes = row["ci_low"] <= 0 <= row["ci_high"]
                why = f"95% CI {ci} includes 0" if includes else \
                    f"95% CI {ci} excludes 0 but the Holm-adjusted p is not below {alpha:g}"
                text = f"{head}: {numbers}; **not resolved** ({why})."
        thin = _thin(row, seeds)
        if thin:
            text += " Evidence is thin: " + "; ".join(thin) + "."
        out.append({**row, "answer": answer, "text": text})
    return out


def _rank_sentence(key: str, entry: dict[str, Any], alpha: float) -> tuple[str, str, list[str]]:
    """(answer, sentence, backbones tied with the best) for one rank comparison."""
    average, test = entry["average"], entry["friedman"]
    if not average:
        return "untested", f"**{key}**: no block where every backbone has a result.", []
    best = min(average, key=average.get)
    ranks = ", ".join(f"{b} {r:.2f}" for b, r in sorted(average.items(), key=lambda x: x[1]))
    cd = entry["cd"]
    tied = [b for b in average if b != best and average[b] - average[best] <= cd]
    behind = [b for b in average if b != best and b not in tied]
    base = f"**{key}**: average ranks over {entry['n']} blocks ({entry['blocks']}): {ranks}"
    if not test.get("ran"):
        return "untested", f"{base}; the Friedman test could not be run ({test['reason']}): not resolved.", tied
    holm_p = test.get("p_holm", math.nan)
    stat = f"Friedman {fmt_p(test['p'])}, Holm-adjusted {fmt_p(holm_p)}"
    if holm_p >= alpha:
        return "not resolved", (f"{base}; {stat}: the backbones' ranks do not differ significantly, so which "
                                f"backbone is best is **not resolved**."), tied
    text = f"{base}; {stat}: significant. **{best}** ranks best"
    if behind:
        text += f", significantly ahead of {', '.join(behind)} (Nemenyi CD = {cd:.2f})"
    if tied:
        text += f"; not separable from {', '.join(tied)} (within CD = {cd:.2f})"
    return ("best" if not tied else "best, tied"), text + ".", tied


def question_verdicts(results: Results, evidence: ev.Evidence, q3_info: dict[str, Any]) -> dict[str, Any]:
    """Verdicts on Q1 (which backbone per task), Q2 (does depth/size matter), Q3 (one backbone for all)."""
    alpha = evidence.alpha
    q1, q2 = [], []
    size = {}
    if "cost/parameters" in results.frame:
        size = results.frame.groupby("backbone")["cost/parameters"].mean().dropna().to_dict()
    for task in results.tasks:
        entry = evidence.backbones.get(task)
        if entry is None:
            q1.append({"task": task, "answer": "untested", "text": f"**{task}**: fewer than 2 backbones."})
            continue
        answer, text, tied = _rank_sentence(task, entry, alpha)
        best = min(entry["average"], key=entry["average"].get) if entry["average"] else None
        q1.append({"task": task, "answer": answer, "best": best, "tied": tied, "text": text})
        order = [b for b in sorted(size, key=size.get) if b in entry["average"]]
        if len(order) < 2 or answer == "untested":
            q2.append({"task": task, "answer": "untested", "text": f"**{task}**: size cannot be related to the "
                       "results (missing parameter counts or ranks)."})
            continue
        ranks = [entry["average"][b] for b in order]
        from scipy.stats import spearmanr

        rho = float(spearmanr(range(len(order)), ranks).statistic) if len(set(ranks)) > 1 else 0.0
        trend = "larger is better" if rho <= -0.8 else "smaller is better" if rho >= 0.8 else "no monotone size trend"
        if answer == "not resolved":
            q2.append({"task": task, "answer": "not resolved", "rho": -rho, "text": (
                f"**{task}**: the backbones do not differ significantly here, so no effect of depth/size can be "
                f"claimed (descriptively: {trend}, Spearman ρ between size and average-rank quality = {-rho:+.2f}).")})
        else:
            q2.append({"task": task, "answer": trend, "rho": -rho, "text": (
                f"**{task}**: the backbone matters (see Q1); ordered by parameters ({' < '.join(order)}), the "
                f"average ranks are {', '.join(f'{r:.2f}' for r in ranks)}: {trend} (Spearman ρ between size and "
                f"quality = {-rho:+.2f}, descriptive: with {len(order)} backbones no size trend can be tested).")})
    q3 = {"answer": "untested", "text": "Fewer than 2 tasks with every backbone: not resolved."}
    overall = evidence.backbones.get(ev.ALL)
    if overall is not None:
        answer, text, tied = _rank_sentence(ev.ALL, overall, alpha)
        top = min(overall["average"], key=overall["average"].get) if overall["average"] else None
        behind_on = [v["task"] for v in q1 if v.get("best") not in (None, top) and v["answer"].startswith("best")
                     and top not in v.get("tied", [])]
        if answer.startswith("best") and not behind_on:
            verdict = (f"yes: {top} has the best average rank over all tasks and no task has a backbone "
                       "significantly ahead of it")
            answer = "yes"
        elif behind_on:
            verdict = f"no: {top} is best on average but significantly behind on {', '.join(behind_on)}"
            answer = "no"
        else:
            verdict = "not resolved"
            answer = "not resolved"
        q3 = {"answer": answer, "backbone": top, "tied": tied,
              "text": f"{text} One backbone for all tasks: **{verdict}**."}
    return {"q1": q1, "q2": q2, "q3": q3}


def learned_summary(evidence: ev.Evidence) -> dict[str, Any]:
    """Share of cells that learned and the list of those that did not."""
    frame = evidence.learned
    judged = frame[frame.learned.notna()] if len(frame) else frame
    failed = judged[judged.learned == False] if len(judged) else judged  # noqa: E712
    share = float(judged.learned.astype(bool).mean()) if len(judged) else math.nan
    sources = sorted(set(judged.source)) if len(judged) else []
    return {"share": share, "judged": int(len(judged)), "cells": int(len(frame)),
            "not_learned": failed.cell.tolist() if len(failed) else [], "sources": sources}


def verdicts(results: Results, alpha: float = 0.05, extra: list[tuple[str, float]] = (),
             q3_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """All verdicts: {"evidence", "recipes", "questions", "learned"} (data and sentences)."""
    evidence = ev.gather(results, alpha, list(extra))
    return {"evidence": evidence, "recipes": recipe_verdicts(results, evidence),
            "questions": question_verdicts(results, evidence, q3_info or {}), "learned": learned_summary(evidence)}


FAMILY_WORDS = ("Holm-Bonferroni over one family: every recipe-vs-supervised test below, the backbone Friedman "
                "tests (per task and over all tasks) and the research questions' Welch and Friedman tests "
                "(Q1–Q3 sections). The fairness tests and the per-cell 'learned' screens are not in the family.")


def verdict_blocks(results: Results, v: dict[str, Any]) -> list[Block]:
    """The 'Verdicts' section."""
    alpha = v["evidence"].alpha
    q = v["questions"]
    learned = v["learned"]
    blocks: list[Block] = [Heading("Verdicts"), Text(
        f"Sentences the numbers support. A claim is *significant* only when its Holm-adjusted p < α = {alpha:g} "
        f"({FAMILY_WORDS}) Otherwise it is *not resolved*, with its 95% confidence interval.")]
    blocks += [Heading("Which backbone for each task?", 3), Bullets([x["text"] for x in q["q1"]]),
               Heading("Does depth / size matter?", 3), Bullets([x["text"] for x in q["q2"]]),
               Heading("Does one backbone serve all tasks?", 3), Text(q["q3"]["text"]),
               Heading("Does the texture auxiliary help?", 3)]
    blocks.append(Bullets([x["text"] for x in v["recipes"]]) if v["recipes"] else
                  Text(f"No recipe shares cells with {BASELINE}: nothing to compare."))
    if learned["judged"]:
        text = (f"{learned['judged'] - len(learned['not_learned'])} of {learned['judged']} cells "
                f"({learned['share']:.0%}) learned (beat the best constant prediction on the test split, see "
                "'Did each cell learn?' below).")
        if learned["not_learned"]:
            text += " Not above chance: " + ", ".join(learned["not_learned"]) + "."
        blocks.append(Text(text))
    return blocks


def _num(value: float, sign: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _p(value: float) -> str:
    """A p-value for a table cell: '0.031', '< 0.001' or '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def statistics_blocks(results: Results, v: dict[str, Any], plot_dir: Path, rel: Path) -> list[Block]:
    """The 'Statistical evidence' section: gain table, bootstrap detail, CD diagrams, learned cells, Holm family."""
    from lssat.bench import plots

    e: ev.Evidence = v["evidence"]
    blocks: list[Block] = [Heading("Statistical evidence")]
    if len(e.gains):
        rows = {}
        for r in e.gains.to_dict("records"):
            rows[f"{r['recipe']} / {r['task']}" + (f" / {r['fraction']:g}" if results.frame.fraction.nunique() > 1 else "")] = {
                "metric": r["metric"], "pairs": r["pairs"], "mean Δ": _num(r["estimate"]), "test": r["test"],
                "95% CI": ev.fmt_ci(r["ci_low"], r["ci_high"]), "p": _p(r["p"]), "Holm p": _p(r.get("p_holm", math.nan)),
                "bootstrap Δ [95% CI]": "–" if not r["boot_ran"] else
                f"{r['boot_mean']:+.3f} {ev.fmt_ci(r['boot_ci_low'], r['boot_ci_high'])}"}
        disp = pd.DataFrame(rows).T
        disp.index.name = "recipe / task"
        blocks.append(Table("recipe_tests", f"Gain over {BASELINE}, paired: pairs are (backbone, seed) cells that "
                            "differ only in the recipe. 'paired t': mean difference, t-based 95% CI (df = n - 1) and "
                            "two-sided p; 'paired bootstrap' (used when fewer than 3 pairs): test samples (videos for "
                            f"a video AUC) resampled {inf.BOOTSTRAP_RESAMPLES} times, the same resample for both models",
                            disp, e.gains))
    if len(e.detail):
        d = e.detail.copy()
        disp = pd.DataFrame({"mean Δ": d["mean"].map(lambda x: f"{x:+.3f}"),
                             "95% CI": [ev.fmt_ci(a, b) for a, b in zip(d.ci_low, d.ci_high)],
                             "p": d.p.map(_p), "seeds": d.seeds, "units": d.units})
        disp.index = [f"{r.recipe} / {r.task} / {r.backbone}" for r in d.itertuples()]
        disp.index.name = "recipe / task / backbone"
        blocks.append(Table("recipe_bootstrap", "Per backbone: paired bootstrap of the recipe's gain over "
                            f"{BASELINE} on per-sample test scores (pooled over the backbone's seeds; raw p, not "
                            "Holm-adjusted; test-sample noise only)", disp, d))
    for key, entry in e.backbones.items():
        if not entry["average"]:
            continue
        name = "all" if key == ev.ALL else key
        title = f"{key}: average rank over {entry['n']} blocks ({entry['blocks']}); bars: within Nemenyi CD"
        if (p := plots.cd_diagram(entry["average"], entry["cd"], entry["cliques"], title,
                                  plot_dir / f"cd_{name}.png")) is not None:
            blocks.append(Image(rel / p.name, f"Critical-difference diagram, {key}: backbones by average rank "
                                f"(1 = best); backbones joined by a bar do not differ significantly (Nemenyi, "
                                f"α = {e.alpha:g}, CD = {entry['cd']:.2f})"))
    blocks.append(Heading("Did each cell learn?", 3))
    crit = "; ".join(f"{k}: {t}" for k, t in inf.LEARNED_CRITERIA.items())
    blocks.append(Text(f"A cell *learned* when it beats the best constant prediction on the test split, one-sided "
                       f"at α = 0.05 (per cell, not Holm-adjusted). {crit}. Runs without per-sample scores: the "
                       f"headline metric must exceed the baseline (0.5 for AUC, the majority share for expression "
                       f"accuracy) by {inf.FALLBACK_MARGIN:g}; attribute cells without scores are not judged."))
    if len(e.learned):
        frame = e.learned
        disp = pd.DataFrame({"task": frame.task, "value": frame.value.map(lambda x: _num(x, False)),
                             "baseline": frame.baseline.map(lambda x: _num(x, False)), "p": frame.p.map(_p),
                             "learned": frame.learned.map({True: "yes", False: "**no**", None: "–"}),
                             "judged by": frame.source})
        disp.index = frame.cell
        disp.index.name = "cell"
        links = pd.DataFrame({"value": ["#" + cell_anchor(c) for c in frame.cell]}, index=disp.index)
        blocks.append(Table("learned", "Each cell against the best constant prediction on its test split (each "
                            "value links to the cell's row in the Cells table)", disp, frame, links=links))
    if len(e.family):
        fam = e.family.set_index("test")
        disp = fam.map(_p)
        disp.columns = ["raw p", "Holm-adjusted p"]
        blocks.append(Table("holm_family", f"The Holm family: every test the verdicts rest on ({len(fam)} tests)",
                            disp, e.family))
    return blocks
