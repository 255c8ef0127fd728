"""benchmarks/calibrate.py: the grid it builds from the default spec, and a --quick run through the engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lssat.bench.spec import load_spec

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate.py"


def _calibrate():
    spec = importlib.util.spec_from_file_location("calibrate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_grid_follows_the_default_spec():
    cal = _calibrate()
    source = load_spec("default")
    spec, where, budgets = cal.build_spec(cal.parse_args([]))
    steps = int(source.base["trainer"]["max_steps"])
    assert budgets == sorted({steps // 4, steps})
    assert list(spec.backbones) == list(source.backbones) and list(spec.recipes) == ["supervised"]
    assert spec.seeds == [0]
    cells = spec.cells()
    assert len(cells) == len(source.backbones) * len(source.tasks) * 3 * len(budgets)
    seen = set()
    for cell in cells:
        task, difficulty, steps = where[cell.task]
        syn = cell.config["data"]["synthetic"]
        assert syn["options"]["difficulty"] == difficulty and cell.config["trainer"]["max_steps"] == steps
        for split in ("train", "val", "test"):  # the spec's sizes, untouched
            assert syn[split] == source.tasks[task]["config"]["data"]["synthetic"][split]
        assert cell.config["trainer"]["accelerator"] == "cpu"
        seen.add((task, cell.backbone, difficulty, steps))
    assert len(seen) == len(cells)
    chosen, _, _ = cal.build_spec(cal.parse_args(["--backbones", list(source.backbones)[-1], "--steps", "2",
                                                  "--difficulties", "hard"]))
    assert list(chosen.backbones) == [list(source.backbones)[-1]] and len(chosen.cells()) == len(source.tasks)


def test_quick_run_prints_the_table(tmp_path, capsys):
    cal = _calibrate()
    out = tmp_path / "table.md"
    argv = ["--quick", "--jobs", "1", "--sizes", "32/16/32", "-o", str(tmp_path / "runs"), "--out", str(out)]
    assert cal.main(argv) == 0
    text = capsys.readouterr().out
    assert out.read_text() == text
    assert "Chance / majority baselines:" in text and "1/8" in text and "AUC 0.5" in text
    assert "Command: `python benchmarks/calibrate.py --quick" in text and "usable cores" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| task | metric | backbone | steps | easy | default | hard |"
    source = load_spec("default")
    backbone = next(iter(source.backbones))
    body = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert [(r[0], r[2], r[3]) for r in body] == [(t, backbone, "2") for t in source.tasks]
    for r in body:
        assert len(r) == 7 and "failed" not in r and "n/a" not in " ".join(r)
        for value in r[4:]:
            float(value.split(" (")[0])
    attributes = next(r for r in body if source.tasks[r[0]]["kind"] == "attributes")
    assert all(v.endswith(")") and "(" in v for v in attributes[4:])  # mean acc (balanced acc)
