"""The reproduction check: significant findings of one run checked against a run with other seeds."""

from __future__ import annotations

from lssat.bench.reproduce import CONTRADICTED, REPRODUCED, WEAKER, reproduce, summary, write_reproduction
from lssat.bench.runner import run_benchmark
from lssat.bench.spec import load_spec
from lssat.cli import main
from test_bench_stats import _fake, _spec


def _run(folder, gain, seeds):
    run_benchmark(load_spec(_spec(seeds=seeds)), folder, train_fn=_fake(gain), progress=False, write_report=False)
    return folder


def test_a_real_gain_is_reproduced_by_other_seeds(tmp_path):
    first = _run(tmp_path / "a", 0.03, (0, 1, 2))
    second = _run(tmp_path / "b", 0.03, (3, 4, 5))
    table = reproduce(first, second)
    recipe = table[table.finding.str.startswith("lssat-ldp")]
    assert list(recipe.outcome) == [REPRODUCED]
    assert "reproduced" in summary(table)


def test_a_gain_that_vanishes_or_flips_is_flagged(tmp_path):
    first = _run(tmp_path / "a", 0.03, (0, 1, 2))
    gone = _run(tmp_path / "b", 0.0, (3, 4, 5))
    flipped = _run(tmp_path / "c", -0.03, (3, 4, 5))
    assert list(reproduce(first, gone).query("finding.str.startswith('lssat')").outcome) == [WEAKER]
    assert list(reproduce(first, flipped).query("finding.str.startswith('lssat')").outcome) == [CONTRADICTED]


def test_nothing_significant_means_nothing_to_check(tmp_path):
    first = _run(tmp_path / "a", 0.0, (0, 1, 2))
    second = _run(tmp_path / "b", 0.03, (3, 4, 5))
    table = reproduce(first, second)
    assert not table.finding.str.startswith("lssat").any()


def test_report_command_writes_the_reproduction(tmp_path, capsys):
    first = _run(tmp_path / "a", 0.03, (0, 1, 2))
    second = _run(tmp_path / "b", 0.03, (3, 4, 5))
    assert main(["report", str(first), "--no-pictures", "--reproduce", str(second)]) == 0
    text = (first / "reproduce.md").read_text()
    assert "| lssat-ldp vs supervised on attributes (fraction 1) | helps" in text and "reproduced" in text
    assert "significant finding(s)" in capsys.readouterr().out
    assert main(["report", str(first), "--no-pictures", "--reproduce", str(tmp_path / "nowhere")]) == 2
    assert write_reproduction(first, second).is_file()
