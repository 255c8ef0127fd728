"""The benchmark runner and results store with a fake training function (no engine)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lssat.bench import adapter, launchers
from lssat.bench.runner import run_benchmark
from lssat.bench.spec import load_spec
from lssat.bench.store import ResultsStore
from lssat.cli import main
from lssat.errors import DataError, MissingDependencyError

SPEC = {
    "name": "tiny",
    "backbones": {"a": {"model": {"backbone": "a"}}, "b": {"model": {"backbone": "b"}}},
    "tasks": {"expression": {"kind": "expression", "config": {"data": {"synthetic": {"task": "expression"}}}}},
    "recipes": ["supervised", "ssat"],
    "seeds": [0, 1],
}  # 8 cells


class FakeEngine:
    """Counts calls; writes the record into the cell folder as the engine does; optional faults."""

    def __init__(self, fail=(), interrupt_at=None):
        self.calls: list[str] = []
        self.fail, self.interrupt_at = set(fail), interrupt_at

    def __call__(self, config, run_dir, resume):
        label = Path(run_dir).name.rsplit("-", 1)[0]
        self.calls.append(label)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        if label in self.fail:
            raise ValueError(f"cannot train {label}")
        record = {"status": "done", "config": config, "metrics": {"val": {"acc": 0.5}, "test": {"acc": 0.5}},
                  "cost": {"parameters": 10}}
        folder = Path(run_dir) / "run0"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / adapter.RECORD_FILE).write_text(json.dumps(record))
        return record


def _labels(bench_dir: Path) -> list[str]:
    return sorted(e["label"] for e in ResultsStore(bench_dir).entries() if e["status"] == "done")


def test_interrupted_run_resumes_only_missing_cells(tmp_path):
    spec = load_spec(SPEC)
    first = FakeEngine(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(spec, tmp_path, train_fn=first, progress=False, write_report=False)
    done_before = _labels(tmp_path)
    assert len(done_before) == 3  # the 4th cell was interrupted: not done, not stored
    assert len(ResultsStore(tmp_path).entries()) == 3
    second = FakeEngine()
    result = run_benchmark(spec, tmp_path, train_fn=second, progress=False, write_report=False)
    assert sorted(second.calls) == sorted(set(c.label for c in spec.cells()) - set(done_before))
    assert len(second.calls) == 5 and result.skipped == 3 and result.done == 8
    entries = ResultsStore(tmp_path).entries()
    assert len(entries) == 8 and len({e["cell_id"] for e in entries}) == 8  # none lost, none twice
    third = FakeEngine()
    run_benchmark(spec, tmp_path, train_fn=third, progress=False, write_report=False)
    assert third.calls == []  # everything done: nothing runs again


def test_failing_cell_is_recorded_and_grid_goes_on(tmp_path):
    spec = load_spec(SPEC)
    engine = FakeEngine(fail={"a_expression_ssat_s1"})
    result = run_benchmark(spec, tmp_path, train_fn=engine, progress=False, write_report=False)
    assert len(engine.calls) == 8 and result.failed == ["a_expression_ssat_s1"] and result.done == 7
    store = ResultsStore(tmp_path).load()
    failed = [e for e in store.values() if e["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == "ValueError: cannot train a_expression_ssat_s1"
    assert "Traceback" in (tmp_path / failed[0]["run_dir"] / "error.txt").read_text()
    assert failed[0]["env"]["packages"]["lssat"]
    retry = FakeEngine()
    run_benchmark(spec, tmp_path, train_fn=retry, progress=False, write_report=False)
    assert retry.calls == ["a_expression_ssat_s1"]  # only the failed cell runs again
    entry = ResultsStore(tmp_path).load()[failed[0]["cell_id"]]
    assert entry["status"] == "done" and entry["attempts"] == 2


def test_records_left_in_run_folders_are_collected(tmp_path):
    spec = load_spec(SPEC)
    cell = spec.cells()[0]
    run_dir = launchers.prepare_run_dir(tmp_path, cell)
    FakeEngine()(cell.config, run_dir, False)  # finished, but killed before the store heard of it
    engine = FakeEngine()
    result = run_benchmark(spec, tmp_path, train_fn=engine, progress=False, write_report=False)
    assert result.collected == 1 and cell.label not in engine.calls and len(engine.calls) == 7


def test_broken_checkpoint_falls_back_to_a_fresh_start(tmp_path):
    spec = load_spec(SPEC)
    cell = spec.cells()[0]
    run_dir = launchers.prepare_run_dir(tmp_path, cell)
    (run_dir / "r1" / "checkpoints").mkdir(parents=True)
    (run_dir / "r1" / "checkpoints" / "last.ckpt").write_bytes(b"half a checkpoint")
    seen = []

    def engine(config, folder, resume):
        seen.append(resume)
        if resume:
            raise RuntimeError("cannot load checkpoint")
        return FakeEngine()(config, folder, resume)

    record, error = launchers.train_one(cell, run_dir, engine)
    assert seen == [True, False] and error is None and record["status"] == "done"
    assert (run_dir / "r1" / "checkpoints.discarded-1" / "last.ckpt").is_file()


def test_store_rejects_corruption_and_replaces_entries(tmp_path):
    store = ResultsStore(tmp_path)
    store.put({"cell_id": "x", "status": "failed", "error": "boom"})
    store.put({"cell_id": "x", "status": "done"})
    assert [(e["cell_id"], e["status"], e["attempts"]) for e in store.entries()] == [("x", "done", 2)]
    with open(store.path, "a") as handle:
        handle.write('{"cell_id": "y", "stat')
    with pytest.raises(DataError, match="results.jsonl:2"):
        store.load()
    with pytest.raises(DataError, match="status"):
        store.put({"cell_id": "z", "status": "running"})


def test_slurm_without_submitit_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lssat\[slurm\]'"):
        run_benchmark(load_spec(SPEC), tmp_path, launcher="slurm", progress=False, write_report=False)


def test_slurm_launcher_with_submitit_debug_executor(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    engine = FakeEngine(fail={"b_expression_supervised_s0"})
    monkeypatch.setattr(adapter, "train_cell", lambda config, run_dir, resume=False, **kw: engine(config, run_dir, resume))
    result = run_benchmark(load_spec(SPEC), tmp_path, launcher="slurm", slurm_options={"cluster": "debug"},
                           progress=False, write_report=False)
    assert result.done == 7 and result.failed == ["b_expression_supervised_s0"]
    assert all((tmp_path / e["run_dir"] / "slurm_job.txt").is_file() for e in ResultsStore(tmp_path).entries())


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", "no-such-spec", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such preset" in err[0]
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    assert "no results store" in capsys.readouterr().err
    assert main(["bench", "quick", "trainer.epochs", "-o", str(tmp_path), "--dry-run"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_cli_dry_run_lists_cells(tmp_path, capsys):
    assert main(["bench", "quick", "-o", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 25 and lines[-1] == "24 cells, 0 done"
    assert all(line.startswith("pending ") for line in lines[:-1])
