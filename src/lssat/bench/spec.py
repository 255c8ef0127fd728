"""Benchmark specs: a YAML grid of backbones x tasks x recipes x seeds (x training fractions).

A spec names each axis entry by a label and gives it as a *fragment* of the training config (the
engine's config tree); a cell's config is the deep merge of ``base``, then the backbone's, the
task's and the recipe's fragments, then the seed and fraction (see `lssat.bench.adapter`). The
engine validates the result, so the spec format does not depend on its keys.

```yaml
name: default
base: {trainer: {epochs: 2}, data: {image_size: 32}}   # shared by every cell
backbones: {vit-d1: {model: {backbone: vit_tiny_patch16_224}}}
tasks: {deepfake: {kind: deepfake, config: {data: {synthetic: {task: deepfake}}}}}
#   a task may add extra test sets and a generalisation protocol (`lssat.bench.protocols`):
#   eval_sets: {shifted: {synthetic: {task: deepfake, test: 256, options: {domain: shifted}}},
#               celebdf: {index: ${celebdf_index}}}
#   protocol: leave_one_method_out
recipes: [supervised, ssat]          # preset names, or label -> fragment
seeds: [0, 1]
fractions: [1.0]                     # optional: training fractions
settings: {ffpp_index: null}         # values for ${name} placeholders (paths on a cluster)
report: {main_recipe: best}          # report options (see lssat.bench.report)
runner: {threads: 1, materialize_synthetic: true}   # how the local runner trains (not hashed)
```

``runner.threads``: torch intra-op threads while training (null: torch's default); one thread is
much faster for tiny models on a busy CPU. ``runner.materialize_synthetic``: render each
``data.synthetic`` dataset once into ``BENCH_DIR/data/`` and train from those files (the same
images) instead of rendering them again in every cell and epoch. Neither changes a cell's id.

A cell is identified by the hash of its resolved config (`Cell.cell_id`), so a changed setting is a
new cell and an unchanged one is found again on a rerun.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lssat import presets
from lssat.bench import adapter
from lssat.confkit import apply_aliases, check_keys, merge, resolve_alias, set_dotted
from lssat.errors import ConfigError
from lssat.data.index import TASKS as TASK_KINDS

SPEC_KEYS = ("name", "description", "base", "backbones", "tasks", "recipes", "seeds", "fractions",
             "settings", "report", "runner")
RUNNER_KEYS = {"threads": None, "materialize_synthetic": True, "jobs": None}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: its axis labels and its full training config."""

    backbone: str
    task: str
    task_kind: str
    recipe: str
    seed: int
    fraction: float
    config: dict[str, Any] = field(compare=False, hash=False)
    cell_id: str = ""
    label: str = ""
    # extra test sets, name -> {"index": path} or {"synthetic": setting} (`lssat.bench.protocols`);
    # not part of the cell's id: adding one evaluates the trained cell again, it does not retrain it
    eval_sets: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, hash=False)
    protocol: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def axes(self) -> dict[str, Any]:
        """The axis values as plain data (stored beside the run record)."""
        axes = {"backbone": self.backbone, "task": self.task, "task_kind": self.task_kind,
                "recipe": self.recipe, "seed": self.seed, "fraction": self.fraction}
        if self.protocol:  # a generalisation protocol's group: which task it came from, what it held out
            axes["protocol"] = dict(self.protocol)
        return axes


@dataclass
class BenchSpec:
    """A parsed, validated benchmark spec."""

    name: str
    description: str
    base: dict[str, Any]
    backbones: dict[str, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]
    recipes: dict[str, dict[str, Any]]
    seeds: list[int]
    fractions: list[float]
    settings: dict[str, Any]
    report: dict[str, Any]
    runner: dict[str, Any] = field(default_factory=lambda: dict(RUNNER_KEYS))
    source: str = ""

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in a stable order (task, backbone, recipe, fraction, seed)."""
        from lssat.bench import protocols

        out = []
        many_fractions = len(self.fractions) > 1 or self.fractions != [1.0]
        groups = protocols.expand_tasks(self.tasks, self.settings, self.base, f"spec {self.name}")
        for task, backbone, recipe, fraction, seed in itertools.product(
                groups, self.backbones, self.recipes, self.fractions, self.seeds):
            group = groups[task]
            config: dict[str, Any] = {}
            for fragment in (self.base, self.backbones[backbone], group.config, self.recipes[recipe],
                             adapter.axis_fragment(seed=seed, fraction=fraction)):
                config = merge(config, fragment)
            config = substitute(config, self.settings, f"spec {self.name}")
            label = f"{backbone}_{task}_{recipe}_s{seed}" + (f"_f{fraction:g}" if many_fractions else "")
            out.append(Cell(backbone, task, group.kind, recipe, seed, fraction, config,
                            config_hash(config), label, eval_sets=copy.deepcopy(group.eval_sets),
                            protocol=dict(group.protocol)))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (written to the benchmark folder)."""
        return {"name": self.name, "description": self.description, "base": self.base,
                "backbones": self.backbones, "tasks": self.tasks, "recipes": self.recipes,
                "seeds": self.seeds, "fractions": self.fractions, "settings": self.settings,
                "report": self.report, "runner": self.runner}


def substitute(value: Any, settings: Mapping[str, Any], where: str) -> Any:
    """Replace ``${name}`` placeholders in strings by the spec's settings (a missing one is an error)."""
    if isinstance(value, dict):
        return {k: substitute(v, settings, where) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, settings, where) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in _PLACEHOLDER.findall(value):
        if settings.get(name) in (None, ""):
            raise ConfigError(f"{where}: setting {name!r} is not set (give it with --set {name}=VALUE)")
    whole = _PLACEHOLDER.fullmatch(value)
    if whole:  # keep the setting's own type (a number, a list)
        return settings[whole.group(1)]
    return _PLACEHOLDER.sub(lambda m: str(settings[m.group(1)]), value)


def config_hash(config: Mapping[str, Any]) -> str:
    """A short, stable hash of a config (canonical JSON: sorted keys, no whitespace)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def preset_names() -> list[str]:
    """The benchmark presets shipped with lssat."""
    return presets.preset_names("bench")


def read_spec_file(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """The raw mapping of a preset name or a YAML file, and where it came from."""
    data, name, folder = presets.read_preset_or_file(name_or_path, "bench", "benchmark spec")
    return data, (name if folder is not None else f"preset {name}")


def load_spec(name_or_path: str | Path | Mapping[str, Any] = "default",
              settings: Mapping[str, Any] | None = None,
              overrides: Iterable[str] = ()) -> BenchSpec:
    """Read and validate a spec (preset name, YAML path or mapping).

    settings: values for ``${name}`` placeholders, over the spec's own. overrides: ``key=value``
    strings applied to the shared ``base`` config (value parsed as YAML, e.g. ``trainer.epochs=1``).
    """
    if isinstance(name_or_path, Mapping):
        data, where = copy.deepcopy(dict(name_or_path)), "spec"
    else:
        data, where = read_spec_file(name_or_path)
    check_keys(data, SPEC_KEYS, "", noun="key", label=f"benchmark spec {where}")
    name = str(data.get("name") or (Path(str(name_or_path)).stem if not isinstance(name_or_path, Mapping) else "spec"))
    base = _fragment(data.get("base", {}), f"{where}: base")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. trainer.epochs=1")
        set_dotted(base, resolve_alias(key.strip().split(".")), yaml.safe_load(value))
    spec_settings = dict(_mapping(data.get("settings", {}) or {}, f"{where}: settings"))
    _check_settings(settings or {}, {**data, "base": base}, where)
    spec_settings.update(settings or {})
    spec = BenchSpec(
        name=name,
        description=str(data.get("description", "")),
        base=base,
        backbones=_axis(data, "backbones", where),
        tasks=_tasks(data, where),
        recipes=_recipes(data, where),
        seeds=_seeds(data.get("seeds", [0]), where),
        fractions=_fractions(data.get("fractions", [1.0]), where),
        settings=spec_settings,
        report=dict(_mapping(data.get("report", {}) or {}, f"{where}: report")),
        runner=_runner(data.get("runner", {}) or {}, where),
        source=where,
    )
    spec.cells()  # resolve placeholders now, so a missing setting fails before anything runs
    return spec


def placeholders(value: Any) -> list[str]:
    """The ``${name}`` placeholders in a spec's strings, in order of first appearance."""
    if isinstance(value, Mapping):
        found = [name for item in value.values() for name in placeholders(item)]
    elif isinstance(value, list):
        found = [name for item in value for name in placeholders(item)]
    else:
        found = _PLACEHOLDER.findall(value) if isinstance(value, str) else []
    return list(dict.fromkeys(found))


def _check_settings(given: Mapping[str, Any], data: Mapping[str, Any], where: str) -> None:
    """A value given for a placeholder the spec does not have (a misspelt --set) is an error."""
    known = placeholders({k: v for k, v in data.items() if k != "settings"})
    for name in given:
        if name not in known:
            listed = ", ".join(known) if known else "none"
            raise ConfigError(f"--set {name}: benchmark spec {where} has no ${{{name}}} placeholder "
                              f"(its placeholders: {listed})")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {value!r}")
    return copy.deepcopy(dict(value))


def _fragment(value: Any, where: str) -> dict[str, Any]:
    """A training config fragment of the spec, other libraries' key names (timm's ``task.smoothing``,
    `lssat.confkit.ALIASES`) turned into the engine's, so a cell's id does not depend on the spelling."""
    return apply_aliases(_mapping(value, where), where)


def _check_label(label: Any, where: str) -> str:
    if not isinstance(label, str) or not _LABEL.match(label) or "_" in label:
        raise ConfigError(f"{where}: label {label!r} must be letters, digits, '.', '+' or '-' "
                          "(it names run folders; '_' separates the axes)")
    return label


def _axis(data: Mapping[str, Any], key: str, where: str, entry=_fragment) -> dict[str, dict[str, Any]]:
    entries = data.get(key)
    if not isinstance(entries, Mapping) or not entries:
        raise ConfigError(f"benchmark spec {where}: {key} must be a non-empty mapping of label -> config fragment")
    return {_check_label(label, f"{where}: {key}"): entry(fragment or {}, f"{where}: {key}.{label}")
            for label, fragment in entries.items()}


def _tasks(data: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    tasks = _axis(data, "tasks", where, _mapping)  # entries hold a fragment under `config`
    for label, entry in tasks.items():
        check_keys(entry, ("kind", "config", "eval_sets", "protocol"), f"tasks.{label}", noun="key", label=where)
        if entry.get("kind") not in TASK_KINDS:
            raise ConfigError(f"{where}: tasks.{label}.kind must be one of {', '.join(TASK_KINDS)}, "
                              f"got {entry.get('kind')!r}")
        entry["config"] = _fragment(entry.get("config", {}) or {}, f"{where}: tasks.{label}.config")
        from lssat.bench import protocols

        protocols.check_task_entry(entry, f"{where}: tasks.{label}")
    return tasks


def _recipes(data: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    recipes = data.get("recipes", ["supervised"])
    if isinstance(recipes, list) and recipes:
        labels = [_check_label(r, f"{where}: recipes") for r in recipes]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: recipes lists a preset twice")
        return {label: adapter.recipe_fragment(label) for label in labels}
    return _axis(data, "recipes", where)


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in value):
        raise ConfigError(f"{where}: seeds must be a non-empty list of integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: seeds lists a seed twice: {value}")
    return list(value)


def _fractions(value: Any, where: str) -> list[float]:
    ok = isinstance(value, list) and value and all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in value)
    if not ok:
        raise ConfigError(f"{where}: fractions must be a non-empty list of numbers in (0, 1], got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: fractions lists a value twice: {value}")
    return [float(f) for f in value]


def _runner(value: Any, where: str) -> dict[str, Any]:
    data = _mapping(value, f"{where}: runner")
    check_keys(data, list(RUNNER_KEYS), "runner", noun="key", label=where)
    out = {**RUNNER_KEYS, **data}
    threads = out["threads"]
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"{where}: runner.threads must be null or an integer >= 1, got {threads!r}")
    if out["jobs"] is not None:
        from lssat.bench.pool import check_jobs

        check_jobs(out["jobs"], f"{where}: runner.jobs")
    if not isinstance(out["materialize_synthetic"], bool):
        raise ConfigError(f"{where}: runner.materialize_synthetic must be true or false, "
                          f"got {out['materialize_synthetic']!r}")
    return out
