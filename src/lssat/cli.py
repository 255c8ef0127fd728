"""The `lssat` command line.

Each subcommand lives in its own module under `lssat.commands` and exposes
`register(subparsers) -> argparse.ArgumentParser`, setting `func` as the default handler.
Modules are discovered automatically, so adding a command touches no shared file.
Heavy imports belong inside the handlers, so `lssat --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from lssat import __version__
from lssat.errors import LssatError

USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="lssat",
        description="Self-supervised auxiliary learning with texture descriptors for face analysis.",
    )
    parser.add_argument("--version", action="version", version=f"lssat {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import lssat.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"lssat.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return USAGE_ERROR
    try:
        status = args.func(args)
    except LssatError as err:
        if os.environ.get("RANK", "0") == "0":  # under DDP, say it once
            print(f"lssat {args.command}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"lssat {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
