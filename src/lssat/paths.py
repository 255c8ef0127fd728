"""Checks on the files a user names: inputs must be regular files of bounded size, outputs must be
creatable.

A named pipe, a device such as /dev/zero or a socket is never opened as an input: opening a pipe
blocks until a writer appears, and reading a device can go on until memory runs out. Inputs are
read up to a size limit, and text inputs must be UTF-8.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lssat.errors import DataError, InputError

#: Largest label file, index line source or JSON list read whole (bytes).
MAX_TEXT_BYTES = 1 << 30

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as an input file ("not found", "is a named pipe, not a regular
    file", ...), or None when it is a regular file. Never opens the file.

    The text reads on from a noun: f"{path}: index file {problem}"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except NotADirectoryError:
        return "not found (a part of the path is a file, not a folder)"
    except PermissionError:
        return "cannot be read (permission denied)"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return f"is {kind}, not a regular file"
    return "is not a regular file"


def read_bytes(path: str | os.PathLike, limit: int, error: type[Exception] = DataError,
               what: str = "file") -> bytes:
    """The content of a regular file of at most `limit` bytes; `error` naming the path otherwise."""
    problem = file_problem(path)
    if problem is not None:
        raise error(f"{path}: {what} {problem}")
    try:
        data = read_capped(path, limit)
    except OSError as err:
        raise error(f"{path}: cannot read {what} ({err.strerror or err})") from None
    if len(data) > limit:
        raise error(f"{path}: {what} larger than {_size(limit)} (limit on one input)")
    return data


def read_capped(path: str | os.PathLike, limit: int) -> bytes:
    """A regular file's content, read up to `limit` + 1 bytes (more than `limit` says the file is over
    it); OSError as raised. Check the path with `file_problem` first."""
    with open(path, "rb") as f:
        # read(n) allocates n bytes up front: ask for the file's size (+1 to see growth), capped
        return f.read(min(os.fstat(f.fileno()).st_size, limit) + 1)


def read_text(path: str | os.PathLike, what: str = "file", limit: int = MAX_TEXT_BYTES,
              error: type[Exception] = DataError) -> str:
    """A regular UTF-8 text file's content (a byte order mark is dropped); `error` naming the
    file, and the line and column of the first byte that is not UTF-8."""
    data = read_bytes(path, limit, error, what)
    return decode_utf8(data, str(path), error)


def decode_utf8(data: bytes, name: str, error: type[Exception] = DataError, first_line: int = 1) -> str:
    """`data` decoded as UTF-8 (byte order mark dropped); `error` naming `name`:LINE otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise error(f"{name}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}); "
                    "save the file as UTF-8") from None


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """`path` as a Path if a file can be written there; InputError naming it otherwise.

    The folder may not exist yet (the writer creates it), but the nearest existing folder above
    it must be a folder, and `path` itself must not be a folder. Nothing is created here.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the {what}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{path}: cannot create the {what}: {parent} is a file, not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot create the {what}: no permission to write in {parent}")
    return path


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n} bytes"
