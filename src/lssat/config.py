"""Typed run configuration: a dataclass tree, YAML presets shipped in the package, dotted overrides.

A run config has seven top-level keys::

    name: optional label          output_dir: where run folders go (default "runs")
    task:    TaskConfig           data:    lssat.data.settings.DataConfig
    model:   ModelConfig          recipe:  RecipeConfig (preset name or YAML path + overrides)
    trainer: TrainerConfig

`load_config(sources, overrides)` merges YAML sources in order (a preset name such as
``synthetic-deepfake`` or ``backbones/vit-small``, or a file path; a file may list ``defaults:``
to merge first), applies ``key.sub=value`` overrides (text coerced to the field's type), and builds
the typed tree (merging, dotted keys, timm's key names and the type checks are `lssat.confkit`'s).
Every problem is a one-line ConfigError naming the key. Presets live in
``lssat/configs/{train,tasks,backbones,trainer}``; see docs/training.md for every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lssat import confkit, presets
from lssat.confkit import annotation_at, apply_aliases, build, coerce_text, merge, resolve_alias, set_dotted
from lssat.data.settings import DataConfig
from lssat.errors import ConfigError

PRESET_GROUPS = ("train", "tasks", "backbones", "trainer")
SCHEMES = ("joint", "pretrain-finetune", "supervised")
PRECISIONS = ("auto", "32", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "64-true")
TASK_KINDS = ("deepfake", "attributes", "expression")
# keys that do not change what a run computes, left out of the run id
_NOT_HASHED = ("output_dir", "trainer.progress", "trainer.checkpoint_every_n_train_steps",
               "trainer.checkpoint_train_time_interval", "trainer.loggers")  # none changes the trained weights


@dataclass
class TaskConfig:
    """The primary task. Its kind and label names come from the data; these are the options."""

    kind: str | None = None  # optional check that the data is of this kind
    headline: str | None = None  # metric that picks the best checkpoint (None: the task's default)
    label_smoothing: float | None = 0.1  # SSAT smooths every task by 0.1; null: the task class's (0 unless expression)
    threshold: float = 0.5
    class_weights: str | list[float] | None = None  # expression: "balanced" or one weight per class
    pos_weight: float | list[float] | str | None = None  # deepfake: one number; attributes: one per
    # attribute; or "balanced" / "sqrt-balanced" (negatives / positives on the training split, or its root)
    subgroups: list[str] | None = None  # fairness attributes (None: the index header's)

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in TASK_KINDS:
            raise ConfigError(f"task.kind must be one of {', '.join(TASK_KINDS)}, got {self.kind!r}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"task.label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"task.threshold must lie in (0, 1), got {self.threshold}")
        if isinstance(self.pos_weight, str) and self.pos_weight not in ("balanced", "sqrt-balanced"):
            raise ConfigError(f"task.pos_weight must be 'balanced', 'sqrt-balanced', a number or a list of numbers, "
                              f"got {self.pos_weight!r}")
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise ConfigError(f"task.class_weights must be 'balanced' or a list of numbers, got {self.class_weights!r}")


@dataclass
class ModelConfig:
    """The encoder (a timm model name of a supported family) and its head."""

    backbone: str = "vit_small_patch16_224"
    img_size: int | None = None  # None: data.image_size (they must agree)
    pretrained: bool | str = False  # false | path of a local weights file | "hub" (download, opt-in)
    kwargs: dict[str, Any] = field(default_factory=dict)  # timm architecture overrides
    head_dropout: float = 0.0
    init: str | None = None  # from scratch: "mae" (MAE/SSAT) or "timm"; None: mae unless an HMTL recipe

    def __post_init__(self) -> None:
        if self.init is not None and self.init not in ("mae", "timm"):
            raise ConfigError(f"model.init must be mae, timm or null, got {self.init!r}")
        if self.img_size is not None and self.img_size < 8:
            raise ConfigError(f"model.img_size must be an integer >= 8, got {self.img_size}")
        if self.pretrained is True:
            raise ConfigError("model.pretrained: true is ambiguous; give a local weights file, "
                              "or 'hub' to download from the model hub (explicit opt-in)")
        if isinstance(self.pretrained, str) and self.pretrained != "hub":
            if not Path(self.pretrained).expanduser().is_file():
                raise ConfigError(f"model.pretrained: weights file {self.pretrained!r} not found")
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"model.head_dropout must lie in [0, 1), got {self.head_dropout}")
        from lssat.models.backbones import family_of

        family_of(self.backbone)  # ConfigError naming the supported families


@dataclass
class RecipeConfig:
    """A recipe preset name (see `lssat.models.recipe.preset_names`) or YAML path, plus overrides."""

    name: str = "lssat-ldp"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainerConfig:
    """Optimisation, precision, devices, scheme, validation and logging (METHOD.md section 2)."""

    epochs: int = 100
    max_steps: int | None = None  # when set, replaces epochs as the length of the run
    base_lr: float = 1e-3  # peak lr = base_lr x global batch / 256
    lr: float | None = None  # an absolute peak lr instead of the scaled base_lr
    min_lr: float = 1e-6
    warmup_epochs: float = 5.0
    warmup_steps: int | None = None  # overrides warmup_epochs
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    precision: str = "auto"  # auto: bf16-mixed (or 16-mixed) on a GPU that supports it, else 32
    gradient_clip: float | None = None  # max gradient norm
    accumulate_grad_batches: int = 1
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    seed: int = 0
    deterministic: bool = False
    scheme: str = "joint"
    pretrain_epochs: int | None = None  # pretrain-finetune: epochs of stage 1
    finetune_aux: bool = False  # pretrain-finetune: keep the auxiliary losses in stage 2
    layer_decay: float | None = None  # timm's layer-wise lr decay over the whole run (joint, supervised)
    finetune_layer_decay: float | None = 0.75  # pretrain-finetune: layer-wise lr decay of stage 2 (MAE)
    finetune_drop_path: float = 0.1  # pretrain-finetune: drop path (stochastic depth) of stage 2 only (MAE)
    val_every: int = 1  # validate every N epochs
    val_check_interval: int | None = None  # validate (and checkpoint) every N training steps instead
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_test_batches: int | float | None = None
    log_every: int = 50
    sanity_val_steps: int = 0
    progress: bool = True
    # pre-emption: also write the full `last` checkpoint every N training steps, or every this many
    # seconds of training (Lightning's ModelCheckpoint every_n_train_steps / train_time_interval)
    checkpoint_every_n_train_steps: int | None = None
    checkpoint_train_time_interval: float | None = None
    loggers: list[Any] = field(default_factory=lambda: ["csv", "tensorboard"])  # names or {class_path, init_args}

    def __post_init__(self) -> None:
        for key in ("epochs", "accumulate_grad_batches", "num_nodes", "val_every", "log_every"):
            _at_least(f"trainer.{key}", getattr(self, key), 1)
        for key, low in (("max_steps", 1), ("warmup_steps", 0), ("pretrain_epochs", 1), ("val_check_interval", 1)):
            if getattr(self, key) is not None:
                _at_least(f"trainer.{key}", getattr(self, key), low)
        _at_least("trainer.sanity_val_steps", self.sanity_val_steps, 0)
        if self.checkpoint_every_n_train_steps is not None:
            _at_least("trainer.checkpoint_every_n_train_steps", self.checkpoint_every_n_train_steps, 1)
        if self.checkpoint_train_time_interval is not None:
            if self.checkpoint_train_time_interval <= 0:
                raise ConfigError(f"trainer.checkpoint_train_time_interval must be > 0 seconds, got "
                                  f"{self.checkpoint_train_time_interval}")
            if self.checkpoint_every_n_train_steps is not None:
                raise ConfigError("trainer.checkpoint_every_n_train_steps and trainer.checkpoint_train_time_interval "
                                  "are exclusive (Lightning's ModelCheckpoint takes one); set one of them")
        for key in ("base_lr", "min_lr", "weight_decay", "warmup_epochs"):
            _at_least(f"trainer.{key}", getattr(self, key), 0.0)
        for key in ("layer_decay", "finetune_layer_decay"):
            value = getattr(self, key)
            if value is not None and not 0 < value <= 1:
                raise ConfigError(f"trainer.{key} must lie in (0, 1] (or null for none), got {value}")
        if not 0 <= self.finetune_drop_path < 1:
            raise ConfigError(f"trainer.finetune_drop_path must lie in [0, 1), got {self.finetune_drop_path}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"trainer.lr must be > 0, got {self.lr}")
        if self.gradient_clip is not None and self.gradient_clip <= 0:
            raise ConfigError(f"trainer.gradient_clip must be > 0 (or null for none), got {self.gradient_clip}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"trainer.betas must be two numbers in [0, 1), got {list(self.betas)}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        _check_devices(self.devices)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.scheme not in SCHEMES:
            raise ConfigError(f"trainer.scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            value = getattr(self, key)
            if value is not None and (value < 0 or (isinstance(value, float) and value > 1)):
                raise ConfigError(f"trainer.{key} must be a batch count >= 0 or a fraction in [0, 1], got {value}")
        if self.scheme == "pretrain-finetune" and self.pretrain_epochs is None:
            raise ConfigError("trainer.pretrain_epochs is required with scheme pretrain-finetune")
        if self.val_check_interval is not None and self.scheme == "pretrain-finetune":
            raise ConfigError("trainer.val_check_interval (validation by steps) does not combine with scheme "
                              "pretrain-finetune, whose stages are epochs; use trainer.val_every")
        if self.scheme == "pretrain-finetune" and self.max_steps is None:
            if self.pretrain_epochs >= self.epochs:
                raise ConfigError(f"trainer.pretrain_epochs ({self.pretrain_epochs}) leaves no fine-tuning "
                                  f"epoch of trainer.epochs ({self.epochs})")


@dataclass
class RunConfig:
    """The whole configuration of one training run."""

    # metadata "help": the key's line in `lssat train --help` (`keys_help`)
    name: str | None = field(default=None, metadata={"help": "an optional label of the run"})
    output_dir: str = field(default="runs", metadata={"help": "the folder run folders go in (not in the run id)"})
    task: TaskConfig = field(default_factory=TaskConfig, metadata={
        "help": "the primary task: kind check, headline metric, label smoothing, class weights"})
    data: DataConfig | None = field(default=None, metadata={
        "help": "data.index (an index file) or data.synthetic, image size, batches, augmentation"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={
        "help": "the encoder (a timm model name), its initialisation and its head"})
    recipe: RecipeConfig = field(default_factory=RecipeConfig, metadata={
        "help": "what is masked, reconstructed, classified: a recipe preset or file, plus overrides"})
    trainer: TrainerConfig = field(default_factory=TrainerConfig, metadata={
        "help": "optimisation, precision, devices, scheme, validation, checkpoints and logging"})

    def __post_init__(self) -> None:
        if self.data is None:
            raise ConfigError("data: missing; give data.index (an index file) or data.synthetic")
        if self.model.img_size is None:
            self.model.img_size = self.data.image_size
        elif self.model.img_size != self.data.image_size:
            raise ConfigError(f"model.img_size ({self.model.img_size}) differs from data.image_size "
                              f"({self.data.image_size}); set one of them")
        syn = self.data.synthetic
        if self.task.kind is not None and syn is not None and syn.task != self.task.kind:
            raise ConfigError(f"task.kind is {self.task.kind!r} but data.synthetic.task is {syn.task!r}")
        self.build_recipe()  # validates name and overrides

    def build_recipe(self) -> Any:
        """The Recipe this config names, with its overrides applied."""
        from lssat.models.recipe import load_recipe

        return load_recipe(self.recipe.name, self.recipe.overrides)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (YAML/JSON ready, tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    @property
    def run_id(self) -> str:
        """A short hash of the resolved config (output_dir and trainer.progress left out)."""
        data = self.to_dict()
        for dotted in _NOT_HASHED:
            *parents, last = dotted.split(".")
            node = data
            for p in parents:
                node = node[p]
            node.pop(last, None)
        if not data["data"]["sbi"]["enabled"]:  # off (the default): the run ids of configs from before it stay
            data["data"].pop("sbi")
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


# what Lightning takes as `devices`: auto, a count (-1: all), or device indices "0,1" / [0, 1]
_DEVICES = re.compile(r"^(auto|-1|\d+|\d+(,\d+)*,?)$")


def _check_devices(devices: Any) -> None:
    if isinstance(devices, str):
        ok = bool(_DEVICES.match(devices.strip()))
    elif isinstance(devices, list):
        ok = bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    else:
        ok = devices >= -1
    if not ok:
        raise ConfigError(f"trainer.devices must be auto, a device count (-1 for all), or device indices such as "
                          f"[0, 1] or \"0,1\", got {devices!r}")


def _check_finite(value: Any, key: str) -> None:
    """A ConfigError naming the first nan or infinite number in a config tree."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key or 'config'}: expected a finite number, got {value}")
    if isinstance(value, Mapping):
        for sub, item in value.items():
            _check_finite(item, f"{key}.{sub}" if key else str(sub))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(item, f"{key}[{i}]")


def _at_least(key: str, value: Any, low: float) -> None:
    if value < low:
        raise ConfigError(f"{key} must be >= {low}, got {value}")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# --------------------------------------------------------------------------- sources

def preset_names(group: str = "train") -> list[str]:
    """Names of the presets of one group shipped with lssat."""
    return presets.preset_names(group)


def keys_help(width: int = 100) -> str:
    """The shipped presets of each group and the top-level keys with one line each (their field's
    "help"), and the other libraries' key names accepted: the epilog of `lssat train --help`."""
    import textwrap
    import typing

    hints = typing.get_type_hints(RunConfig)
    lines = ["presets (--config NAME; of another group: GROUP/NAME):"]
    for group in PRESET_GROUPS:
        names = [n if group == "train" else f"{group}/{n}" for n in preset_names(group)]
        lines += textwrap.wrap(", ".join(names), width, initial_indent=f"  {group + ':':<12}",
                               subsequent_indent=" " * 14, break_on_hyphens=False)
    from lssat.models.recipe import preset_names as recipe_names

    lines += textwrap.wrap(", ".join(recipe_names()), width, initial_indent=f"  {'recipe=':<12}",
                           subsequent_indent=" " * 14, break_on_hyphens=False)
    lines += ["", "top-level keys (override any key below them as KEY.SUB=VALUE; every key: docs/training.md):"]
    for f in dataclasses.fields(RunConfig):
        section = confkit.section_class(hints[f.name])
        sub = f" ({len(dataclasses.fields(section))} keys)" if section is not None else ""
        lines.append(f"  {f.name:<12}{f.metadata.get('help', '')}{sub}")
    lines += ["", "other libraries' names accepted for keys (turned into the key; the run id is the same):"]
    lines += [f"  {alias} = {target}" for alias, target in confkit.ALIASES.items()]
    return "\n".join(lines)


def _read_source(source: str | Path, base: Path | None) -> tuple[dict[str, Any], Path | None, str]:
    """The mapping of a preset or file, the folder its relative `defaults` resolve against, its name.

    Presets of other groups are named `GROUP/NAME` (e.g. `trainer/smoke`); files named relative to
    `base` (the including file's folder) are found there first.
    """
    text_source = str(source)
    path = Path(text_source).expanduser()
    if base is not None and not path.is_absolute() and (base / path).is_file():
        path = base / path
    if path.is_file() or path.suffix in (".yaml", ".yml"):
        data, name, folder = presets.read_preset_or_file(path, "train", "config")
        return data, folder, name
    group, _, preset = text_source.rpartition("/")
    group = group or "train"
    text = presets.preset_text(group, preset) if group in PRESET_GROUPS else None
    if text is None:
        known = ", ".join(n if g == "train" else f"{g}/{n}" for g in PRESET_GROUPS for n in preset_names(g))
        raise ConfigError(f"config {text_source!r}: no such file or preset; presets: {known}")
    name = f"{group}/{preset}"
    return presets.parse_mapping(text, f"config {name}"), None, name


_REPLACED = ("kwargs",)  # a model's keyword arguments are one setting: a later source replaces them whole


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Shorthand: `recipe: NAME` means recipe.name."""
    if isinstance(data.get("recipe"), str):
        data["recipe"] = {"name": data["recipe"]}
    return data


def _load_tree(source: str | Path, base: Path | None, seen: tuple[str, ...]) -> dict[str, Any]:
    data, folder, name = _read_source(source, base)
    if name in seen:
        raise ConfigError(f"config {name}: its defaults include itself ({' -> '.join(seen + (name,))})")
    defaults = data.pop("defaults", None) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list):
        raise ConfigError(f"config {name}: defaults must be a list of presets or files, got {defaults!r}")
    tree: dict[str, Any] = {}
    for item in defaults:
        tree = merge(tree, _load_tree(item, folder, seen + (name,)), replace=_REPLACED)
    return merge(tree, apply_aliases(_normalise(data), f"config {name}"), replace=_REPLACED)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`key.sub=value` -> (path, typed value); ConfigError for a malformed item or unknown key."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    path = resolve_alias(key.split("."))
    if path == ["recipe"]:
        return ["recipe", "name"], text
    return path, coerce_text(text, annotation_at(RunConfig, path), key)


def load_config(sources: str | Path | Sequence[str | Path], overrides: Sequence[str] = ()) -> RunConfig:
    """Merge presets/files in order, apply `key=value` overrides, build and validate the config."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    tree: dict[str, Any] = {}
    for source in sources:
        tree = merge(tree, _load_tree(source, None, ()), replace=_REPLACED)
    spelt: dict[str, str] = {}  # internal key -> how the overrides spelt it
    for item in overrides:
        path, value = parse_override(item)
        given, dotted = item.partition("=")[0].strip(), ".".join(path)
        if spelt.setdefault(dotted, given) != given:
            raise ConfigError(f"overrides {spelt[dotted]} and {given} both given (both set {dotted}); keep one")
        set_dotted(tree, path, value)
    return config_from_dict(tree)


def config_from_dict(tree: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from a plain mapping (e.g. a run folder's config.yaml)."""
    tree = apply_aliases(_normalise(dict(tree)), "config")
    task, data = tree.get("task") or {}, tree.get("data")
    if isinstance(task, Mapping) and isinstance(data, Mapping) and isinstance(data.get("synthetic"), Mapping):
        if task.get("kind") and "task" not in data["synthetic"]:
            tree["data"] = {**data, "synthetic": {**data["synthetic"], "task": task["kind"]}}
    if tree.get("data") is None:
        raise ConfigError("data: missing; give data.index (an index file) or data.synthetic")
    _check_finite(tree, "")
    return build(RunConfig, tree, "", builders={DataConfig: DataConfig.from_dict})  # validates itself


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (readable back with `load_config`)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
