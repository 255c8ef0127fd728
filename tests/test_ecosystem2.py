"""Fitting the ecosystem, second part: the backbone exported for timm, the Hugging Face hub cache,
Lightning's checkpointing (interval, Slurm requeue, extending a run), loggers by class path, one
meaning per command-line flag, and DeepfakeBench-compatible metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lssat.cli import main

QUIET = ["trainer.progress=false"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny models train faster so on 2 shared cores than with several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "-c", "smoke", "-o", str(out), *QUIET, "trainer.max_steps=2"]) == 0
    finally:
        torch.set_num_threads(threads)
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def _images(size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(seed)) * 255


def test_export_timm_loads_in_timm_with_equal_features(run_folder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import timm

    import lssat

    out = tmp_path / "timm"
    assert main(["export", str(run_folder), "--format", "timm", "-o", str(out)]) == 0
    assert "features match" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    model = lssat.load(run_folder, device="cpu").model
    assert config["architecture"] == model.backbone_name and config["num_classes"] == 0
    assert config["pretrained_cfg"]["mean"] == pytest.approx(model.rgb_mean.flatten().tolist())
    from safetensors.torch import load_file

    keys = set(load_file(str(out / "model.safetensors")))
    assert keys == set(model.backbone.model.state_dict()) and not any(k.startswith("backbone.") for k in keys)

    x, stem = model.image_input(model.recipe.classify_input, _images(model.img_size))
    assert stem is None
    with torch.no_grad():
        expected = model.backbone(x)
        by_folder = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
        assert torch.equal(by_folder(x), expected)
        # the way: the architecture by name, the file as the pretrained weights (strict load)
        by_file = timm.create_model(model.backbone_name, pretrained=True,
                                    pretrained_cfg_overlay={"file": str(out / "model.safetensors")},
                                    **config["model_args"]).eval()
        assert torch.equal(by_file(x), expected)
    assert not torch.equal(timm.create_model(f"local-dir:{out}", pretrained=False).eval()(x), expected)


def _fake_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40) -> Path:
    """A Hugging Face cache entry as huggingface_hub lays it out (refs/main -> snapshots/<commit>)."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_push_to_hub_then_load_hf_hub_id_from_the_cache(run_folder: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """push_to_hub uploads the save_pretrained folder (the hub replaced by a recorder); the uploaded
    files, placed in a local huggingface_hub cache, load by `hf-hub:` id with HF_HUB_OFFLINE=1."""
    import huggingface_hub
    from huggingface_hub import constants

    import lssat
    from lssat.models.lssat import LSSATModel

    uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, **kwargs):  # noqa: ANN001
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kwargs):  # noqa: ANN001
        uploaded.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})
        return f"https://huggingface.co/{repo_id}/commit/1"

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    predictor = lssat.load(run_folder, device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    url = predictor.model.push_to_hub("org/face-model", task=predictor.task)
    assert url.startswith("https://huggingface.co/org/face-model") and set(uploaded) == {"config.json",
                                                                                         "model.safetensors"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _fake_hub_cache(tmp_path / "hub", "org/face-model", uploaded)
    x = _images(predictor.img_size)
    with torch.no_grad():
        expected = predictor.model(x)
        again = lssat.load("hf-hub:org/face-model", device="cpu")
        assert again.names == predictor.names and torch.equal(again.model(x), expected)
        assert torch.equal(LSSATModel.from_pretrained("hf-hub:org/face-model")(x), expected)


def test_hf_hub_id_offline_and_not_cached_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from huggingface_hub import constants

    from lssat.errors import InputError
    from lssat.models.lssat import LSSATModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["export", "hf-hub:org/missing", "--format", "torchscript", "-o", str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"lssat export: error: hf-hub:org/missing: not in the Hugging Face cache ({tmp_path / 'hub'}), "
        f"HF_HUB_OFFLINE=1 forbids downloading it"]
    with pytest.raises(InputError, match="HF_HUB_OFFLINE=1 forbids uploading"):
        LSSATModel("vit_tiny_patch16_224", 2, "supervised", 32, backbone_kwargs={"depth": 1}).push_to_hub("org/x")


# ---------------------------------------------------------------------------------- checkpoints
STEPS6 = ["trainer.max_steps=6", "trainer.deterministic=true", *QUIET]  # 4 steps an epoch (32 faces, batch 8)
SLURM_ENV = {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "lssat-train", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}


def _record(folder: Path) -> dict:
    return json.loads((folder / "run_record.json").read_text())


def _only(folder: Path) -> Path:
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_slurm_signal_checkpoints_requeues_and_the_requeued_job_resumes_bit_for_bit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Run a writes `last` after every step (Lightning's train_time_interval, here 0.1 ms; at the
    epoch's end after its validation). Run b: a step interval (every_n_train_steps) writes `last`
    mid-epoch; Slurm's SIGUSR1 (sent in-process) makes it write `last` at the step's end, run
    `scontrol requeue` and stop; the requeued job (SLURM_RESTART_COUNT=1) resumes without --resume.
    Both end with the same weights: neither the intervals nor the requeue change the result."""
    import os
    import signal
    import subprocess

    from lightning.pytorch.callbacks import Callback

    import lssat.engine.run as engine
    from lssat.engine.checkpoints import RunCheckpoints

    steps: list[int] = []
    original = RunCheckpoints._checkpoint

    def recorded(self, trainer, module, validated=True):  # noqa: ANN001
        steps.append(trainer.global_step)
        return original(self, trainer, module, validated)

    with monkeypatch.context() as mp:
        mp.setattr(RunCheckpoints, "_checkpoint", recorded)
        assert main(["train", "-c", "smoke", "-o", str(tmp_path / "a"), *STEPS6,
                     "trainer.checkpoint_train_time_interval=0.0001"]) == 0
    assert steps == [1, 2, 3, 4, 5, 6]  # 4: the epoch's end, after its validation
    calls: list[list[str]] = []
    seen: dict[int, int] = {}
    monkeypatch.setattr(subprocess, "call", lambda cmd, *a, **k: calls.append(list(cmd)) or 0)
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)

    class Signal(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            last = tmp_path / "b" / module.metadata["run_id"] / "checkpoints" / "last.json"
            seen[trainer.global_step] = json.loads(last.read_text())["step"] if last.is_file() else 0
            if trainer.global_step == 5:  # mid-epoch; before RunCheckpoints (a checkpoint callback runs last)
                os.kill(os.getpid(), signal.SIGUSR1)

    build = engine.build_trainer
    with monkeypatch.context() as mp:
        mp.setattr(engine, "build_trainer", lambda cfg, folder, callbacks, **kw: build(
            cfg, folder, [Signal(), *callbacks], **kw))
        args = ["train", "-c", "smoke", "-o", str(tmp_path / "b"), *STEPS6, "trainer.checkpoint_every_n_train_steps=3"]
        assert main(args) == 0
    assert "requeued" in capsys.readouterr().out
    run_b = _only(tmp_path / "b")
    assert seen[3] == 0 and seen[4] == 3  # the interval's mid-epoch checkpoint, written after this callback
    assert json.loads((run_b / "checkpoints" / "last.json").read_text())["step"] == 5
    assert calls == [["scontrol", "requeue", "4242"]]
    record = _record(run_b)
    assert record["status"] == "interrupted" and record["requeued"]["step"] == 5
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)  # the handler was taken down

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert main(["train", "-c", "smoke", "-o", str(tmp_path / "b"), *STEPS6]) == 0  # no --resume
    record = _record(run_b)
    assert record["status"] == "done" and record["resumed_from"].endswith("last.ckpt")
    assert record["trainer"]["global_step"] == 6 and record["cost"]["train_images"] == 1 * 8
    assert [a["status"] for a in record["attempts"]] == ["interrupted"]
    run_a = _only(tmp_path / "a")
    for name in ("last", "best"):
        a, b = (_safetensors(r / "checkpoints" / f"{name}.safetensors") for r in (run_a, run_b))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # one full `last`, a weights-only `best` (Lightning's save_weights_only), no other checkpoint
    ckpts = run_a / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(ckpts / "best.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6 and "optimizer_states" in last and "lssat_rng" in last
    assert "optimizer_states" not in best and best["hyper_parameters"]["metadata"]["run_id"] == run_a.name
    assert best["global_step"] == 4 and best["state_dict"].keys() == last["state_dict"].keys()
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "best.json", "best.safetensors", "last.ckpt",
                                                      "last.json", "last.safetensors"]
    from lssat.config import load_config

    plain = load_config(["smoke"], ["trainer.max_steps=4"]).run_id
    assert load_config(["smoke"], ["trainer.max_steps=4", "trainer.checkpoint_every_n_train_steps=3"]).run_id \
        == load_config(["smoke"], ["trainer.max_steps=4", "trainer.checkpoint_train_time_interval=60"]).run_id == plain


def test_resume_extends_a_run_in_its_own_folder(tmp_path: Path) -> None:
    """trainer.epochs=1, then trainer.epochs=2 --resume: the same folder, trained on from its last
    checkpoint (the optimizer continued: only the new steps logged)."""
    import csv

    one = ["train", "-c", "smoke", "-o", str(tmp_path), *QUIET, "trainer.max_steps=null", "trainer.epochs=1"]
    assert main(one) == 0
    folder = _only(tmp_path)
    assert main([*one[:-1], "trainer.epochs=2", "--resume"]) == 0
    assert _only(tmp_path) == folder  # no second folder
    record = _record(folder)
    assert record["status"] == "done" and record["run_id"] == folder.name
    assert record["trainer"]["global_step"] == 8 and record["trainer"]["epochs_completed"] == 2
    assert record["cost"]["train_images"] == 4 * 8 and record["resumed_from"].endswith("last.ckpt")
    assert any(note.startswith("extended:") for note in record["notes"])
    assert "epochs: 2" in (folder / "config.yaml").read_text()
    steps = sorted(int(r["step"]) for p in folder.glob("logs/version_*/metrics.csv")
                   for r in csv.DictReader(p.open()) if r.get("train/lr"))
    assert steps == list(range(8))  # steps 0-3 in the first session, 4-7 in the second
    # --resume RUN_DIR of the same output folder does the same
    assert main([*one[:-1], "trainer.epochs=3", "--resume", str(folder)]) == 0
    assert _only(tmp_path) == folder and _record(folder)["trainer"]["global_step"] == 12
    # TensorBoard's HParams tab: the hyper-parameters with the run's headline metrics, each session
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sessions = sorted(folder.glob("tensorboard/version_*"))
    assert len(sessions) == 3
    events = EventAccumulator(str(sessions[-1]))
    events.Reload()
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert {"hp/val_acc", "hp/test_acc"} <= set(events.Tags()["scalars"])


# ---------------------------------------------------------------------------------- loggers
def test_logger_by_class_path_gets_hyperparameters_and_the_summary_counts_flops(
        run_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A logger by class path (Lightning's CSVLogger by its dotted path) beside csv; progress as
    lines on a non-terminal stderr; the model summary's FLOPs."""
    import yaml
    from lightning.pytorch.utilities.model_summary import ModelSummary

    from lssat.engine.module import LSSATModule

    loggers = "trainer.loggers=[csv, {class_path: lightning.pytorch.loggers.CSVLogger, init_args: {name: extra}}]"
    assert main(["train", "-c", "smoke", "-o", str(tmp_path), "trainer.max_steps=4", "trainer.progress=true",
                 loggers]) == 0
    folder = _only(tmp_path)
    # trainer.progress on and stderr a file (captured, not a terminal): whole lines, no redraws
    err = capsys.readouterr().err
    assert "\r" not in err, err[-500:]
    assert any(line.startswith("epoch 0 done in ") and "train/loss=" in line for line in err.splitlines()), err[-2000:]
    assert any(line.startswith("validation at step 4: val/acc=") for line in err.splitlines()), err[-2000:]
    assert not (folder / "tensorboard").exists()  # not asked for
    (hparams,) = folder.glob("extra/version_0/hparams.yaml")  # save_dir defaults to the run folder
    assert yaml.safe_load(hparams.read_text())["metadata"]["run_id"] == folder.name
    assert list(folder.glob("extra/version_0/metrics.csv")) and list(folder.glob("logs/version_0/metrics.csv"))
    module = LSSATModule.load_from_checkpoint(run_folder / "checkpoints" / "last.ckpt", map_location="cpu")
    assert module.example_input_array.shape == (1, 3, module.model.img_size, module.model.img_size)
    assert ModelSummary(module).total_flops > 0  # Lightning's "Total Flops" (0 without an example input)


@pytest.mark.parametrize("value, expected", [
    ("[nope]", "trainer.loggers[0]: expected csv, tensorboard, or {class_path: a.Logger, init_args: {...}}, "
               "got 'nope'"),
    ("[{class_path: lightning.pytorch.loggers.NoSuchLogger}]",
     "trainer.loggers[0]: no class 'lightning.pytorch.loggers.NoSuchLogger'"),
    ("[csv, {class_path: lssat.config.RunConfig}]", "trainer.loggers[1]: lssat.config.RunConfig is not a Lightning logger"),
    ("[{class_path: lightning.pytorch.loggers.CSVLogger, init_args: {colour: red}}]",
     "trainer.loggers[0]: lightning.pytorch.loggers.CSVLogger: TypeError: CSVLogger.__init__() got an unexpected "
     "keyword argument 'colour'"),
    ("[{class_path: no_such_package.Logger}]", "trainer.loggers[0]: no_such_package.Logger: module no_such_package "
                                               "is not installed"),
])
def test_bad_logger_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, value: str, expected: str) -> None:
    assert main(["train", "-c", "smoke", "-o", str(tmp_path), *QUIET, f"trainer.loggers={value}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"lssat train: error: {expected}"]


# ---------------------------------------------------------------------------------- command line
def _subparser(name: str):
    import argparse

    from lssat.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def test_one_meaning_per_flag_with_the_old_spellings_still_accepted() -> None:
    train, pre, show, predict = (_subparser(n) for n in ("train", "preprocess", "show", "predict"))
    base = ["-c", "smoke"]
    assert train.parse_args([*base, "-o", "r"]).output_dir == train.parse_args([*base, "--output", "r"]).output_dir \
        == train.parse_args([*base, "--output-dir", "r"]).output_dir == "r"
    assert pre.parse_args(["src", "--out", "o"]).out == pre.parse_args(["src", "--output", "o"]).out == "o"
    assert pre.parse_args(["src", "-o", "o", "--format", "jpg"]).image_format == "jpg"
    assert pre.parse_args(["src", "-o", "o", "--image-format", "jpg"]).image_format == "jpg"
    assert "--format" not in pre.format_help() and "--output-dir" not in train.format_help()
    for parser in (_subparser(n) for n in ("train", "preprocess", "export", "predict", "show", "eval", "bench")):
        long = [a.option_strings for a in parser._actions if "-o" in a.option_strings]
        assert long and long[0] == ["-o", "--output"], (parser.prog, long)
    assert show.get_default("device") == predict.get_default("device") == "auto"


def test_progress_is_whole_lines_when_stderr_is_not_a_terminal() -> None:
    import io

    from lssat.progress import LineTqdm, progress_bar

    log = io.StringIO()
    bar = progress_bar(range(5), desc="files", file=log, mininterval=0)
    assert isinstance(bar, LineTqdm)
    assert list(bar) == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and lines[0].startswith("files:  20%") and lines[-1].startswith("files: 100%")
    assert len(lines) == 5  # one line per update (mininterval 0 here; 30 s by default), none more at the end


# ---------------------------------------------------------------------------------- DeepfakeBench metrics
# seven frames, four real (0.1, 0.5, 0.2, 0.4) and three fake (0.3, 0.6, 0.7); six lssat videos, of
# which Deepfakes/002_001 and Face2Face/002_001 are one video for DeepfakeBench (same folder name)
SCORES = [0.1, 0.5, 0.2, 0.4, 0.3, 0.6, 0.7]
LABELS = [0, 0, 0, 0, 1, 1, 1]
VIDEOS = ["original/000", "original/001", "original/002", "original/001", "Deepfakes/002_001",
          "Face2Face/003_004", "Face2Face/002_001"]


def test_deepfakebench_metrics_on_fixed_inputs_against_hand_computed_values() -> None:
    from lssat.metrics.deepfake import DeepfakeMetrics, deepfakebench_metrics

    dfb = deepfakebench_metrics(SCORES, LABELS, VIDEOS)
    ours = DeepfakeMetrics()
    ours.update(torch.tensor(SCORES), torch.tensor(LABELS), VIDEOS)
    lssat = ours.compute()
    # AUC: of the 12 (fake, real) pairs, 0.3 beats 0.1 and 0.2, 0.6 and 0.7 beat all four: 10/12 (both)
    assert dfb["auc"] == pytest.approx(5 / 6) and lssat["frame_auc"] == pytest.approx(5 / 6)
    # AP: fakes at ranks 1, 2, 5: (1 + 1 + 3/5) / 3 = 13/15 (both)
    assert dfb["ap"] == pytest.approx(13 / 15) and lssat["ap"] == pytest.approx(13 / 15)
    # accuracy: 0.5 is real for DeepfakeBench (> 0.5), fake for lssat (>= 0.5): 6/7 against 5/7
    assert dfb["acc"] == pytest.approx(6 / 7) and lssat["acc"] == pytest.approx(5 / 7)
    # EER: the ROC points (FPR, TPR): (0,0) (0,1/3) (0,2/3) (1/4,2/3) (1/2,2/3) (1/2,1) (3/4,1) (1,1).
    # lssat: FNR = FPR where the horizontal segment at TPR 2/3 meets it, FPR 1/3. DeepfakeBench:
    # scikit-learn drops the collinear (1/4,2/3) and (3/4,1); |FNR - FPR| is least (1/6) at (1/2,2/3)
    assert dfb["eer"] == pytest.approx(1 / 2) and lssat["eer"] == pytest.approx(1 / 3, abs=1e-6)
    # videos, lssat's six: real 000 0.1, 001 mean(0.5, 0.4) = 0.45, 002 0.2; fake 0.3, 0.6, 0.7:
    # 0.3 beats 0.1 and 0.2, the others all three: 8/9. DeepfakeBench's five: the fakes named 002_001
    # are one video, mean(0.3, 0.7) = 0.5, beside 003_004 0.6: both beat every real video: 1
    assert lssat["video_auc"] == pytest.approx(8 / 9) and dfb["video_auc"] == pytest.approx(1.0)
    # DeepfakeBench's own input, frame paths: the folder holding the frame names the video
    paths = [f"frames/{v.split('/')[-1]}/{i:03d}.png" for i, v in enumerate(VIDEOS)]
    assert deepfakebench_metrics(SCORES, LABELS, frame_paths=paths)["video_auc"] == pytest.approx(1.0)
    # a video of real and fake frames is real there (the floor of its mean label): video m holds the
    # real 0.5 and the fake 0.6 (mean 0.55); real 0.1, 0.2, 0.4, 0.55 against fake 0.3, 0.7: 6/8
    mixed = deepfakebench_metrics(SCORES, LABELS, ["1", "m", "2", "3", "4", "m", "6"])
    assert mixed["video_auc"] == pytest.approx(3 / 4)
    ours = DeepfakeMetrics()
    ours.update(torch.tensor(SCORES), torch.tensor(LABELS), ["1", "m", "2", "3", "4", "m", "6"])
    assert ours.compute()["video_auc"] == pytest.approx(8 / 9)  # lssat: m is fake (any fake frame)
    one_class = deepfakebench_metrics([0.2, 0.7], [0, 0])
    assert np.isnan(one_class["auc"]) and np.isnan(one_class["eer"]) and np.isnan(one_class["ap"])
    assert np.isnan(one_class["video_auc"]) and one_class["acc"] == 0.5


def test_eval_metrics_deepfakebench_needs_a_deepfake_model(run_folder: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(run_folder), "--metrics", "deepfakebench", "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--metrics deepfakebench applies to deepfake models; this one is for expression")
