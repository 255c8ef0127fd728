"""The `lssat` command line.

Each subcommand lives in its own module under `lssat.commands` and exposes
`register(subparsers) -> argparse.ArgumentParser`, setting `func` as the default handler.
Modules are discovered automatically, so adding a command touches no shared file.
Heavy imports belong inside the handlers, so `lssat --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType

from lssat import __version__
from lssat.errors import LssatError

USAGE_ERROR = 2
INTERNAL_ERROR = 1
BROKEN_PIPE = 141  # what a shell reports for a process that SIGPIPE ended (128 + 13)
# names under which a function holds the file it reads or writes (innermost frame first)
_PATH_NAMES = ("filepath", "filename", "urlpath", "path", "file", "fname", "fp")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="lssat",
        description="Self-supervised auxiliary learning with texture descriptors for face analysis.",
    )
    parser.add_argument("--version", action="version", version=f"lssat {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the Python traceback too (by default: one line)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import lssat.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"lssat.commands.{info.name}")
        sub = module.register(subparsers)
        if isinstance(sub, argparse.ArgumentParser):
            # also accepted after the command; SUPPRESS keeps a top-level --debug when absent here
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, print the Python traceback too")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # a long --help read by `| head`
        _drop_stdout()
        return BROKEN_PIPE
    if getattr(args, "func", None) is None:
        parser.print_help()
        return USAGE_ERROR
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that went away (`| head -1`) shows here, not as a traceback at exit
    except KeyboardInterrupt:
        print(f"lssat {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _drop_stdout()
        return BROKEN_PIPE
    except Exception as err:  # noqa: BLE001 - every error ends as one line (and its traceback with --debug)
        line, code = error_line(err)
        if os.environ.get("RANK", "0") == "0":  # under DDP, say it once
            if getattr(args, "debug", False):
                traceback.print_exc(file=sys.stderr)
            print(f"lssat {args.command}: {line}", file=sys.stderr)
        return code
    return int(status or 0)


def _drop_stdout() -> None:
    """Point stdout at /dev/null: the reader of the pipe is gone, and the interpreter's final flush
    would otherwise fail again with 'Exception ignored ... BrokenPipeError'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):  # stdout without a file descriptor
        pass


def error_line(err: BaseException) -> tuple[str, int]:
    """The one line the command line prints for an error (after ``lssat COMMAND: ``) and its exit status.

    A user error (`LssatError`) or an OSError on a file (permission denied, no space left, file too
    large, read-only file system...) is the user's to fix: status 2, the message naming the file. Anything
    else is a bug in lssat: status 1, with a pointer to ``--debug`` for the traceback.
    """
    if isinstance(err, LssatError):
        return f"error: {' '.join(part.strip() for part in str(err).splitlines() if part.strip())}", USAGE_ERROR
    os_error = err if isinstance(err, OSError) else err.__cause__
    if isinstance(os_error, OSError):
        return f"error: {describe_os_error(os_error)}", USAGE_ERROR
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    what = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return f"internal error: {what} (run with --debug for the traceback)", INTERNAL_ERROR


def describe_os_error(err: OSError) -> str:
    """`PATH: problem` for an OSError; the path from the error, else from where it was raised."""
    problem = os.strerror(err.errno) if err.errno else (str(err).strip().splitlines() or [type(err).__name__])[0]
    if err.filename is not None:
        where = os.fsdecode(err.filename)
        if err.filename2 is not None:
            where += f" -> {os.fsdecode(err.filename2)}"
        return f"{where}: {problem}"
    if not err.errno:  # e.g. an image library's own message, which names the file itself
        return problem
    path = _path_in_traceback(err.__traceback__)
    return f"{path}: {problem}" if path else f"{problem} (run with --debug to see where)"


def _path_in_traceback(tb: TracebackType | None) -> str | None:
    """The file the innermost frame that names one was working on (a write that failed with ENOSPC
    or EFBIG carries no file name: the error comes from write(), not open())."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        local = frame.f_locals
        owner = local.get("self")
        if isinstance(owner, os.PathLike):
            return os.fspath(owner)  # pathlib's own write_text / write_bytes
        if isinstance(owner, io.IOBase):  # a file object that knows its path (fsspec's: .path)
            for attr in ("path", "name"):
                value = getattr(owner, attr, None)
                if isinstance(value, (str, os.PathLike)):
                    return os.fspath(value)
        for name in _PATH_NAMES:
            value = local.get(name)
            if isinstance(value, (str, os.PathLike)) and str(value):
                return os.fspath(value)
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
