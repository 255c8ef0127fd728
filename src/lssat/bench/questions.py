"""The benchmark's three research questions, answered from the data with their evidence.

1. Role of the backbone: per task, the spread between the best and the worst backbone and whether
   it is significant over seeds (Welch's t-test and Mann-Whitney U between best and worst;
   one-way ANOVA and Kruskal-Wallis across all backbones).
2. Per task, the best backbone, its margin over the runner-up and whether that margin is
   significant.
3. Across tasks: average ranks of the backbones (blocks = tasks) and a Friedman test, with a verdict
   in words on whether one backbone serves all tasks.

Each backbone stands with the recipe chosen for it (`tables.choose_recipes`); its samples are the
seeds. Significance is at `alpha` (default 0.05), uncorrected for the number of tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lssat.bench.html import Block, Bullets, Heading, Table, Text
from lssat.bench.results import Results
from lssat.bench.stats import across_groups, average_ranks, compare_two, fmt_p, friedman, mean_std
from lssat.bench.tables import main_slice, seed_values


@dataclass
class TaskEvidence:
    """One task's backbone comparison."""

    task: str
    metric: str
    values: dict[str, list[float]]  # backbone -> seed values
    means: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.means = {b: mean_std(v)[0] for b, v in self.values.items()}
        self.means = {b: m for b, m in self.means.items() if not math.isnan(m)}

    @property
    def ranking(self) -> list[str]:
        """Backbones from best to worst mean."""
        return sorted(self.means, key=self.means.get, reverse=True)


def gather(results: Results, chosen: dict[tuple[str, str], str]) -> list[TaskEvidence]:
    """Seed values of each backbone (with its chosen recipe) per task, on the primary metric."""
    frame = main_slice(results)
    out = []
    for task in results.tasks:
        metric = results.primary[task]
        values = {b: seed_values(frame, f"test/{metric}", task=task, backbone=b, recipe=chosen[(b, task)])
                  for b in results.backbones if (b, task) in chosen}
        out.append(TaskEvidence(task, metric, values))
    return out


def _verdict(test: dict[str, Any], alpha: float) -> str:
    if not test.get("ran"):
        return f"cannot be tested: {test['reason']}"
    p = test["welch_p"]
    word = "significant" if p < alpha else "not significant"
    return f"{word} at α = {alpha:g} (Welch {fmt_p(p)}; Mann-Whitney {fmt_p(test['mwu_p'])})"


def question_one(evidence: list[TaskEvidence], alpha: float) -> tuple[list[Block], pd.DataFrame]:
    """Q1: how much does the backbone matter, task by task."""
    items, rows = [], []
    for ev in evidence:
        ranking = ev.ranking
        if len(ranking) < 2:
            items.append(f"**{ev.task}**: fewer than 2 backbones with results; no comparison.")
            continue
        best, worst = ranking[0], ranking[-1]
        spread = ev.means[best] - ev.means[worst]
        pair = compare_two(ev.values[best], ev.values[worst])
        overall = across_groups({b: ev.values[b] for b in ranking})
        text = (f"**{ev.task}** ({ev.metric}): spread {spread:.3f} between {best} ({ev.means[best]:.3f}) and "
                f"{worst} ({ev.means[worst]:.3f}); best vs worst {_verdict(pair, alpha)}")
        if overall.get("ran"):
            text += (f"; across all {len(ranking)} backbones ANOVA {fmt_p(overall['anova_p'])}, "
                     f"Kruskal-Wallis {fmt_p(overall['kruskal_p'])}")
        items.append(text + ".")
        rows.append({"task": ev.task, "metric": ev.metric, "best": best, "worst": worst, "spread": spread,
                     "welch_p": pair.get("welch_p", math.nan), "mwu_p": pair.get("mwu_p", math.nan),
                     "anova_p": overall.get("anova_p", math.nan), "kruskal_p": overall.get("kruskal_p", math.nan),
                     "tested": bool(pair.get("ran"))})
    blocks: list[Block] = [Heading("Q1. How much does the backbone matter?", 3), Bullets(items)]
    return blocks, pd.DataFrame(rows)


def question_two(evidence: list[TaskEvidence], alpha: float) -> tuple[list[Block], pd.DataFrame]:
    """Q2: the best backbone per task and how sure that is."""
    items, rows = [], []
    for ev in evidence:
        ranking = ev.ranking
        if not ranking:
            continue
        best = ranking[0]
        text = f"**{ev.task}**: best backbone **{best}** ({ev.metric} {ev.means[best]:.3f})"
        row = {"task": ev.task, "metric": ev.metric, "best": best, "mean": ev.means[best]}
        if len(ranking) > 1:
            runner = ranking[1]
            test = compare_two(ev.values[best], ev.values[runner])
            margin = ev.means[best] - ev.means[runner]
            text += (f", tied with {runner}" if margin == 0 else f", ahead of {runner} by {margin:.3f}; "
                     f"that margin is {_verdict(test, alpha)}")
            row.update(runner_up=runner, margin=ev.means[best] - ev.means[runner],
                       welch_p=test.get("welch_p", math.nan), tested=bool(test.get("ran")))
        items.append(text + ".")
        rows.append(row)
    return [Heading("Q2. Which backbone is best for each task?", 3), Bullets(items)], pd.DataFrame(rows)


def question_three(evidence: list[TaskEvidence], alpha: float) -> tuple[list[Block], dict[str, Any]]:
    """Q3: does one backbone serve all tasks? Average ranks, Friedman test, verdict."""
    blocks: list[Block] = [Heading("Q3. Does one backbone serve all tasks?", 3)]
    matrix = pd.DataFrame({ev.task: ev.means for ev in evidence}).T  # blocks (tasks) x backbones
    if matrix.empty:
        blocks.append(Text("No results to rank."))
        return blocks, {}
    ranks = average_ranks(matrix)
    test = friedman(matrix)
    display = ranks.map(lambda v: f"{v:.2f}" if not math.isnan(v) else "–")
    display.index.name = "task (block)"
    blocks.append(Table("ranks", "Rank of each backbone per task (1 = best; ties share the average rank) "
                        "and the average rank", display, ranks))
    if test["dropped_blocks"]:
        blocks.append(Text(f"{test['dropped_blocks']} task(s) left out of the ranks: not every backbone has "
                           "results there."))
    if test["ran"]:
        word = "differ significantly" if test["p"] < alpha else "do not differ significantly"
        text = (f"Friedman test over {test['n']} tasks and {test['k']} backbones: χ² = {test['statistic']:.2f}, "
                f"{fmt_p(test['p'])}: the backbones' ranks {word} at α = {alpha:g}.")
        if "caveat" in test:
            text += f" Caveat: {test['caveat']}."
    else:
        text = f"The Friedman test could not be run: {test['reason']}."
    blocks.append(Text(text))
    verdict = _serves_all(evidence, ranks, alpha)
    blocks.append(Text(f"**Verdict:** {verdict['text']}"))
    return blocks, {"friedman": test, "verdict": verdict, "average_ranks": ranks.loc["average"].to_dict()}


def _serves_all(evidence: list[TaskEvidence], ranks: pd.DataFrame, alpha: float) -> dict[str, Any]:
    """Whether the backbone with the best average rank is best, or within noise of the best, everywhere."""
    average = ranks.loc["average"].dropna()
    if average.empty:
        return {"answer": "unknown", "text": "no task has results for every backbone."}
    top = str(average.idxmin())
    best_on = [ev.task for ev in evidence if ev.ranking and ev.ranking[0] == top]
    behind, tied, untested = [], [], []
    for ev in evidence:
        if not ev.ranking or ev.ranking[0] == top or top not in ev.means:
            continue
        test = compare_two(ev.values[ev.ranking[0]], ev.values[top])
        if not test.get("ran"):
            untested.append(ev.task)
        elif test["welch_p"] < alpha:
            behind.append(f"{ev.task} (behind {ev.ranking[0]} by {ev.means[ev.ranking[0]] - ev.means[top]:.3f}, "
                          f"{fmt_p(test['welch_p'])})")
        else:
            tied.append(ev.task)
    winners = {ev.task: ev.ranking[0] for ev in evidence if ev.ranking}
    leads = []  # tasks where top is first and its lead over the runner-up is significant
    for ev in evidence:
        if ev.ranking and ev.ranking[0] == top and len(ev.ranking) > 1:
            test = compare_two(ev.values[top], ev.values[ev.ranking[1]])
            if test.get("ran") and test["welch_p"] < alpha:
                leads.append(ev.task)
    if len(best_on) == len(winners) and len(leads) == len(winners):
        answer, text = "yes", (f"{top} is the best backbone on every task ({', '.join(best_on)}), significantly "
                               "ahead of the runner-up on each: here one backbone does serve all tasks.")
    elif len(best_on) == len(winners):
        answer = "yes, but not shown"
        text = (f"{top} ranks first on every task ({', '.join(best_on)}), but its lead over the runner-up is "
                f"significant on {len(leads)} of {len(winners)} tasks{(' (' + ', '.join(leads) + ')') if leads else ''}: "
                "consistent with one backbone serving all tasks, not evidence for it.")
    elif behind:
        answer = "no"
        text = (f"No single backbone serves all tasks. The best on average, {top} (average rank "
                f"{average[top]:.2f}), is significantly behind on {'; '.join(behind)}. Best per task: "
                + ", ".join(f"{t}: {b}" for t, b in winners.items()) + ".")
    elif untested:
        answer = "cannot tell"
        text = (f"The best backbone differs between tasks ({', '.join(f'{t}: {b}' for t, b in winners.items())}), "
                f"but whether {top} (best average rank {average[top]:.2f}) is really worse on "
                f"{', '.join(untested)} cannot be tested with these seeds.")
    else:
        answer = "yes, within noise"
        text = (f"The best backbone differs between tasks ({', '.join(f'{t}: {b}' for t, b in winners.items())}); "
                f"{top} has the best average rank ({average[top]:.2f}) and is not significantly behind the best "
                f"on {', '.join(tied)}: one backbone could serve all tasks here, as far as these seeds can tell.")
    return {"answer": answer, "backbone": top, "text": text}
