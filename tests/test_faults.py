"""Faults: a killed training run resumed bit for bit, two benchmark processes on one folder, folder
locks, strict JSON and the user's umask on the files lssat writes.

The slow parts run once per module (fixtures `resumed` and `concurrent_bench`): a CPU training run
SIGKILLed after its first checkpoint (mid-epoch), resumed, stopped again at an epoch's end,
resumed again, and compared with an uninterrupted run; and `lssat bench` started while another
`lssat bench` runs in the same folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Checkpoint

from lssat.bench import adapter
from lssat.bench.store import ResultsStore
from lssat.cli import main
from lssat.config import load_config
from lssat.engine import record as rec
from lssat.fileio import FolderInUse, folder_lock, lock_holder

from test_data_memory import assert_same_batches, batches
from test_datamodule import expression_index, make_dm

# 32 training faces in batches of 8: 4 steps an epoch; a checkpoint every 3 steps (mid-epoch at
# 3, 6, 9; at an epoch's end at 12); augmentation, masking and the lssat-ldp recipe of the preset on
SMOKE = ["trainer.max_steps=14", "trainer.val_check_interval=3", "trainer.deterministic=true",
         "trainer.progress=false"]
EPOCH_END_STEP = 12
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}

TINY_BENCH = """
name: tiny
base:
  data: {image_size: 32, batch_size: 16, num_workers: 0}
  trainer: {max_steps: 2, warmup_steps: 1, accelerator: cpu, precision: "32", limit_val_batches: 1,
            limit_test_batches: 1, progress: false}
  recipe: {overrides: {decoder: {width: 16, depth: 1, num_heads: 2}}}
backbones:
  vit: {model: {backbone: vit_tiny_patch16_224, kwargs: {patch_size: 8, depth: 1, embed_dim: 16, num_heads: 2}}}
tasks:
  deepfake:
    kind: deepfake
    config:
      task: {kind: deepfake, headline: video_auc}
      data: {synthetic: {task: deepfake, train: 32, val: 16, test: 16, seed: 0}}
recipes: [supervised]
seeds: [0, 1]
runner: {threads: 1, jobs: 1, materialize_synthetic: false}
"""


def _no_constant(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_no_constant)


@pytest.fixture(scope="module")
def quiet_cpu():
    """One torch thread (2 shared cores) and the umask the mode checks expect; restored after."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    old_umask = os.umask(0o022)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    os.umask(old_umask)


class Crash(Exception):
    """Stands for a crash of the training process."""


class CrashAt(Checkpoint):
    """Raises right after the run's checkpoint at `step` (it runs after RunCheckpoints)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_end(self, trainer, module) -> None:
        if not trainer.sanity_checking and trainer.global_step == self.step:
            raise Crash(f"crashed at step {self.step}")


def _weights(run: Path, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoints" / f"{name}.safetensors"))


def _one_run(folder: Path) -> Path:
    runs = [p.parent for p in folder.glob("*/run_record.json")]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, quiet_cpu):
    """An uninterrupted run (a) and the same run (b): SIGKILLed after its first checkpoint,
    resumed and crashed right after the checkpoint at an epoch's end, resumed to the end."""
    import lssat.engine.run as engine

    base = tmp_path_factory.mktemp("resume")
    killed = subprocess.Popen([sys.executable, "-m", "lssat.cli", "train", "-c", "smoke", "-o", str(base / "b"),
                               *SMOKE], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def kill_after_first_checkpoint() -> None:
        while killed.poll() is None:
            if any((base / "b").glob("*/checkpoints/last.json")):
                killed.send_signal(signal.SIGKILL)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_after_first_checkpoint)
    watcher.start()
    assert main(["train", "-c", "smoke", "-o", str(base / "a"), *SMOKE]) == 0  # meanwhile, uninterrupted
    watcher.join()
    output = killed.communicate()[0]
    assert killed.returncode == -signal.SIGKILL, output[-3000:]
    run_b = _one_run(base / "b")
    after_kill = {"status": rec.read_record(run_b)["status"], "raw": json.loads((run_b / "run_record.json").read_text()),
                  "step": json.loads((run_b / "checkpoints" / "last.json").read_text())["step"]}

    build = engine.build_trainer
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "build_trainer", lambda cfg, folder, callbacks, **kw: build(
            cfg, folder, [*callbacks, CrashAt(EPOCH_END_STEP)], **kw))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):  # the crash: one line and status 1
            assert main(["train", "-c", "smoke", "-o", str(base / "b"), *SMOKE, "--resume"]) == 1
        assert "crashed at step" in err.getvalue()
    crashed_step = json.loads((run_b / "checkpoints" / "last.json").read_text())["step"]
    assert main(["train", "-c", "smoke", "-o", str(base / "b"), *SMOKE, "--resume"]) == 0
    return {"base": base, "a": _one_run(base / "a"), "b": run_b, "after_kill": after_kill,
            "crashed_step": crashed_step}


def test_killed_run_resumes_to_the_same_weights_bit_for_bit(resumed):
    killed = resumed["after_kill"]
    assert killed["raw"]["status"] == "running"  # the killed process could not say so itself...
    assert killed["status"] == "interrupted"     # ...but a reader finds no live holder
    assert killed["step"] % 4 != 0 and killed["step"] < EPOCH_END_STEP, killed["step"]  # a mid-epoch checkpoint
    assert resumed["crashed_step"] == EPOCH_END_STEP  # the second stop: a checkpoint at an epoch's end
    for name in ("best", "last"):
        a, b = _weights(resumed["a"], name), _weights(resumed["b"], name)
        assert set(a) == set(b)
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"
    record_a, record_b = rec.read_record(resumed["a"]), rec.read_record(resumed["b"])
    assert record_b["status"] == "done" and record_b["checkpoint"] == {**record_a["checkpoint"], "file":
                                                                        record_b["checkpoint"]["file"]}
    assert record_b["metrics"]["test"] == record_a["metrics"]["test"]
    attempts = record_b["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "failed"]
    assert attempts[0]["step"] == killed["step"] and attempts[0]["finished"] is None
    assert attempts[1]["step"] == EPOCH_END_STEP and "crashed at step" in attempts[1]["error"]
    assert attempts[1]["resumed_from"].endswith("last.ckpt") and record_b["resumed_from"].endswith("last.ckpt")
    assert record_a["attempts"] == []


@pytest.fixture(scope="module")
def concurrent_bench(tmp_path_factory, quiet_cpu):
    """`lssat bench` in a child process; while it runs, `lssat bench` on the same folder here, then
    again with --wait."""
    base = tmp_path_factory.mktemp("bench")
    spec, bench = base / "tiny.yaml", base / "bench"
    spec.write_text(TINY_BENCH)
    args = ["bench", str(spec), "-o", str(bench), "--no-report"]
    first = subprocess.Popen([sys.executable, "-m", "lssat.cli", *args], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    while first.poll() is None and lock_holder(bench) is None:
        time.sleep(0.01)
    out: dict = {"bench": bench, "first_pid": first.pid}
    for key, extra in (("second", []), ("waited", ["--wait"])):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            out[key] = (main([*args, *extra]), err.getvalue())
    out["first"] = (first.wait(timeout=300), first.communicate()[0])
    return out


def test_second_bench_on_a_folder_names_the_holder_or_waits_and_trains_nothing_twice(concurrent_bench):
    code, output = concurrent_bench["first"]
    assert code == 0, output[-3000:]
    code, err = concurrent_bench["second"]
    assert code == 2, err
    assert f"in use by pid {concurrent_bench['first_pid']}" in err and "--wait" in err and "lssat" in err
    code, err = concurrent_bench["waited"]
    assert code == 0, err
    assert "waiting for it" in err and "2/2 cells done (2 already done" in err and " 0 run now" in err
    entries = ResultsStore(concurrent_bench["bench"]).entries()
    assert len(entries) == 2
    for entry in entries:
        assert entry["status"] == "done" and entry["attempts"] == 1
        records = list((concurrent_bench["bench"] / entry["run_dir"]).glob("*/run_record.json"))
        assert len(records) == 1 and json.loads(records[0].read_text())["attempts"] == []


def test_every_json_file_is_strict_and_every_file_follows_the_umask(resumed, concurrent_bench):
    from safetensors import safe_open

    folders = [resumed["base"], concurrent_bench["bench"]]
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".jsonl", ".safetensors", ".ckpt", ".npz", ".yaml", ".csv"} <= kinds
    nulls = 0
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o644, f"{path}: mode {oct(path.stat().st_mode & 0o777)}"
        if path.suffix == ".json":
            strict(path.read_text())
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                strict(line)
                nulls += line.count("null")
        elif path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                strict(f.metadata()["lssat"])
    assert nulls > 0  # the tiny runs have undefined metrics: written as null, not NaN


# ---------------------------------------------------------------------------------- quick checks


def test_store_writes_nan_and_numpy_scalars_as_strict_json(tmp_path):
    store = ResultsStore(tmp_path)
    store.put({"cell_id": "c1", "status": "done",
               "record": {"metrics": {"test": {"auc": float("nan"), "acc": np.float32(0.5), "n": np.int64(3),
                                               "loss": float("inf")}}}})
    (line,) = (tmp_path / "results.jsonl").read_text().splitlines()
    test = strict(line)["record"]["metrics"]["test"]
    assert test == {"auc": None, "acc": 0.5, "n": 3, "loss": None}


def test_folder_lock_names_its_holder_and_dies_with_it(tmp_path):
    code = ("import sys, time; from lssat.fileio import folder_lock; "
            "lock = folder_lock(sys.argv[1], 'run folder'); lock.__enter__(); print('locked', flush=True); "
            "time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderInUse, match=rf"run folder {tmp_path} is in use by pid {holder.pid} on "):
            with folder_lock(tmp_path, "run folder"):
                pass
        assert f"pid {holder.pid}" in lock_holder(tmp_path) and "-c" in lock_holder(tmp_path)
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs, the kernel drops the lock
        holder.wait()
    assert lock_holder(tmp_path) is None
    with folder_lock(tmp_path, "run folder"):
        assert lock_holder(tmp_path).startswith(f"pid {os.getpid()} ")


def test_folder_lock_with_wait_waits_for_the_holder(tmp_path, capsys):
    held = threading.Event()

    def hold() -> None:
        with folder_lock(tmp_path, "benchmark folder"):
            held.set()
            time.sleep(0.6)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    start = time.perf_counter()
    with folder_lock(tmp_path, "benchmark folder", wait=True):
        waited = time.perf_counter() - start
    thread.join()
    assert waited > 0.3
    assert "is in use by pid" in capsys.readouterr().err


def test_running_record_without_a_live_holder_reads_as_interrupted(tmp_path):
    run = tmp_path / "cell" / "abc123"
    run.mkdir(parents=True)
    (run / "run_record.json").write_text(json.dumps({"status": "running", "started": "2026-01-01T00:00:00+00:00"}))
    assert rec.read_record(run)["status"] == "interrupted"
    assert adapter.read_record(tmp_path / "cell")["status"] == "interrupted"
    with folder_lock(run, "run folder"):  # a live process holds it: still running
        assert rec.read_record(run)["status"] == "running"
        assert adapter.read_record(tmp_path / "cell")["status"] == "running"
    attempts = rec.earlier_attempts(run)
    assert [a["status"] for a in attempts] == ["interrupted"] and attempts[0]["started"].startswith("2026")


def test_train_on_a_locked_run_folder_exits_2_naming_the_holder(tmp_path, capsys):
    run_id = load_config(["smoke"], [f"output_dir={tmp_path}"]).run_id
    with folder_lock(tmp_path / run_id, "run folder"):
        assert main(["train", "-c", "smoke", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lssat train: error: run folder ") and f"in use by pid {os.getpid()}" in err
    assert "--wait" in err and not (tmp_path / run_id / "run_record.json").exists()


@pytest.mark.parametrize("settings", [{"in_memory": True}, {"in_memory": False},
                                      {"in_memory": False, "num_workers": 2}], ids=["memory", "items", "workers"])
def test_resumed_sampler_gives_the_same_augmented_batches(tmp_path, settings):
    index = expression_index(tmp_path)
    full = make_dm(index, batch_size=4, **settings).train_dataloader()
    epochs = [batches(full) for _ in range(2)]  # 24 faces: 6 batches an epoch
    assert not torch.equal(epochs[0][0]["image"], epochs[1][0]["image"])
    mid = make_dm(index, batch_size=4, **settings)
    mid.load_state_dict({"train": {"epoch": 1, "batches": 2, "batch_size": 4, "world_size": 1, "epoch_done": False}})
    assert_same_batches(batches(mid.train_dataloader()), epochs[1][2:])
    end = make_dm(index, batch_size=4, **settings)
    end.load_state_dict({"train": {"epoch": 0, "batches": 6, "batch_size": 4, "world_size": 1, "epoch_done": True}})
    assert_same_batches(batches(end.train_dataloader()), epochs[1])


def test_bench_dry_run_shows_a_killed_cell_as_interrupted(tmp_path, capsys):
    from lssat.bench.launchers import run_dir_of
    from lssat.bench.spec import load_spec

    cell = load_spec("quick").cells()[0]
    run = run_dir_of(tmp_path, cell) / "abc123"
    run.mkdir(parents=True)
    (run / "run_record.json").write_text(json.dumps({"status": "running"}))
    assert main(["bench", "quick", "-o", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("interrupted ") and lines[0].endswith(str(run_dir_of(tmp_path, cell)))
    assert all(line.startswith("pending ") for line in lines[1:-1])
