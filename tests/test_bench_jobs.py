"""`lssat bench --jobs N`: the local launcher's worker pool (`lssat.bench.pool`), with a fake,
picklable training function (no engine); interruption tests run the runner in a child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lssat.bench import adapter, pool
from lssat.bench.runner import run_benchmark
from lssat.bench.spec import load_spec
from lssat.bench.store import ResultsStore
from lssat.cli import main

from test_bench_runner import SPEC  # 8 cells

BIG = {**SPEC, "seeds": [0, 1, 2]}  # 12 cells
TESTS = str(Path(__file__).resolve().parent)


def fake_train(config, run_dir, resume):
    """Module-level (picklable) fake engine: leaves a checkpoint, sleeps, writes a done record.

    LSSAT_FAKE_DELAY: seconds per cell; LSSAT_FAKE_CRASH: ``label=exit`` / ``label=kill`` pairs
    (comma-separated) whose worker dies; LSSAT_FAKE_LOG: a file that gets "start LABEL" per call.
    """
    run_dir = Path(run_dir)
    label = run_dir.name.rsplit("-", 1)[0]
    if os.environ.get("LSSAT_FAKE_LOG"):
        with open(os.environ["LSSAT_FAKE_LOG"], "a") as log:
            log.write(f"start {label} {int(resume)}\n")
    crash = dict(p.split("=") for p in os.environ.get("LSSAT_FAKE_CRASH", "").split(",") if p)
    if crash.get(label) == "exit":
        os._exit(3)
    if crash.get(label) == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    (run_dir / "run0" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "run0" / "checkpoints" / "last.ckpt").write_text("step 1")
    time.sleep(float(os.environ.get("LSSAT_FAKE_DELAY", "0")))
    model = config.get("model", {}).get("backbone", "?")
    acc = 0.5 + 0.1 * (model == "b") + 0.01 * config["trainer"]["seed"]
    record = {"status": "done", "metrics": {"val": {"acc": acc}, "test": {"acc": acc}},
              "cost": {"parameters": 10}, "pid": os.getpid(), "resumed": bool(resume),
              "omp_threads": os.environ.get("OMP_NUM_THREADS")}
    (run_dir / "run0" / adapter.RECORD_FILE).write_text(json.dumps(record))
    return record


def drive(bench_dir: str, jobs: int) -> int:
    """What `lssat bench` does, with `fake_train`: the child process of the interruption tests."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        run_benchmark(load_spec(BIG), bench_dir, train_fn=fake_train, jobs=jobs, progress=False,
                      write_report=False)
    except KeyboardInterrupt:
        return 130
    return 0


def _entries(bench: Path) -> dict[str, dict]:
    return {e["label"]: e for e in ResultsStore(bench).entries()} if (bench / "results.jsonl").exists() else {}


def _children(pid: int) -> set[int]:
    """Pids of the live processes whose parent is `pid` (from /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_jobs_2_gives_the_same_results_as_jobs_1(tmp_path):
    spec = load_spec(SPEC)
    one = run_benchmark(spec, tmp_path / "one", train_fn=fake_train, jobs=1, progress=False, write_report=False)
    two = run_benchmark(spec, tmp_path / "two", train_fn=fake_train, jobs=2, progress=False, write_report=False)
    assert one.done == two.done == 8 and not two.failed and two.ran == 8
    a, b = _entries(tmp_path / "one"), _entries(tmp_path / "two")
    assert set(a) == set(b) == {c.label for c in spec.cells()}
    for label in a:
        assert b[label]["status"] == "done" and b[label]["attempts"] == 1
        assert b[label]["cell_id"] == a[label]["cell_id"]
        assert b[label]["record"]["metrics"] == a[label]["record"]["metrics"]
    assert {e["record"]["pid"] for e in a.values()} == {os.getpid()}  # jobs 1: in this process
    workers = {e["record"]["pid"] for e in b.values()}
    assert os.getpid() not in workers and len(workers) <= 2  # persistent workers, many cells each
    assert {e["record"]["omp_threads"] for e in b.values()} == {"1"}
    lines = (tmp_path / "two" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8 and len({json.loads(line)["cell_id"] for line in lines}) == 8


def test_runner_threads_reach_the_workers_and_rerun_trains_nothing(tmp_path):
    spec = load_spec(SPEC)
    spec.runner["threads"] = 2
    run_benchmark(spec, tmp_path, train_fn=fake_train, jobs=2, progress=False, write_report=False)
    assert {e["record"]["omp_threads"] for e in _entries(tmp_path).values()} == {"2"}
    again = run_benchmark(spec, tmp_path, train_fn=fake_train, jobs=2, progress=False, write_report=False)
    assert again.ran == 0 and again.skipped == 8
    assert {e["attempts"] for e in _entries(tmp_path).values()} == {1}


def test_a_crashing_worker_fails_its_cell_and_the_grid_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("LSSAT_FAKE_CRASH", "a_expression_ssat_s1=exit,b_expression_supervised_s0=kill")
    result = run_benchmark(load_spec(SPEC), tmp_path, train_fn=fake_train, jobs=2, progress=False,
                           write_report=False)
    assert sorted(result.failed) == ["a_expression_ssat_s1", "b_expression_supervised_s0"] and result.done == 6
    entries = _entries(tmp_path)
    assert len(entries) == 8
    assert "exited with status 3" in entries["a_expression_ssat_s1"]["error"]
    assert "killed by SIGKILL" in entries["b_expression_supervised_s0"]["error"]
    assert "worker process" in (tmp_path / entries["a_expression_ssat_s1"]["run_dir"] / "error.txt").read_text()
    monkeypatch.delenv("LSSAT_FAKE_CRASH")
    retry = run_benchmark(load_spec(SPEC), tmp_path, train_fn=fake_train, jobs=2, progress=False,
                          write_report=False)
    assert retry.ran == 2 and retry.done == 8 and not retry.failed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_parallel_run_resumes_without_losing_or_repeating_cells(tmp_path, sig):
    bench, log = tmp_path / "bench", tmp_path / "calls.log"
    env = {**os.environ, "LSSAT_FAKE_DELAY": "0.4", "LSSAT_FAKE_LOG": str(log), "PYTHONUNBUFFERED": "1"}
    # Ctrl-C's default: a test suite started in the background (`cmd &`) ignores SIGINT, and a child
    # would inherit that
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.path.insert(0, sys.argv[1]); import test_bench_jobs as t; sys.exit(t.drive(sys.argv[2], 2))")
    proc = subprocess.Popen([sys.executable, "-c", code, TESTS, str(bench)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers: set[int] = set()
    while proc.poll() is None and not any(e["status"] == "done" for e in _entries(bench).values()):
        workers |= _children(proc.pid)
        time.sleep(0.02)
    workers |= _children(proc.pid)
    proc.send_signal(sig)
    output = proc.communicate()[0]
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), output[-2000:]
    assert workers, "the run started no worker processes"
    for _ in range(1200):  # the workers notice their parent is gone (bounded wait, not a time limit)
        if not any(_alive(pid) for pid in workers):
            break
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived its parent"
    before = {label for label, e in _entries(bench).items() if e["status"] == "done"}
    assert 1 <= len(before) < 12, output[-2000:]

    result = run_benchmark(load_spec(BIG), bench, train_fn=fake_train, jobs=2, progress=False,
                           write_report=False)
    entries = _entries(bench)
    assert result.done == 12 and not result.failed and len(entries) == 12
    assert all(e["status"] == "done" and e["attempts"] == 1 for e in entries.values())
    lines = (bench / "results.jsonl").read_text().splitlines()
    assert len({json.loads(line)["cell_id"] for line in lines}) == len(lines) == 12
    starts: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        _, label, resumed = line.split()
        starts.setdefault(label, []).append(resumed)
    for label in before:  # finished before the kill: not trained again
        assert len(starts[label]) == 1, label
    assert all(len(s) <= 2 for s in starts.values())  # an interrupted cell runs once more, no more
    for label, s in starts.items():
        if len(s) == 2:  # interrupted after its checkpoint: resumed from it
            assert s[1] == "1" and entries[label]["record"]["resumed"], label


def test_plan_jobs_falls_back_to_one_process_with_a_note():
    cells = load_spec(SPEC).cells()
    assert pool.plan_jobs(2, cells, pool.plan_jobs) == (2, None)
    assert pool.plan_jobs(8, cells[:3], fake_train) == (3, None)  # never more workers than cells
    assert pool.plan_jobs(4, cells[:1], fake_train) == (1, None)
    assert pool.plan_jobs(None, cells, fake_train)[0] == min(pool.usable_cores(), 8)
    for trainer in ({"accelerator": "gpu"}, {"devices": 2}, {"strategy": "ddp"}, {"devices": "4"}):
        spec = load_spec({**SPEC, "base": {"trainer": trainer}})
        n, note = pool.plan_jobs(2, spec.cells(), fake_train)
        assert n == 1 and note.startswith("lssat bench: cell ") and "\n" not in note
    n, note = pool.plan_jobs(2, cells, lambda config, run_dir, resume: {})
    assert n == 1 and "cannot go to worker processes" in note


def test_datasets_to_render_once_per_distinct_setting(tmp_path):
    cells = load_spec("quick").cells()  # 24 cells over 2 synthetic datasets
    todo = pool.datasets_to_render(cells, tmp_path)
    assert len(todo) == 2 and pool.datasets_to_render(cells, None) == {}
    first = Path(next(iter(todo)))
    first.mkdir(parents=True)
    (first / "index.jsonl").write_text("")
    assert list(pool.datasets_to_render(cells, tmp_path)) == [k for k in todo if k != str(first)]


def test_cli_jobs_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "quick", "-o", str(tmp_path), "--jobs", "0"])
    assert exit_.value.code == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["bench", "quick", "-o", str(tmp_path), "--jobs", "2", "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 25 and lines[-1] == "24 cells, 0 done"
    with pytest.raises(Exception, match="jobs"):
        pool.check_jobs(0)
    assert pool.check_jobs("auto") is None and pool.check_jobs(3) == 3
