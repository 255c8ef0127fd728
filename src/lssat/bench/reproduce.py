"""Does a benchmark's answer survive other seeds? Compare the verdicts of two benchmark folders.

`reproduce(first, second)` takes the first run's significant findings (recipe verdicts "helps" /
"hurts", and backbone rank verdicts whose Friedman test was significant) and checks each against
the second run, which is the same grid trained with other seeds (``lssat bench --seeds 3,4,5 -o
OTHER``). A finding is:

- *reproduced* when the second run gives the same significant answer (the same recipe direction;
  the same best backbone, or the first run's best tied with the second run's best within its
  Nemenyi critical difference);
- *not significant again* when the second run cannot resolve it (its answer is "not resolved"),
  which is a weaker replication, not a contradiction;
- *contradicted* when the second run is significant the other way (or names another best backbone
  that is significantly ahead of the first one's).

Findings the first run left unresolved are not checked: the check is "wherever the first run
called a difference significant". `lssat report FIRST --reproduce SECOND` writes the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lssat.bench.results import load_results
from lssat.bench.verdicts import verdicts

REPRODUCED, WEAKER, CONTRADICTED, MISSING = "reproduced", "not significant again", "contradicted", "missing"


def _recipe_rows(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    other = {(r["recipe"], r["task"], r["fraction"]): r for r in second["recipes"]}
    rows = []
    for r in first["recipes"]:
        if r["answer"] not in ("helps", "hurts"):
            continue
        twin = other.get((r["recipe"], r["task"], r["fraction"]))
        if twin is None:
            outcome, again = MISSING, "-"
        else:
            again = twin["answer"]
            outcome = REPRODUCED if again == r["answer"] else \
                CONTRADICTED if again in ("helps", "hurts") else WEAKER
        rows.append({"finding": f"{r['recipe']} vs supervised on {r['task']} (fraction {r['fraction']:g})",
                     "first": f"{r['answer']} ({r['estimate']:+.3f})", "second": again if twin is None
                     else f"{again} ({twin['estimate']:+.3f})", "outcome": outcome})
    return rows


def _rank_rows(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    q1b = {x["task"]: x for x in second["questions"]["q1"]}
    entries = list(first["questions"]["q1"])
    q3 = first["questions"]["q3"]
    if q3.get("backbone") and q3["answer"] in ("yes", "no"):
        entries.append({"task": "all tasks", "answer": "best", "best": q3["backbone"], "tied": q3.get("tied", [])})
        other = second["questions"]["q3"]
        q1b["all tasks"] = {"answer": "best" if other["answer"] in ("yes", "no") else other["answer"],
                            "best": other.get("backbone"), "tied": other.get("tied", [])}
    rows = []
    for a in entries:
        if not str(a.get("answer", "")).startswith("best"):
            continue
        b = q1b.get(a["task"])
        if b is None:
            outcome, again = MISSING, "-"
        elif not str(b.get("answer", "")).startswith("best"):
            outcome, again = WEAKER, b.get("answer", "not resolved")
        else:
            same = b["best"] == a["best"] or a["best"] in (b.get("tied") or []) or b["best"] in (a.get("tied") or [])
            outcome, again = (REPRODUCED if same else CONTRADICTED), f"best: {b['best']}"
        rows.append({"finding": f"best backbone on {a['task']}", "first": f"best: {a['best']}",
                     "second": again, "outcome": outcome})
    return rows


def reproduce(first: Path | str, second: Path | str, alpha: float = 0.05) -> pd.DataFrame:
    """One row per significant finding of `first`: finding, first, second, outcome (see module doc)."""
    a = verdicts(load_results(first), alpha)
    b = verdicts(load_results(second), alpha)
    rows = _recipe_rows(a, b) + _rank_rows(a, b)
    return pd.DataFrame(rows, columns=["finding", "first", "second", "outcome"])


def summary(table: pd.DataFrame) -> str:
    """One line: how many of the first run's significant findings the second run reproduced."""
    if not len(table):
        return "the first run called no difference significant: nothing to reproduce"
    counts = table.outcome.value_counts()
    parts = [f"{counts.get(k, 0)} {k}" for k in (REPRODUCED, WEAKER, CONTRADICTED, MISSING) if counts.get(k, 0)]
    return f"{len(table)} significant finding(s) of the first run: " + ", ".join(parts)


def write_reproduction(first: Path | str, second: Path | str, alpha: float = 0.05) -> Path:
    """Write FIRST/reproduce.md (the table and its summary line); returns its path."""
    table = reproduce(first, second, alpha)
    lines = [f"# Reproduction of {Path(first).name} by {Path(second).name}", "",
             f"Second run: `{Path(second).resolve()}`. {summary(table)}.", ""]
    if len(table):
        lines += ["| finding | first run | second run | outcome |", "|---|---|---|---|"]
        lines += [f"| {r.finding} | {r.first} | {r.second} | {r.outcome} |" for r in table.itertuples()]
    path = Path(first) / "reproduce.md"
    path.write_text("\n".join(lines) + "\n")
    return path
