"""Bad configs, checkpoints, weights and output paths given to the command line: each ends as one
line naming the input (config key or file) and exit status 2, never a traceback; `--debug` shows
the traceback; an internal error says so, points to --debug and exits 1.

The checkpoints are cut from one tiny `lssat train -c smoke` run (module fixture) or saved here.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from lssat.cli import main
from lssat.models.backbones import create_backbone

QUIET = ["trainer.progress=false"]
SMOKE_VIT = {"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}  # backbones/vit-test


def run_cli(capsys, *args: str) -> tuple[int, str]:
    status = main(list(args))
    return status, capsys.readouterr().err


def assert_one_line(err: str, command: str, *expected: str) -> str:
    """The error is the last line, it is the only `lssat` line, it names `expected`, no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("lssat ")]
    assert len(ours) == 1 and lines[-1] == ours[0], err
    assert ours[0].startswith(f"lssat {command}: error: "), ours[0]
    for text in expected:
        assert text in ours[0], (text, ours[0])
    return ours[0]


class Payload:
    """Pickles as a call of `print`: a checkpoint holding it must be refused, never unpickled."""

    def __reduce__(self):
        return print, ("this must never run",)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "-c", "smoke", "-o", str(out), *QUIET]) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _lightning_state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def bad(smoke_run, tmp_path_factory) -> dict[str, Path]:
    """Broken checkpoints and weight files, by name."""
    folder = tmp_path_factory.mktemp("bad")
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    weights = smoke_run / "checkpoints" / "best.safetensors"
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    raw = ckpt.read_bytes()
    put("truncated.ckpt", raw[: len(raw) // 2])
    put("empty.ckpt", b"")
    put("text.ckpt", b"not a checkpoint\n" * 20)
    put("garbage.safetensors", os.urandom(256))
    files["pickle.ckpt"] = folder / "pickle.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, files["pickle.ckpt"])
    files["list.ckpt"] = folder / "list.ckpt"
    torch.save([1, 2, 3], files["list.ckpt"])
    state = _lightning_state(ckpt)
    key = next(k for k, v in state["state_dict"].items() if v.is_floating_point())
    state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("nan"))
    files["nan.ckpt"] = folder / "nan.ckpt"
    torch.save(state, files["nan.ckpt"])
    state["state_dict"][key] = torch.full_like(state["state_dict"][key], float("inf"))
    files["inf.ckpt"] = folder / "inf.ckpt"
    torch.save(state, files["inf.ckpt"])

    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(weights))
    variants = {
        "nan.safetensors": {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                            for k, v in tensors.items()},
        "misfit.safetensors": {**tensors, "head.fc.bias": torch.zeros(3, 3)},
        "missing.safetensors": {k: v for k, v in tensors.items() if k != "head.fc.weight"},
        "extra.safetensors": {**tensors, "head.extra": torch.zeros(2)},
    }
    for name, variant in variants.items():
        files[name] = folder / name
        save_file(variant, str(files[name]), metadata=meta)

    # inference checkpoints in the `save_checkpoint` format (a weights-only .pt)
    from lssat.infer.checkpoint import read_checkpoint

    spec, good = read_checkpoint(smoke_run)
    nan_state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in good.items()}
    files["nan.pt"] = folder / "nan.pt"
    torch.save({"lssat_checkpoint": 1, "spec": spec.to_dict(), "state_dict": nan_state}, files["nan.pt"])
    files["pickle.pt"] = folder / "pickle.pt"
    torch.save({"lssat_checkpoint": 1, "spec": spec.to_dict(), "state_dict": good, "x": Payload()}, files["pickle.pt"])
    files["misfit.pt"] = folder / "misfit.pt"
    torch.save({"lssat_checkpoint": 1, "spec": {**spec.to_dict(), "num_outputs": 3}, "state_dict": good},
               files["misfit.pt"])

    # backbone weights for model.pretrained (timm's keys, as a timm checkpoint holds them)
    torch.manual_seed(0)
    fitting = create_backbone("vit_tiny_patch16_224", 32, **SMOKE_VIT).model.state_dict()
    narrow = create_backbone("vit_tiny_patch16_224", 32, **{**SMOKE_VIT, "embed_dim": 16}).model.state_dict()
    files["narrow.pth"] = folder / "narrow.pth"
    torch.save(narrow, files["narrow.pth"])
    files["nan-backbone.safetensors"] = folder / "nan-backbone.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in fitting.items()},
              str(files["nan-backbone.safetensors"]))
    files["partial-backbone.pth"] = folder / "partial-backbone.pth"
    torch.save({k: v for k, v in fitting.items() if k != "norm.weight"}, files["partial-backbone.pth"])
    files["pickle.pth"] = folder / "pickle.pth"
    torch.save({**fitting, "x": Payload()}, files["pickle.pth"])
    files["fitting.pth"] = folder / "fitting.pth"
    torch.save(fitting, files["fitting.pth"])
    put("text.pth", b"weights? no\n" * 10)

    files["image.png"] = folder / "image.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(files["image.png"])
    return files


@pytest.fixture(scope="module")
def deepfake_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deepfake")
    index = root / "index.jsonl"
    assert main(["index", "synthetic", str(root / "faces"), "-o", str(index), "--task", "deepfake",
                 "--train", "4", "--val", "4", "--test", "4", "--size", "32"]) == 0
    return index


# --------------------------------------------------------------------------- configs

CONFIG_CASES = [
    ("trainer.lr=.nan", "trainer.lr"),
    ("trainer.lr=.inf", "trainer.lr"),
    ("trainer.base_lr=-.inf", "trainer.base_lr"),
    ("trainer.min_lr=.nan", "trainer.min_lr"),
    ("trainer.betas=[.nan,0.9]", "trainer.betas[0]"),
    ("trainer.gradient_clip=.inf", "trainer.gradient_clip"),
    ("model.head_dropout=.nan", "model.head_dropout"),
    ("model.kwargs.drop_rate=.inf", "model.kwargs.drop_rate"),
    ("task.threshold=.nan", "task.threshold"),
    ("task.pos_weight=.nan", "task.pos_weight"),
    ("data.train_fraction=.nan", "data.train_fraction"),
    ("recipe.overrides.mask_ratio=.nan", "recipe.overrides.mask_ratio"),
    ("trainer.devices=abc", "trainer.devices"),
    ("trainer.devices=-5", "trainer.devices"),
    ("trainer.devices=[]", "trainer.devices"),
    ("trainer.devices=0,x", "trainer.devices"),
    ("trainer.epoch=1", "trainer.epoch"),
]


@pytest.mark.parametrize("override,key", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_values_name_the_key(tmp_path, capsys, override, key):
    status, err = run_cli(capsys, "train", "-c", "smoke", "-o", str(tmp_path), *QUIET, override)
    assert status == 2
    assert_one_line(err, "train", key)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_device_indices_on_the_cpu_are_a_config_error(tmp_path, capsys):
    # valid for the config, refused by Lightning's CPU accelerator (a TypeError there)
    status, err = run_cli(capsys, "train", "-c", "smoke", "-o", str(tmp_path), *QUIET,
                          "trainer.accelerator=cpu", "trainer.devices=[0,1]")
    assert status == 2
    assert_one_line(err, "train", "devices [0, 1]")


# --------------------------------------------------------------------------- bench

BENCH_CASES = [
    (["quick", "trainer.epoch=1", "--dry-run"], ["trainer.epoch", "cell vit-a_deepfake_supervised_s0"]),
    (["quick", "trainer.epoch=1"], ["trainer.epoch"]),
    (["quick", "trainer.lr=.nan", "--dry-run"], ["trainer.lr"]),
    (["quick", "data.batch_size=0", "--dry-run"], ["data.batch_size"]),
    (["quick", "--set", "bogus=1", "--dry-run"], ["bogus", "placeholders: none"]),
    (["paper", "--set", "ffpp_indx=/d/ffpp.jsonl", "--dry-run"], ["ffpp_indx", "ffpp_index, celeba_index"]),
]


@pytest.mark.parametrize("args,expected", BENCH_CASES, ids=[" ".join(c[0]) for c in BENCH_CASES])
def test_bench_refuses_a_bad_grid_before_any_cell_runs(tmp_path, capsys, args, expected):
    out = tmp_path / "bench"
    status = main(["bench", *args, "-o", str(out)])
    captured = capsys.readouterr()
    assert status == 2
    assert_one_line(captured.err, "bench", *expected)
    assert "pending" not in captured.out and not out.exists()  # nothing listed, stored or run


# --------------------------------------------------------------------------- --resume

RESUME_CASES = [
    ("truncated.ckpt", "truncated"),
    ("empty.ckpt", "truncated"),
    ("text.ckpt", "truncated"),
    ("pickle.ckpt", "refused"),
    ("list.ckpt", "not a Lightning checkpoint"),
    ("nan.ckpt", "not finite"),
    ("inf.ckpt", "not finite"),
]


@pytest.mark.parametrize("name,problem", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_resume_from_a_broken_checkpoint(tmp_path, capsys, bad, name, problem):
    status, err = run_cli(capsys, "train", "-c", "smoke", "-o", str(tmp_path), *QUIET, "--resume", str(bad[name]))
    assert status == 2
    assert_one_line(err, "train", str(bad[name]), problem)


@pytest.mark.parametrize("override,problem", [
    ("recipe=supervised", "unexpected key 'model.mae."),  # no decoder in this model
    ("model.kwargs.embed_dim=16", "has shape"),
], ids=["other-recipe", "other-width"])
def test_resume_from_another_models_checkpoint(tmp_path, capsys, smoke_run, override, problem):
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    status, err = run_cli(capsys, "train", "-c", "smoke", "-o", str(tmp_path), *QUIET, override, "--resume", str(ckpt))
    assert status == 2
    assert_one_line(err, "train", str(ckpt), "another model", problem)


# --------------------------------------------------------------------------- eval and predict

EVAL_CASES = [
    ("nan.safetensors", "not finite"),
    ("misfit.safetensors", "has shape"),
    ("missing.safetensors", "missing key 'head.fc.weight'"),
    ("extra.safetensors", "unexpected key 'head.extra'"),
    ("garbage.safetensors", "not a readable safetensors file"),
    ("truncated.ckpt", "truncated"),
    ("pickle.ckpt", "refused"),
    ("inf.ckpt", "not finite"),
]


@pytest.mark.parametrize("name,problem", EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_of_bad_weights_names_the_file(capsys, bad, name, problem):
    status, err = run_cli(capsys, "eval", str(bad[name]), "--quiet", "--accelerator", "cpu")
    assert status == 2
    assert_one_line(err, "eval", str(bad[name]), problem)


def test_eval_on_another_tasks_index_names_the_index(capsys, smoke_run, deepfake_index):
    status, err = run_cli(capsys, "eval", str(smoke_run), "--index", str(deepfake_index), "--quiet",
                          "--accelerator", "cpu")
    assert status == 2
    assert_one_line(err, "eval", str(deepfake_index), "deepfake", "expression")


PREDICT_CASES = [
    ("nan.safetensors", "not finite"),
    ("misfit.safetensors", "has shape"),
    ("nan.pt", "not finite"),
    ("pickle.pt", "Python objects"),
    ("misfit.pt", "has shape"),
]


@pytest.mark.parametrize("name,problem", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict_with_bad_weights_names_the_file(capsys, bad, name, problem):
    status = main(["predict", str(bad[name]), str(bad["image.png"]), "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 2 and '"ok": true' not in captured.out
    assert_one_line(captured.err, "predict", str(bad[name]), problem)


# --------------------------------------------------------------------------- model.pretrained

PRETRAINED_CASES = [
    ("run", "unexpected key 'backbone.model."),  # an lssat run's weights, not a backbone's
    ("narrow.pth", "has shape"),
    ("partial-backbone.pth", "missing key 'norm.weight'"),
    ("nan-backbone.safetensors", "not finite"),
    ("pickle.pth", "refused"),
    ("text.pth", "truncated, or not a checkpoint file"),
]


@pytest.mark.parametrize("name,problem", PRETRAINED_CASES, ids=[c[0] for c in PRETRAINED_CASES])
def test_pretrained_weights_that_do_not_fit_are_refused(tmp_path, capsys, smoke_run, bad, name, problem):
    path = smoke_run / "checkpoints" / "best.safetensors" if name == "run" else bad[name]
    status, err = run_cli(capsys, "train", "-c", "smoke", "-o", str(tmp_path), *QUIET, f"model.pretrained={path}")
    assert status == 2
    assert_one_line(err, "train", str(path), problem)


def test_pretrained_weights_that_fit_are_loaded(bad):
    torch.manual_seed(1)
    loaded = create_backbone("vit_tiny_patch16_224", 32, weights=bad["fitting.pth"], **SMOKE_VIT)
    expected = torch.load(bad["fitting.pth"], weights_only=True)
    for name, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)


# --------------------------------------------------------------------------- output paths

def test_output_folder_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    status, err = run_cli(capsys, "train", "-c", "smoke", "-o", str(blocker / "runs"), *QUIET)
    assert status == 2
    assert_one_line(err, "train", str(blocker))


def test_index_root_under_a_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    status, err = run_cli(capsys, "index", "synthetic", str(blocker / "faces"), "-o", str(tmp_path / "i.jsonl"),
                          "--task", "expression", "--train", "2", "--val", "2", "--test", "2", "--size", "32")
    assert status == 2
    assert_one_line(err, "index", str(blocker))


def test_eval_output_under_a_file(tmp_path, capsys, smoke_run):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    status, err = run_cli(capsys, "eval", str(smoke_run), "--quiet", "--accelerator", "cpu",
                          "-o", str(blocker / "metrics.json"))
    assert status == 2
    assert_one_line(err, "eval", str(blocker))


def _limited(limit: int):
    def setup() -> None:  # writes past `limit` bytes fail with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return setup


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("command,limit,where", [
    (["index", "synthetic", "{tmp}/faces", "-o", "{tmp}/index.jsonl", "--task", "expression", "--train", "8",
      "--val", "4", "--test", "4", "--size", "32"], 2000, "{tmp}/index.jsonl"),
    (["train", "-c", "smoke", "-o", "{tmp}/runs", *QUIET], 100_000, "{tmp}/runs/"),  # the first checkpoint
], ids=["index", "train-checkpoint"])
def test_a_full_disk_names_the_file(tmp_path, command, limit, where):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    proc = subprocess.run([sys.executable, "-m", "lssat.cli", *args], preexec_fn=_limited(limit),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = assert_one_line(proc.stderr, args[0], where.replace("{tmp}", str(tmp_path)))
    assert os.strerror(errno.EFBIG) in line


# --------------------------------------------------------------------------- --debug, OSError, internal errors

@pytest.mark.parametrize("args", [
    ["--debug", "train", "-c", "smoke", "trainer.lr=.nan"],
    ["train", "--debug", "-c", "smoke", "trainer.lr=.nan"],
], ids=["before", "after"])
def test_debug_shows_the_traceback(tmp_path, capsys, args):
    status, err = run_cli(capsys, *args, "-o", str(tmp_path))
    assert status == 2
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("lssat train: error: trainer.lr")


def _fail_with(error: BaseException):
    def run(args):
        path = "/some/where/out.bin"  # noqa: F841 - the frame the error handler reads the file from
        raise error
    return run


@pytest.mark.parametrize("error,expected,status", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.jsonl"), "/data/x.jsonl: Permission denied", 2),
    (OSError(errno.EROFS, "Read-only file system", "/ro/out"), "/ro/out: Read-only file system", 2),
    (OSError(errno.ENOSPC, "No space left on device"), "/some/where/out.bin: No space left on device", 2),
    (OSError(errno.EFBIG, "File too large"), "/some/where/out.bin: File too large", 2),
    (ZeroDivisionError("division by zero"), "internal error: ZeroDivisionError: division by zero", 1),
], ids=["EACCES", "EROFS", "ENOSPC-no-filename", "EFBIG-no-filename", "internal"])
def test_os_and_internal_errors_are_one_line(monkeypatch, capsys, error, expected, status):
    monkeypatch.setattr("lssat.commands.show.run", _fail_with(error))
    assert main(["show", "model", "image.png"]) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert expected in err
    if status == 1:
        assert "run with --debug for the traceback" in err
