"""Writing files: atomically, as strict JSON, with the user's umask, and folder locks.

- `atomic_write_text` / `atomic_path`: readers see the old or the new file, never a part of one.
- `dumps_json` / `finite_json`: strict JSON (nan and infinities become null), so any JSON parser
  reads what lssat writes.
- `apply_umask`: temporary files (``tempfile.mkstemp``) are created mode 0600; the files lssat
  writes through them get the mode any other new file would get (0666 less the umask), so
  colleagues on shared storage can read them as they can read the rest.
- `folder_lock`: one lssat process at a time in a run or benchmark folder (``fcntl.flock`` on a
  lock file that names the holder; the kernel releases it when the process dies).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lssat.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: folders are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lssat.lock"

_umask_lock = threading.Lock()
_umask_cached: int | None = None


def current_umask() -> int:
    """The process's umask, read without changing it where the platform allows.

    Linux reports it in /proc/self/status (read each time, so a later `os.umask` call counts);
    elsewhere it is read once, by setting and restoring it under a lock.
    """
    global _umask_cached
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        if _umask_cached is None:
            _umask_cached = os.umask(0o022)
            os.umask(_umask_cached)
        return _umask_cached


def apply_umask(target: int | str | os.PathLike, directory: bool = False) -> None:
    """Give a file (a path or an open descriptor) the mode a new file gets: 0666 less the umask
    (0777 less the umask for a directory). For what ``mkstemp`` / ``mkdtemp`` created (0600 / 0700)."""
    mode = (0o777 if directory else 0o666) & ~current_umask()
    if isinstance(target, int):
        os.fchmod(target, mode)
    else:
        os.chmod(target, mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path next to `path` for a writer that takes a file name; on success it is
    renamed over `path` (atomic on POSIX) with the user's umask; on an error it is removed.

    The temporary name keeps `suffix` (some writers want a given extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` so that readers see the old or the new content, never a part.

    The text goes to a unique temporary file in the same folder, is flushed to disk, then renamed
    over `path` (atomic on POSIX); an interrupted write leaves no temporary file behind. The file
    gets the user's umask (not mkstemp's 0600).
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def finite_json(value: Any) -> Any:
    """A copy with every nan or infinite float replaced by None (strict JSON), tuples as lists.

    Numpy scalars and 0-d tensors (anything with ``item()`` and no length) become Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return finite_json(item())
    return value


def dumps_json(value: Any, **options: Any) -> str:
    """`json.dumps` of `finite_json(value)` that refuses nan and infinities (strict JSON)."""
    return json.dumps(finite_json(value), allow_nan=False, **options)


# ----------------------------------------------------------------------------- folder locks


class FolderInUse(InputError):
    """Another process holds the folder's lock; the message names it."""


def _holder_text(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info.get("pid"):
        return "another process"
    text = f"pid {info['pid']} on {info.get('host', '?')}"
    if info.get("since"):
        text += f" since {info['since']}"
    if info.get("command"):
        text += f" ({info['command']})"
    return text


def lock_holder(folder: str | os.PathLike) -> str | None:
    """Who holds the lock of `folder` (a line naming pid, host, start and command), or None
    when nobody does. A short probe: it takes and drops a shared lock."""
    path = Path(folder) / LOCK_FILE
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_text(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "folder", *, wait: bool = False) -> Iterator[Path]:
    """Hold the lock of `folder` (created if needed) while the block runs.

    Another holder: `FolderInUse` naming it, or with `wait` a note on stderr and a wait until it
    lets go. The lock file keeps the holder's pid, host, start time and command line; the kernel
    drops the lock when the holding process ends, however it ends.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if fcntl is None:  # pragma: no cover
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        if not _try_lock(fd):
            holder = _holder_text(path)
            if not wait:
                raise FolderInUse(f"{what} {folder} is in use by {holder}; wait for it to finish "
                                  "or pass --wait to wait for it")
            print(f"lssat: {what} {folder} is in use by {holder}; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _try_lock(fd: int, tries: int = 5) -> bool:
    """Take the lock without waiting; a few quick retries step over a reader's brief probe."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(0.02 * (attempt + 1))
    return False
