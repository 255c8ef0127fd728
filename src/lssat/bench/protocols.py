"""Generalisation protocols of a benchmark spec: extra test sets and leave-one-method-out.

A task entry of a spec may add::

    tasks:
      deepfake:
        kind: deepfake
        config: {data: {synthetic: {task: deepfake, train: 2048, val: 256, test: 512}}}
        eval_sets:                      # extra test sets, evaluated after training
          shifted: {synthetic: {options: {domain: shifted}}}
          celebdf: {index: ${celebdf_index}}
        protocol: leave_one_method_out  # or {name: leave_one_method_out, methods: [Deepfakes, FaceSwap]}

``eval_sets``: each trained cell of the task is evaluated on each set with the checkpoint its own
test used (the best on validation), through the engine's evaluation (`lssat.engine.run.evaluate`,
what ``lssat eval`` runs), on the set's test split. A set is an index file (``index``) or a
synthetic setting (``synthetic``: merged over the task's own ``data.synthetic``, so
``{options: {domain: shifted}}`` is the task's data in the shifted domain; its train and val splits
are not rendered). The results go into the cell's run record and the results store under
``record.eval_sets.<name>``: metrics, the per-sample predictions' file and a hash of the set's
definition. The sets are not part of a cell's id: adding one (or changing one) evaluates the
finished cells on the next ``lssat bench`` run without retraining them.

``protocol: leave_one_method_out`` (deepfake tasks on the built-in synthetic faces): besides the
task itself (trained on every method), one group of cells per manipulation method *M*, labelled
``<task>-lomo-<M>``: trained on the real videos and the other methods' fakes, tested on the same
(its in-domain test split) and on the real videos plus *M*'s fakes only (the eval set
``heldout``), and on the task's ``eval_sets``. An index-based task cannot use it yet (its records
would have to be filtered by method; a ConfigError says so).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lssat.confkit import check_keys, merge
from lssat.errors import ConfigError

LOMO = "leave_one_method_out"
PROTOCOLS = (LOMO,)
HELDOUT = "heldout"  # the eval set of a leave-one-method-out group: reals + the held-out method's fakes
RESERVED = ("test", "val", "train")
_EVAL_KEYS = ("index", "synthetic")


@dataclass
class TaskGroup:
    """One group of cells of a task: its kind, config fragment, eval sets and protocol role."""

    kind: str
    config: dict[str, Any]
    eval_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)


def _protocol(entry: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    value = entry.get("protocol")
    if value is None:
        return None
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}.protocol must be a protocol name or a mapping, got {value!r}")
    check_keys(value, ("name", "methods"), "protocol", noun="key", label=where)
    if value.get("name") not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol must be one of {', '.join(PROTOCOLS)}, got {value.get('name')!r}")
    methods = value.get("methods")
    if methods is not None and (not isinstance(methods, list) or len(methods) < 2
                                or not all(isinstance(m, str) for m in methods) or len(set(methods)) != len(methods)):
        raise ConfigError(f"{where}.protocol.methods must list two or more distinct method names, got {methods!r}")
    return dict(value)


def check_task_entry(entry: Mapping[str, Any], where: str) -> None:
    """Validate a task entry's ``eval_sets`` and ``protocol`` (a ConfigError naming the key)."""
    from lssat.bench.spec import _check_label

    sets = entry.get("eval_sets")
    if sets is not None:
        if not isinstance(sets, Mapping):
            raise ConfigError(f"{where}.eval_sets must be a mapping of name -> test set, got {sets!r}")
        for name, definition in sets.items():
            _check_label(name, f"{where}.eval_sets")
            if name in RESERVED or name == HELDOUT:
                raise ConfigError(f"{where}.eval_sets: the name {name!r} is reserved (the task's own splits, "
                                  "and the held-out method of leave_one_method_out)")
            if not isinstance(definition, Mapping) or len(set(definition) & set(_EVAL_KEYS)) != 1 \
                    or set(definition) - set(_EVAL_KEYS):
                raise ConfigError(f"{where}.eval_sets.{name} must be {{index: PATH}} or {{synthetic: SETTING}}, "
                                  f"got {definition!r}")
            if "synthetic" in definition and not isinstance(definition["synthetic"], Mapping):
                raise ConfigError(f"{where}.eval_sets.{name}.synthetic must be a mapping, got "
                                  f"{definition['synthetic']!r}")
    protocol = _protocol(entry, where)
    if protocol and entry.get("kind") != "deepfake":
        raise ConfigError(f"{where}.protocol {protocol['name']}: only deepfake tasks have manipulation methods, "
                          f"this task is {entry.get('kind')!r}")


def _synthetic_of(base: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any] | None:
    data = merge((base or {}).get("data") or {}, (entry.get("config") or {}).get("data") or {})
    syn = data.get("synthetic")
    return copy.deepcopy(dict(syn)) if isinstance(syn, Mapping) else None


def eval_synthetic(task_synthetic: Mapping[str, Any] | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """An eval set's synthetic setting: `given` merged over the task's own, test split only."""
    out = merge(copy.deepcopy(dict(task_synthetic or {})), given)
    out.setdefault("test", 200)
    given_options = given.get("options") or {}
    if "methods" not in given_options:  # every method, whatever a protocol group trained on
        (out.get("options") or {}).pop("methods", None)
    out.update(train=1, val=0)  # the engine's data module wants a train split; it is never read
    return out


def expand_tasks(tasks: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any],
                 base: Mapping[str, Any], where: str) -> dict[str, TaskGroup]:
    """The task groups of a spec's tasks: each task, plus its protocol's groups (module docstring)."""
    from lssat.bench.spec import substitute

    groups: dict[str, TaskGroup] = {}
    for label, entry in tasks.items():
        syn = _synthetic_of(base, entry)
        sets: dict[str, dict[str, Any]] = {}
        for name, definition in (entry.get("eval_sets") or {}).items():
            definition = substitute(copy.deepcopy(dict(definition)), settings, f"{where}: tasks.{label}.eval_sets")
            if "synthetic" in definition:
                definition = {"synthetic": eval_synthetic(syn, definition["synthetic"])}
            else:
                definition = {"index": str(definition["index"])}
            sets[name] = definition
        protocol = _protocol(entry, f"{where}: tasks.{label}")
        config = copy.deepcopy(dict(entry.get("config") or {}))
        if not protocol:
            groups[label] = TaskGroup(entry["kind"], config, sets)
            continue
        if syn is None:
            raise ConfigError(f"{where}: tasks.{label}.protocol {LOMO} needs data.synthetic (index-based "
                              "datasets would need their records filtered by method: not supported yet)")
        from lssat.data.synthetic.deepfakes import METHODS

        methods = list(protocol.get("methods") or (syn.get("options") or {}).get("methods") or METHODS)
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"{where}: tasks.{label}.protocol.methods: unknown method {unknown[0]!r} "
                              f"(the synthetic methods: {', '.join(METHODS)})")
        everything = {"name": LOMO, "task": label, "held_out": None, "trained_on": methods}
        full = merge(copy.deepcopy(config), {"data": {"synthetic": {"options": {"methods": methods}}}})
        groups[label] = TaskGroup(entry["kind"], full if protocol.get("methods") else config, sets, everything)
        for held in methods:
            others = [m for m in methods if m != held]
            fragment = merge(copy.deepcopy(config), {"data": {"synthetic": {"options": {"methods": others}}}})
            heldout = {"synthetic": eval_synthetic(syn, {"options": {"methods": [held]}})}
            groups[f"{label}-lomo-{held}"] = TaskGroup(
                entry["kind"], fragment, {HELDOUT: heldout, **sets},
                {"name": LOMO, "task": label, "held_out": held, "trained_on": others})
    return groups
