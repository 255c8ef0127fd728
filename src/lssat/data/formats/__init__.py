"""Dataset importers: each turns a dataset in its native layout into index records.

One module per format in this package, each exposing::

    NAME: str                                   # the FORMAT word of `lssat index FORMAT ROOT`
    HELP: str                                   # one line for `lssat index --help`
    def add_arguments(parser) -> None           # its own options (may add none)
    def build_index(root: Path, options: argparse.Namespace) -> ImportResult

Optionally `CREATES_ROOT = True` for a format that makes its data (synthetic): its ROOT need not
exist yet. `header.root` may be absolute or relative to ROOT; `lssat index` stores it relative to
the index file's folder. Keep heavy imports inside functions: `lssat index --help` imports every
format module.

`build_index` never writes the index itself; `lssat index` validates and writes it, then prints the
counts and what was skipped. Importers raise `lssat.errors.DataError` for a layout they cannot read.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType

from lssat.data.index import IndexHeader, Record
from lssat.errors import ConfigError


@dataclass
class ImportResult:
    """An importer's output: the index header, its records, and what it skipped and why."""

    header: IndexHeader
    records: list[Record]
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def available_formats() -> dict[str, ModuleType]:
    """All importer modules of this package, by their NAME."""
    formats = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        formats[module.NAME] = module
    return dict(sorted(formats.items()))


def get_format(name: str) -> ModuleType:
    """The importer module for a FORMAT word, or a ConfigError listing the known ones."""
    formats = available_formats()
    if name not in formats:
        raise ConfigError(f"unknown dataset format {name!r}; choose one of: {', '.join(formats)}")
    return formats[name]
