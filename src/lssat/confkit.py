"""The one config engine: merge, dotted keys, key aliases, unknown keys, and typed dataclass building.

Run configs (`lssat.config`), recipes (`lssat.models.recipe`), data settings (`lssat.data.settings`)
and benchmark specs (`lssat.bench.spec`) all merge, set and check their keys through this module,
so every one of them answers a mistake with the same one-line ConfigError::

    unknown config key 'trainer.epoch'; valid keys under trainer: epochs, ...; did you mean 'trainer.epochs'?

It depends on the standard library, PyYAML and `lssat.errors` only (no torch), so any module may use it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from lssat.errors import ConfigError

#: Other libraries' names for run config keys (alias -> the internal dotted key), accepted in YAML
#: files, mappings and `key=value` overrides and turned into the internal key when a config is
#: loaded, so run ids do not depend on the spelling. One line per alias.
ALIASES: dict[str, str] = {
    "task.smoothing": "task.label_smoothing",  # timm's --smoothing
    "data.augment.crop_pct": "data.augment.eval_crop_fraction",  # timm's crop_pct
}


# --------------------------------------------------------------------------- keys

def unknown_key_error(where: str, key: str, known: Sequence[str], *, noun: str = "config key",
                      label: str = "") -> ConfigError:
    """The one-line error for an unknown key, with a "did you mean" suggestion when one is close.

    where: the section holding the key, as a dotted path ('' at the top); key: the key as given,
    dotted from the top (``trainer.epoch``; it may go on below the unknown part). label: what the
    tree is when it is not a run config (``recipe ssat``, ``benchmark spec x.yaml``); noun: what
    its keys are called (``field``, ``key``).
    """
    parts = key.split(".")
    depth = len(where.split(".")) if where else 0
    name = parts[depth] if len(parts) > depth else key
    plural = noun.split()[-1] + "s"
    message = (f"{label + ': ' if label else ''}unknown {noun} {key!r}; valid {plural}"
               f"{' under ' + where if where else ''}: {', '.join(map(str, known))}")
    lowered = {str(k).lower(): str(k) for k in known}  # 'lbp_p' is 'lbp_P' mistyped, not 'lbp_R'
    close = [lowered[k] for k in difflib.get_close_matches(name.lower(), list(lowered), n=1)]
    if close:
        message += f"; did you mean {'.'.join(parts[:depth] + close + parts[depth + 1:])!r}?"
    return ConfigError(message)


def check_keys(data: Mapping[str, Any], known: Sequence[str], where: str, *, noun: str = "config key",
               label: str = "") -> None:
    """Raise `unknown_key_error` for the first (sorted) key of `data` that is not in `known`."""
    unknown = sorted(set(map(str, data)) - set(known))
    if unknown:
        raise unknown_key_error(where, f"{where}.{unknown[0]}" if where else unknown[0], known, noun=noun,
                                label=label)


def field_names(cls: type) -> list[str]:
    """The field names of a dataclass, in order."""
    return [f.name for f in dataclasses.fields(cls)]


# --------------------------------------------------------------------------- trees

def merge(base: Mapping[str, Any], top: Mapping[str, Any], *, replace: Sequence[str] = ()) -> dict[str, Any]:
    """`top` over `base`, as a new dict: mappings merge key by key, anything else replaces.

    A mapping under a key named in `replace` (e.g. ``kwargs``: a model's keyword arguments are one
    setting) replaces the one below it instead of merging with it. `top`'s values are copied, so
    the result shares no mutable value with it.
    """
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in replace:
            out[key] = merge(out[key], value, replace=replace)
        else:
            out[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return out


def set_dotted(tree: dict[str, Any], dotted: str | Sequence[str], value: Any, *, where: str = "override") -> None:
    """Set ``a.b.c = value`` in a nested dict in place, creating the mappings on the way (a null
    one becomes a mapping); ConfigError when one on the way is a plain value."""
    path = dotted.split(".") if isinstance(dotted, str) else list(dotted)
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None or isinstance(child, Mapping):
            child = {} if child is None else (child if isinstance(child, dict) else dict(child))
            node[part] = child
        else:
            raise ConfigError(f"{where} {'.'.join(path)}: {part!r} is not a mapping")
        node = child
    node[path[-1]] = value


def resolve_alias(path: Sequence[str], aliases: Mapping[str, str] = ALIASES) -> list[str]:
    """A dotted key path with an alias (at its start) replaced by the key it stands for."""
    for alias, target in aliases.items():
        head = alias.split(".")
        if list(path[:len(head)]) == head:
            return target.split(".") + list(path[len(head):])
    return list(path)


def apply_aliases(tree: Mapping[str, Any], where: str, aliases: Mapping[str, str] = ALIASES) -> dict[str, Any]:
    """A copy of a config tree with every alias key moved to the key it stands for; ConfigError
    naming both when a mapping gives both (`where` names the source)."""
    out = dict(tree)
    for alias, target in aliases.items():
        *parents, name = alias.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping) or name not in node:
            continue
        target_parts = target.split(".")
        if target_parts[:-1] == parents and target_parts[-1] in node:
            raise ConfigError(f"{where}: {alias} and {target} both given ({alias} is another name for {target}); "
                              "keep one")
        section = _detach(out, parents)
        value = section.pop(name)
        set_dotted(out, target_parts, value, where=f"{where}: {alias} is {target}, but")
    return out


def _detach(tree: dict[str, Any], parents: Sequence[str]) -> dict[str, Any]:
    """The mapping at `parents`, copied on the way down so the caller's tree is left unchanged."""
    node = tree
    for part in parents:
        node[part] = dict(node[part])
        node = node[part]
    return node


# --------------------------------------------------------------------------- types

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               type(None): "null", list: "a list", tuple: "a list", dict: "a mapping"}


def _options(annotation: Any) -> list[Any]:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return list(typing.get_args(annotation)) if union else [annotation]


def describe(annotation: Any) -> str:
    """An annotation in words: ``int | None`` -> "an integer or null"."""
    bases = [typing.get_origin(o) or o for o in _options(annotation)]
    return " or ".join(dict.fromkeys(_TYPE_WORDS.get(b, getattr(b, "__name__", str(b))) for b in bases))


def fits(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Whether `value` is of the annotated type, and the value normalised (int -> float, list -> tuple)."""
    if annotation is Any:
        return True, value
    for option in _options(annotation):
        base = typing.get_origin(option) or option
        args = typing.get_args(option)
        if option is type(None) and value is None:
            return True, None
        if base is bool and isinstance(value, bool):
            return True, value
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if base is float and isinstance(value, str) and _FLOAT.match(value):
            return True, float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if base is str and isinstance(value, str):
            return True, value
        if base in (list, tuple) and isinstance(value, (list, tuple)):
            checked = [fits(item, args[0] if args else Any) for item in value]
            if all(ok for ok, _ in checked):
                items = [item for _, item in checked]
                return True, tuple(items) if base is tuple else items
        if base is dict and isinstance(value, Mapping):
            return True, dict(value)
        if dataclasses.is_dataclass(base) and isinstance(value, (Mapping, base)):
            return True, value
    return False, value


def section_class(annotation: Any) -> type | None:
    """The dataclass an annotation names (``TaskConfig``, ``DataConfig | None``), or None."""
    for option in _options(annotation):
        if dataclasses.is_dataclass(option):
            return option
    return None


def build(cls: type, data: Any, prefix: str = "",
          builders: Mapping[type, Callable[[Mapping[str, Any]], Any]] | None = None) -> Any:
    """A dataclass from a mapping, every value checked against its field's type, nested sections
    built the same way. `builders`: sections that build (and validate) themselves from their mapping.
    ConfigError naming the dotted key (under `prefix`) for an unknown key or a value of the wrong type."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping of settings, got {data!r}")
    check_keys(data, field_names(cls), prefix)
    if builders and cls in builders:
        return builders[cls](data)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        section = section_class(hints[key])
        if section is not None and (value is not None or type(None) not in _options(hints[key])):
            kwargs[key] = build(section, value, dotted, builders)
            continue
        ok, value = fits(value, hints[key])
        if not ok:
            raise ConfigError(f"{dotted}: expected {describe(hints[key])}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def annotation_at(cls: type, path: Sequence[str]) -> Any:
    """The type annotation of a dotted key below dataclass `cls` (Any inside free-form mappings);
    `unknown_key_error` for a key that is not there."""
    node: Any = cls
    for i, part in enumerate(path):
        section = section_class(node) if node is not Any else None
        if section is None:
            return Any  # inside a dict[str, Any] (model.kwargs, recipe.overrides, ...)
        hints = typing.get_type_hints(section)
        if part not in hints:
            raise unknown_key_error(".".join(path[:i]), ".".join(path), list(hints))
        node = hints[part]
    return node


def coerce_text(text: str, annotation: Any, key: str) -> Any:
    """Command-line text as a value of the annotated type (YAML syntax for numbers, lists, null)."""
    try:
        parsed = yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        parsed = text
    ok, value = fits(parsed, annotation)
    if ok:
        return value
    if str in [typing.get_origin(o) or o for o in _options(annotation)]:
        return text  # e.g. a file name that YAML reads as a number
    if annotation is Any:
        return parsed
    raise ConfigError(f"{key}: expected {describe(annotation)}, got {text!r}")
