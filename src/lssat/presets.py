"""YAML presets shipped inside the package (`src/lssat/configs/<group>/<name>.yaml`) and YAML files.

Recipes, training configs and benchmark specs all accept either a preset name or a path to a YAML
file; this module is the one place that tells them apart, reads them and reports mistakes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lssat.errors import ConfigError


def preset_names(group: str) -> list[str]:
    """Names of the presets of one group (a folder under `lssat/configs/`)."""
    folder = resources.files("lssat") / "configs" / group
    if not folder.is_dir():
        return []
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(group: str, name: str) -> str | None:
    """The YAML text of a preset, or None when the group has no such preset."""
    resource = resources.files("lssat") / "configs" / group / f"{name}.yaml"
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


def parse_mapping(text: str, what: str) -> dict[str, Any]:
    """Parse YAML that must hold a mapping; `what` names the source in the one-line error."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{what}: invalid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a mapping at the top level")
    return data


def read_preset_or_file(name_or_path: str | Path, group: str, what: str) -> tuple[dict[str, Any], str, Path | None]:
    """The mapping of a YAML file or of a preset of `group`, its name, and its folder (None: preset).

    A value with a .yaml/.yml suffix, or naming an existing file, is a file; anything else a preset.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return parse_mapping(path.read_text(encoding="utf-8"), f"{what} {path}"), str(path), path.parent
    if path.suffix in (".yaml", ".yml"):
        raise ConfigError(f"{what} file {text!r}: not found")
    preset = preset_text(group, text)
    if preset is None:
        raise ConfigError(f"{what} {text!r}: no such preset; presets: {', '.join(preset_names(group))}")
    return parse_mapping(preset, f"{what} {text}"), text, None
