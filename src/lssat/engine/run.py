"""One training run from a config, and the re-evaluation of a checkpoint.

`train(config)` writes one run folder, ``<output_dir>/<run_id>/``::

    config.yaml        the resolved config (load it back with `lssat.config.load_config`)
    recipe.yaml        the recipe the model was built from, every field
    checkpoints/       last.* and best.* (see `lssat.engine.checkpoints`)
    logs/              CSV logs (version_N/metrics.csv), tensorboard/ (TensorBoard events); the
                       loggers are `trainer.loggers` (csv, tensorboard, or any Lightning logger by
                       class path: `make_loggers`)
    run_record.json    the run record (see `lssat.engine.record`)
    predictions/       test.npz: per-sample test predictions (`lssat.engine.record.write_predictions`)

Flow: seed, data, task, recipe (adapted to the scheme), model, fit (validation every
`trainer.val_every` epochs, or every `trainer.val_check_interval` steps), then test on the test split with the best-on-validation weights
(the last weights when no epoch was validated), then the record. Distributed runs use Lightning's
DDP (its own launcher, torchrun or Slurm, found from the environment); validation and test
samplers are split across ranks without the padding that would repeat samples, and the metrics
are gathered over all ranks. Only rank 0 writes files.

A run is extended (more epochs or steps) in its own folder: `--resume` with a config that differs
from a run's only in its schedule length (`trainer.epochs`, `trainer.max_steps`) continues that
run's folder (`run_folder`), whose name stays the first config's run id. A requeued Slurm job
(``SLURM_RESTART_COUNT`` > 0) resumes its folder's `last` checkpoint without `--resume`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lssat.config import RunConfig, TaskConfig, config_from_dict, save_config
from lssat.data.datamodule import FaceDataModule
from lssat.data.loading import FaceDataLoader
from lssat.engine import record as rec
from lssat.engine.checkpoints import RunCheckpoints, load_weights, slurm_requeued
from lssat.engine.module import LSSATModule
from lssat.engine.schemes import finds_unused_parameters, scheme_recipe
from lssat.errors import ConfigError, InputError, LssatError, MissingDependencyError

_QUIET = ("does not have many workers", "sync_dist=True", "is smaller than the logging interval",
          "`training_step` returned `None`", "Trying to infer the `batch_size`", "The number of training batches",
          "isinstance(treespec, LeafSpec)",
          "You have overridden `transfer_batch_to_device`",
          "make your dataloader resumable")  # the data module resumes mid-epoch itself (single process)


@dataclass
class RunResult:
    """What `train` returns: the run folder, its record, and whether this process is rank 0."""

    folder: Path
    record: dict[str, Any]
    is_global_zero: bool


class RunDataModule(FaceDataModule):
    """The data module of a run: evaluation samplers split across DDP ranks without repeats,
    and `eval_split` chooses which split the test loop reads (for `lssat eval --split val`)."""

    def __init__(self, config: Any, eval_split: str = "test") -> None:
        super().__init__(config)
        self.eval_split = eval_split

    def _unrepeated(self, loader: Any) -> Any:
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return loader
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper

        sampler = UnrepeatedDistributedSamplerWrapper(loader.sampler, num_replicas=trainer.world_size,
                                                      rank=trainer.global_rank, shuffle=False)
        return FaceDataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                              num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                              pin_memory=loader.pin_memory, persistent_workers=loader.persistent_workers,
                              generator=loader.generator)

    def val_dataloader(self) -> Any:
        return self._unrepeated(super().val_dataloader())

    def test_dataloader(self) -> Any:
        loader = super().val_dataloader() if self.eval_split == "val" else super().test_dataloader()
        return self._unrepeated(loader)


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto`: bf16-mixed on a GPU with bf16, 16-mixed on another GPU, else 32-true."""
    if precision != "auto":
        return {"32": "32-true", "64": "64-true"}.get(precision, precision)
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def make_task(cfg: TaskConfig, dm: FaceDataModule) -> Any:
    """The task of the data (its kind and names) with the config's options."""
    from lssat.tasks import inverse_frequency_weights, task_from_header

    if cfg.kind is not None and cfg.kind != dm.task:
        raise ConfigError(f"task.kind is {cfg.kind!r} but the data is a {dm.task!r} dataset")
    options: dict[str, Any] = {"threshold": cfg.threshold}
    for key in ("headline", "label_smoothing", "pos_weight"):
        if getattr(cfg, key) is not None:
            options[key] = getattr(cfg, key)
    if cfg.subgroups is not None:
        options["subgroups"] = cfg.subgroups
    if cfg.class_weights is not None:
        if dm.task != "expression":
            raise ConfigError(f"task.class_weights applies to expression data, this is {dm.task!r}")
        weights = cfg.class_weights
        if weights == "balanced":
            counts = [0] * len(dm.classes)
            for record in _train_records(dm):
                counts[record.label] += 1
            weights = inverse_frequency_weights(counts).tolist()
        options["class_weights"] = weights
    if options.get("pos_weight") is not None and dm.task == "expression":
        raise ConfigError("task.pos_weight applies to deepfake or attributes data, this is 'expression'")
    if isinstance(options.get("pos_weight"), str):
        options["pos_weight"] = _balanced_pos_weight(dm, options["pos_weight"])
    return task_from_header(dm.header, **options)


def _train_records(dm: FaceDataModule) -> list[Any]:
    """The records the training split actually uses (after the training fraction)."""
    records = dm.records("train")
    return [records[p] for p in dm.train_positions.tolist()]


def _balanced_pos_weight(dm: FaceDataModule, mode: str) -> float | list[float]:
    """negatives / positives per output on the training split ("balanced"), or its square root
    ("sqrt-balanced": half-way on a log scale, so rare positives count more without the flood of
    false positives that full balancing brings to mean accuracy)."""
    import numpy as np

    chosen = _train_records(dm)
    if dm.task == "attributes":
        labels = np.array([r.attributes for r in chosen if r.attributes is not None], dtype=float).reshape(
            -1, len(dm.header.attribute_names or []))
    else:
        labels = np.array([r.label for r in chosen if r.label is not None], dtype=float).reshape(-1, 1)
    labels = np.where(labels < 0, np.nan, labels)
    pos = np.nansum(labels, axis=0)
    neg = np.sum(~np.isnan(labels), axis=0) - pos
    ratio = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    weights = np.sqrt(ratio) if mode == "sqrt-balanced" else ratio
    return float(weights[0]) if dm.task == "deepfake" else [float(w) for w in weights]


def make_model(cfg: RunConfig, num_outputs: int, recipe: Any, norm: dict[str, Any] | None = None) -> Any:
    """The LSSATModel of a config (pretrained: false | local file | "hub")."""
    from lssat.models.lssat import LSSATModel

    m = cfg.model
    from lssat.models.clip import check_clip_config

    check_clip_config(m.backbone, m.kwargs, cfg.data.clip)
    weights = m.pretrained if isinstance(m.pretrained, str) and m.pretrained != "hub" else None
    return LSSATModel(m.backbone, num_outputs, recipe, m.img_size, pretrained=m.pretrained == "hub",
                      weights=weights, allow_hub=m.pretrained == "hub", backbone_kwargs=backbone_kwargs(cfg),
                      head_dropout=m.head_dropout, norm_mean=(norm or {}).get("mean"),
                      norm_std=(norm or {}).get("std"), init=resolve_init(m.init, recipe))


def backbone_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """model.kwargs, plus timm's drop_path_rate = trainer.finetune_drop_path for a pretrain-finetune
    run (LSSATModule turns drop path off while pre-training) unless model.kwargs sets it."""
    kwargs = dict(cfg.model.kwargs)
    t = cfg.trainer
    if t.scheme == "pretrain-finetune" and t.finetune_drop_path > 0 and "drop_path_rate" not in kwargs:
        kwargs["drop_path_rate"] = t.finetune_drop_path
    return kwargs


def resolve_init(init: str | None, recipe: Any) -> str:
    """model.init, where null means "mae" (MAE/SSAT's from-scratch init) for the SSAT family and the
    supervised baseline, and "timm" for HMTL's recipes (puzzle, in-painting), built on timm's models."""
    if init is not None:
        return init
    return "timm" if {"puzzle", "inpaint"} & set(recipe.aux) else "mae"


def build_trainer(cfg: RunConfig, folder: Path | None, callbacks: list[Any], *, evaluate: bool = False) -> L.Trainer:
    """The Lightning Trainer of a config; Lightning's own configuration errors become ConfigErrors."""
    t = cfg.trainer
    strategy = t.strategy
    if any(word in strategy for word in ("spawn", "fork", "notebook")):
        raise ConfigError(f"trainer.strategy {strategy!r} is not supported; use ddp (Lightning launches the "
                          f"processes; torchrun and Slurm work too)")
    if finds_unused_parameters(t.scheme) and strategy == "ddp":
        strategy = "ddp_find_unused_parameters_true"
    loggers: list[Any] | bool = False if folder is None else make_loggers(t.loggers, folder)
    plugins = []
    if not evaluate:
        from lightning.fabric.plugins.environments import SLURMEnvironment

        if SLURMEnvironment.detect():  # lssat acts on the requeue signal itself (RunCheckpoints)
            plugins.append(SLURMEnvironment(auto_requeue=False))
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if t.progress:
        from lssat.progress import LineProgressBar, is_terminal

        if not is_terminal():  # a log file (sbatch, nohup): whole lines every 30 s, not tqdm's redraws
            callbacks = [*callbacks, LineProgressBar()]
    try:
        return L.Trainer(
            accelerator=t.accelerator, devices=1 if evaluate else t.devices,
            num_nodes=1 if evaluate else t.num_nodes, strategy="auto" if evaluate else strategy,
            precision=resolve_precision(t.precision, t.accelerator),
            max_epochs=t.epochs if t.max_steps is None else -1, max_steps=t.max_steps or -1,
            gradient_clip_val=t.gradient_clip, accumulate_grad_batches=t.accumulate_grad_batches,
            check_val_every_n_epoch=t.val_every if t.val_check_interval is None else None,
            val_check_interval=t.val_check_interval, limit_train_batches=t.limit_train_batches,
            limit_val_batches=t.limit_val_batches, limit_test_batches=t.limit_test_batches,
            log_every_n_steps=t.log_every, num_sanity_val_steps=t.sanity_val_steps,
            enable_progress_bar=t.progress, enable_model_summary=t.progress and not evaluate,
            deterministic=t.deterministic, logger=loggers, callbacks=callbacks,
            enable_checkpointing=not evaluate, default_root_dir=str(folder) if folder else None,
            plugins=plugins or None,
        )
    except (MisconfigurationException, ValueError, RuntimeError, ImportError, TypeError) as err:
        raise ConfigError(f"trainer (accelerator {t.accelerator!r}, devices {t.devices!r}, strategy "
                          f"{strategy!r}): {str(err).strip().splitlines()[0]}") from None


def make_loggers(specs: list[Any], folder: Path) -> list[Any]:
    """The loggers `trainer.loggers` names: "csv" (``logs/``), "tensorboard" (``tensorboard/``), or
    any Lightning logger by class path, as LightningCLI writes it: ``{class_path: ..., init_args:
    {...}}`` (or the dotted path alone); its ``save_dir`` / ``root_dir`` defaults to the run folder."""
    import importlib
    import inspect

    from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

    out: list[Any] = []
    if isinstance(specs, (str, dict)):  # `trainer.loggers=csv`: one logger
        specs = [specs]
    for i, spec in enumerate(specs or []):
        key = f"trainer.loggers[{i}]"
        if spec == "csv":
            out.append(CSVLogger(str(folder), name="logs"))
            continue
        if spec == "tensorboard":
            try:
                out.append(TensorBoardLogger(str(folder), name="tensorboard", default_hp_metric=False))
            except ModuleNotFoundError:  # neither tensorboard nor tensorboardX installed
                warnings.warn("TensorBoard logs are off: `pip install tensorboard` to get them", stacklevel=3)
            continue
        if isinstance(spec, str) and "." in spec:
            spec = {"class_path": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("class_path"), str) \
                or not set(spec) <= {"class_path", "init_args"} or not isinstance(spec.get("init_args", {}), dict):
            raise ConfigError(f"{key}: expected csv, tensorboard, or {{class_path: a.Logger, init_args: {{...}}}}, "
                              f"got {spec!r}")
        module_name, _, name = spec["class_path"].rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except ModuleNotFoundError as err:
            raise MissingDependencyError(f"{key}: {spec['class_path']}: module {err.name} is not installed") from None
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(f"{key}: no class {spec['class_path']!r}") from None
        if not (isinstance(cls, type) and issubclass(cls, Logger)):
            raise ConfigError(f"{key}: {spec['class_path']} is not a Lightning logger")
        args = dict(spec.get("init_args") or {})
        params = inspect.signature(cls).parameters
        for where in ("save_dir", "root_dir"):
            if where in params and where not in args:
                args[where] = str(folder)
        try:
            out.append(cls(**args))
        except ModuleNotFoundError as err:
            raise MissingDependencyError(f"{key}: {spec['class_path']} needs {err.name}, which is not installed "
                                         f"(pip install {str(err.name).split('.')[0]})") from None
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{key}: {spec['class_path']}: {_one_line(err)}") from None
    return out


SCHEDULE_KEYS = ("epochs", "max_steps")  # trainer keys a run may be extended in (--resume)


def run_folder(cfg: RunConfig, resume: bool | str | None) -> tuple[Path, bool | str | None]:
    """The folder a run trains in and what it resumes: ``<output_dir>/<run_id>``, or, with
    ``--resume`` (or ``--resume RUN_DIR`` of the same output_dir), the folder of a run whose config
    differs from this one only in its schedule length (`SCHEDULE_KEYS`): the run is extended there.
    A requeued Slurm job resumes its folder's `last` checkpoint without being asked."""
    folder = Path(cfg.output_dir) / cfg.run_id
    if not resume and slurm_requeued() and (folder / "checkpoints" / "last.ckpt").is_file():
        return folder, True
    if resume is True and not (folder / "checkpoints" / "last.ckpt").is_file():
        found = [p for p in sorted(Path(cfg.output_dir).glob("*/checkpoints/last.ckpt"))
                 if _same_but_schedule(p.parent.parent, cfg)]
        if len(found) > 1:
            raise ConfigError(f"--resume: runs {', '.join(p.parent.parent.name for p in found)} in {cfg.output_dir} "
                              f"differ from this config only in their length; name one: --resume RUN_DIR")
        if found:
            return found[0].parent.parent, True
    elif isinstance(resume, (str, Path)) and Path(resume).is_dir() and (Path(resume) / "checkpoints").is_dir():
        given = Path(resume)
        if given.resolve().parent == Path(cfg.output_dir).resolve() and _same_but_schedule(given, cfg):
            return given, True
    return folder, resume


def _same_but_schedule(run_dir: Path, cfg: RunConfig) -> bool:
    """Whether the run in `run_dir` has this config but for `SCHEDULE_KEYS` (its config.yaml)."""
    try:
        tree = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        tree["trainer"].update({k: getattr(cfg.trainer, k) for k in SCHEDULE_KEYS})
        return config_from_dict(tree).run_id == cfg.run_id
    except (OSError, yaml.YAMLError, LssatError, KeyError, TypeError, AttributeError):
        return False  # not a run folder of this lssat, or one it cannot read: not this run


def _quiet() -> None:
    for text in _QUIET:
        warnings.filterwarnings("ignore", message=f".*{re.escape(text)}")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if isinstance(err, LssatError) else f"{type(err).__name__}: {text}".rstrip(": ")


def _resume_path(resume: bool | str | None, ckpt_dir: Path) -> Path | None:
    if not resume:
        if (ckpt_dir / "last.ckpt").exists():
            raise ConfigError(f"run folder {ckpt_dir.parent} already holds checkpoints; pass --resume to "
                              f"continue it, or set output_dir elsewhere")
        return None
    path = ckpt_dir / "last.ckpt" if resume is True else Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt" if (path / "checkpoints").is_dir() else path / "last.ckpt"
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}")
    return path


def _check_resume(path: Path, module: LSSATModule) -> None:
    """Refuse, in one line naming the file, a --resume checkpoint that Lightning could not load:
    truncated, holding Python objects besides tensors, written for another model, or not finite."""
    from lssat.engine.checkpoints import check_finite, read_lightning_checkpoint
    from lssat.models.weights import first_mismatch

    ckpt = read_lightning_checkpoint(path, mmap=True)  # the tensors are mapped, not read
    problem = first_mismatch(ckpt["state_dict"], module.state_dict())
    if problem:
        raise InputError(f"--resume {path}: the checkpoint is of another model than this config builds ({problem})")
    check_finite(ckpt["state_dict"], path)


def env_rank_zero() -> bool:
    """Whether this process is rank 0 by its launcher's environment (Lightning, torchrun, Slurm).

    Before `fit` sets up the processes, the Trainer cannot tell yet: a process that Lightning's
    DDP launcher started says rank 0 until then.
    """
    import os

    keys = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
    return all(os.environ.get(key, "0") == "0" for key in keys)


def _metadata(cfg: RunConfig, recipe: Any, task: Any, model: Any, dm: FaceDataModule,
              run_id: str | None = None) -> dict[str, Any]:
    from lssat import __version__

    return {"run_id": run_id or cfg.run_id, "lssat_version": __version__, "config": cfg.to_dict(), "recipe": recipe.to_dict(),
            "task": task.describe(),
            "norm": {"mean": model.rgb_mean.flatten().tolist(), "std": model.rgb_std.flatten().tolist()},
            "header": {k: v for k, v in dataclasses.asdict(dm.header).items() if k != "info"}}


def train(cfg: RunConfig, resume: bool | str | None = None, *, wait: bool = False) -> RunResult:
    """Train, validate, test and record one run (see the module docstring).

    The run folder is locked while it trains (rank 0 holds the lock): another process on the same
    run raises `lssat.fileio.FolderInUse` naming the holder, or with `wait` waits for it first.
    """
    from lssat.fileio import folder_lock

    folder, resume = run_folder(cfg, resume)
    if not env_rank_zero():
        return _train(cfg, resume, folder)
    with folder_lock(folder, "run folder", wait=wait):
        return _train(cfg, resume, folder)


def _train(cfg: RunConfig, resume: bool | str | None, folder: Path) -> RunResult:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from lssat.models.lssat import count_parameters

    _quiet()
    watch = rec.Stopwatch()
    run_id = folder.name
    ckpt_dir = folder / "checkpoints"
    resume_path = _resume_path(resume, ckpt_dir)
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    dm = RunDataModule(cfg.data)
    dm.setup()
    task = make_task(cfg.task, dm)
    recipe = scheme_recipe(cfg.build_recipe(), cfg.trainer.scheme)
    model = make_model(cfg, task.num_outputs, recipe)
    checkpoints = RunCheckpoints(ckpt_dir, every_validation=cfg.trainer.val_check_interval is not None,
                                 every_n_train_steps=cfg.trainer.checkpoint_every_n_train_steps,
                                 train_time_interval=cfg.trainer.checkpoint_train_time_interval,
                                 slurm=SLURMEnvironment.detect())
    module = LSSATModule(model, task, cfg.trainer, cfg.data.batch_size,
                         _metadata(cfg, recipe, task, model, dm, run_id),
                         checkpoint_hint=str(checkpoints.path("last")))
    if resume_path is not None:
        _check_resume(resume_path, module)
    trainer = build_trainer(cfg, folder, [checkpoints])
    record = rec.new_record(run_id, cfg.to_dict(), cfg.trainer.seed)
    record.update(recipe={**recipe.to_dict(), "label": recipe.label}, task=task.describe(),
                  resumed_from=str(resume_path) if resume_path else None,
                  data={"dataset": dm.header.dataset, "records": {s: len(dm.records(s)) for s in ("train", "val", "test")},
                        "train_subset": len(dm.train_positions), "skipped_images": 0})
    if cfg.trainer.scheme == "supervised" and recipe.name.endswith("/supervised"):
        record["notes"].append("scheme supervised: the recipe's auxiliary branches were not built")
    if run_id != cfg.run_id:
        record["notes"].append(f"extended: this config (run id {cfg.run_id}) differs from the run's first only in "
                               f"its length ({', '.join('trainer.' + k for k in SCHEDULE_KEYS)}); trained on in "
                               f"its folder")
    if env_rank_zero():
        record["attempts"] = rec.earlier_attempts(folder)  # a killed attempt is noted as interrupted
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, folder / "config.yaml")
        (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False), encoding="utf-8")
        rec.write_record(folder, record)
    try:
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=resume_path, weights_only=True)
        except MisconfigurationException as err:
            raise ConfigError(f"trainer: {_one_line(err)}") from None
        if checkpoints.requeued is not None:
            return _requeued(folder, record, checkpoints, trainer, watch)
        tested = "best" if checkpoints.path("best").is_file() else "last"
        ckpt = checkpoints.path(tested)
        if not ckpt.is_file():
            raise ConfigError(f"{folder}: training ended before the first epoch finished; no checkpoint to test "
                              f"(raise trainer.max_steps or trainer.epochs)")
        trainer.test(module, datamodule=dm, ckpt_path=str(ckpt), weights_only=True, verbose=False)
    except BaseException as err:
        if trainer.is_global_zero and env_rank_zero():
            record.update(status="failed", error=_one_line(err), finished=rec.now_iso())
            record["cost"]["wall_time_s"] = watch.seconds
            rec.write_record(folder, record)
        raise
    if trainer.is_global_zero:
        info = _read_json(ckpt.with_suffix(".json"))
        if tested == "last":
            record["notes"].append("no validated epoch improved the headline metric: tested the last checkpoint")
        record["metrics"] = {"val": info.get("val"), "test": module.results.get("test")}
        _log_hparams_with_metrics(trainer, module, record["metrics"])
        record["checkpoint"] = {"tested": tested, "epoch": info.get("epoch"), "step": info.get("step"),
                                "file": str(ckpt.with_suffix(".safetensors"))}
        stats = getattr(module, "train_stats", {"images": 0, "step_time_s": 0.0, "loop_time_s": 0.0})
        memory, kind = rec.peak_memory(module.device)
        record["cost"].update(
            parameters=count_parameters(model), trainable_parameters=count_parameters(model, trainable_only=True),
            flops_per_image=_flops(model, record["notes"]), train_images=stats["images"],
            train_images_per_second=stats["images"] / stats["step_time_s"] if stats["step_time_s"] else None,
            train_loop_images_per_second=stats["images"] / stats["loop_time_s"] if stats["loop_time_s"] else None,
            peak_memory_bytes=memory, peak_memory_kind=kind, wall_time_s=watch.seconds)
        if module.predictions.get("test"):
            record["predictions"] = {"test": rec.write_predictions(folder, "test", module.predictions["test"])}
        record["data"]["skipped_images"] = dm.skipped
        if dm.skipped:
            record["data"]["skipped_paths"] = dm.skipped_paths()[:50]
            record["notes"].append(f"{dm.skipped} unreadable images were skipped (see data.skipped_paths)")
        record["trainer"] = {"precision": str(trainer.precision), "accelerator": type(trainer.accelerator).__name__,
                             "world_size": trainer.world_size, "epochs_completed": trainer.current_epoch,
                             "global_step": trainer.global_step, **getattr(module, "lr_info", {})}
        record.update(status="done", finished=rec.now_iso())
        rec.write_record(folder, record)
    return RunResult(folder, record, trainer.is_global_zero)


def _log_hparams_with_metrics(trainer: L.Trainer, module: LSSATModule, metrics: dict[str, Any]) -> None:
    """TensorBoard's HParams tab shows a run only with metrics beside its hyper-parameters: log them
    once more at the end with the tested checkpoint's validation and test headline
    (``hp/val_<headline>``, ``hp/test_<headline>``; other loggers got them at the start)."""
    import math

    from lightning.pytorch.loggers import TensorBoardLogger

    headline = module.task.headline
    values = {f"hp/{split}_{headline}": float((metrics.get(split) or {}).get(headline, math.nan))
              for split in ("val", "test")}
    values = {k: v for k, v in values.items() if math.isfinite(v)}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger) and values:
            logger.log_hyperparams(module.hparams, metrics=values)
            logger.save()


def _requeued(folder: Path, record: dict[str, Any], checkpoints: RunCheckpoints, trainer: L.Trainer,
              watch: Any) -> RunResult:
    """Slurm's requeue signal stopped training after writing `last`: the record says so (status
    interrupted); the requeued job resumes."""
    step = trainer.global_step
    if trainer.is_global_zero and env_rank_zero():
        record.update(status="interrupted", finished=rec.now_iso(),
                      error=f"requeued: Slurm job {checkpoints.requeued} got signal {checkpoints.requeue_signal} and "
                            f"was requeued at step {step}; {checkpoints.path('last')} holds the run so far")
        record["requeued"] = {"job": checkpoints.requeued, "signal": checkpoints.requeue_signal, "step": step}
        record["cost"]["wall_time_s"] = watch.seconds
        rec.write_record(folder, record)
    return RunResult(folder, record, trainer.is_global_zero)


def _flops(model: Any, notes: list[str]) -> int | None:
    from lssat.models.lssat import flops_per_image

    try:
        return flops_per_image(model)
    except Exception as err:  # counting is best effort; the record says why it is missing
        notes.append(f"FLOPs not counted: {_one_line(err)}")
        return None


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def evaluate(checkpoint: str | Path, index: str | None = None, split: str = "test", *,
             batch_size: int | None = None, num_workers: int | None = None, accelerator: str = "auto",
             progress: bool = True, synthetic: dict[str, Any] | None = None,
             keep_predictions: bool = False, deepfakebench: bool = False) -> dict[str, Any]:
    """Metrics of a checkpoint (.safetensors, .ckpt or run folder) on one split.

    `index`: an index file, "synthetic" (the run's synthetic faces, or the default synthetic set of
    the run's task), or None (the data the run was trained on). `synthetic`: a ``data.synthetic``
    setting to evaluate on instead (e.g. another domain; `index` must then be None).
    `keep_predictions`: also return the per-sample arrays (``predictions``, as
    `lssat.engine.record.write_predictions` takes them). `deepfakebench`: also the deepfake metrics
    as DeepfakeBench defines them (`lssat.metrics.deepfake.deepfakebench_metrics`), under
    ``deepfakebench``.
    """
    from lssat.models.recipe import Recipe, load_recipe

    _quiet()
    state, meta = load_weights(checkpoint)
    if not all(isinstance(meta.get(key), dict) for key in ("config", "recipe", "task")):
        raise InputError(f"{checkpoint}: no lssat run metadata in this checkpoint (was it written by lssat train?)")
    if deepfakebench and meta["task"].get("kind") != "deepfake":
        raise InputError(f"{checkpoint}: --metrics deepfakebench applies to deepfake models; this one is for "
                         f"{meta['task'].get('kind')}")
    tree = meta["config"]
    tree["model"]["pretrained"] = False  # the checkpoint holds the weights; no file or hub needed
    data = dict(tree["data"])
    if synthetic is not None:
        if index is not None:
            raise InputError("evaluate: give an index or a synthetic setting, not both")
        data.update(index=None, data_root=None, synthetic=dict(synthetic))
        index = "synthetic"
    elif index == "synthetic":
        data.update(index=None, data_root=None, synthetic=data.get("synthetic") or {"task": meta["task"]["kind"]})
    elif index is not None:
        data.update(index=str(index), data_root=None, synthetic=None)
    if batch_size is not None:
        data.update(batch_size=batch_size, validation_batch_size=batch_size)
    if num_workers is not None:
        data["num_workers"] = num_workers
    tree.update(data=data, output_dir=".")
    tree["trainer"].update(accelerator=accelerator, progress=progress, limit_test_batches=None)
    cfg = config_from_dict(tree)
    dm = RunDataModule(cfg.data, eval_split=split)
    dm.setup()
    source = index if index not in (None, "synthetic") else f"the {'synthetic' if index else 'training'} data"
    if dm.task != meta["task"].get("kind"):
        raise InputError(f"{source}: a {dm.task} dataset, but {checkpoint} was trained for "
                         f"{meta['task'].get('kind')}")
    task = make_task(cfg.task, dm)
    if task.names != meta["task"].get("names"):
        raise InputError(f"{source}: the data's labels {task.names} differ from those {checkpoint} was trained on "
                         f"{meta['task'].get('names')}")
    recipe = load_recipe(Recipe(), meta["recipe"])
    model = make_model(cfg, task.num_outputs, recipe, norm=meta.get("norm"))
    from lssat.models.weights import first_mismatch

    problem = first_mismatch(state, model.state_dict())
    if problem:
        raise InputError(f"{checkpoint}: weights do not fit the model its metadata describes ({problem})")
    model.load_state_dict(state)
    module = LSSATModule(model, task)
    trainer = build_trainer(cfg, None, [], evaluate=True)
    trainer.test(module, datamodule=dm, verbose=False)
    result = dict(module.results["test"])
    result["notes"] = list(result.get("notes", [])) + ([f"{dm.skipped} unreadable images skipped"] if dm.skipped else [])
    out = {"checkpoint": str(checkpoint), "split": split, "run_id": meta.get("run_id"),
           "epoch": meta.get("epoch"), "step": meta.get("step"), "headline": task.headline,
           "data": dm.header.dataset, "metrics": result}
    if keep_predictions:
        out["predictions"] = module.predictions.get("test") or {}
    if deepfakebench:
        from lssat.metrics.deepfake import deepfakebench_metrics

        rows = module.predictions.get("test") or {}
        out["deepfakebench"] = deepfakebench_metrics(
            rows["score"].reshape(-1), rows["target"].reshape(-1),
            rows["video_id"].tolist() if "video_id" in rows else None) if rows else {}
    return out
