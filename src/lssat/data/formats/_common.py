"""Helpers shared by the dataset importers: layout checks, file listings, seeded splits.

Splits here are deterministic functions of the seed and of the *sorted* items, so the same data
gives the same split whatever order the file system lists it in.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

from lssat.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def read_json(path: Path, what: str) -> object:
    """The parsed JSON of a dataset file (`what` names it in errors); bad JSON is a DataError
    naming the file and the line."""
    from lssat.paths import read_text

    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}: not valid JSON ({err or 'nested too deeply'})") from None


def require_dir(path: Path, what: str) -> Path:
    """`path` if it is a folder, else a DataError naming it and what was expected there."""
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found (folder expected)")
    return path


def first_existing(candidates: Iterable[Path]) -> Path | None:
    """The first of `candidates` that exists, or None."""
    for c in candidates:
        if c.exists():
            return c
    return None


def resolve_under(root: Path, value: str | os.PathLike) -> Path:
    """An option's path: absolute as given, otherwise relative to the dataset root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def base_and_prefix(root: Path, folder: Path) -> tuple[Path, str]:
    """Where record paths of files in `folder` are relative to, and their prefix.

    Paths stay relative to the dataset root (prefix 'img_align_celeba/') when `folder` lies under it,
    so an index shows where files come from; otherwise they are relative to `folder` itself.
    """
    root_r, folder_r = root.resolve(), folder.resolve()
    try:
        rel = folder_r.relative_to(root_r).as_posix()
    except ValueError:
        return folder_r, ""
    return root_r, "" if rel == "." else rel + "/"


def is_image(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


class FileLister:
    """Answers "does this file exist?" with one directory listing per folder instead of a stat per file."""

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[str, frozenset[str]] = {}

    def exists(self, rel: str) -> bool:
        """Whether `root / rel` is an existing entry; `rel` uses '/' separators and stays under root."""
        if rel.startswith("/") or ".." in rel.split("/"):
            return False
        folder, _, name = rel.rpartition("/")
        listing = self._listings.get(folder)
        if listing is None:
            try:
                listing = frozenset(os.listdir(self.root / folder))
            except (FileNotFoundError, NotADirectoryError):
                listing = frozenset()
            self._listings[folder] = listing
        return name in listing


def image_is_readable(path: Path) -> bool:
    """Whether `path` is a regular image file that passes the checks short of decoding its pixels
    (format, pixel limit, JPEG data enough for its size, PIL's verify)."""
    from lssat.data.loading import ImageDecodeError, check_image_bytes, read_image_file

    try:
        check_image_bytes(read_image_file(path), str(path))
        return True
    except ImageDecodeError:
        return False


def progress(iterable, desc: str, total: int | None = None):
    """A tqdm progress bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="it", disable=None, leave=False)


# --------------------------------------------------------------------------- splits


def add_split_options(parser: argparse.ArgumentParser, val: float, test: float | None) -> None:
    """--seed, --val-fraction and (when `test` is not None) --test-fraction."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated splits (default 0)")
    parser.add_argument("--val-fraction", type=float, default=val,
                        help=f"fraction carved out for validation when the data has no val split (default {val})")
    if test is not None:
        parser.add_argument("--test-fraction", type=float, default=test,
                            help=f"fraction held out for test when the data has no test split (default {test})")


def check_fractions(**fractions: float) -> None:
    """ConfigError unless every fraction is in [0, 1) and they sum below 1."""
    for name, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be in [0, 1), got {value}")
    if sum(fractions.values()) >= 1.0:
        names = " + ".join(f"--{n.replace('_', '-')}" for n in fractions)
        raise ConfigError(f"{names}: must sum below 1, got {sum(fractions.values()):g}")


def stratified_split(items: Sequence[tuple[Hashable, Hashable]], fractions: dict[str, float],
                     seed: int, rest: str = "train") -> dict[Hashable, str]:
    """Assign each (key, class) item to a split, per class, seeded. Keys must be unique and sortable.

    `fractions` maps split names to fractions (e.g. {"test": .1, "val": .1}); every class gives
    fraction * n (rounded half up) of its items to each of them and the remainder to `rest`.
    """
    by_class: dict[Hashable, list] = defaultdict(list)
    for key, cls in items:
        by_class[cls].append(key)
    rng = random.Random(seed)
    out: dict[Hashable, str] = {}
    for cls in sorted(by_class, key=str):
        keys = sorted(by_class[cls])
        rng.shuffle(keys)
        start = 0
        for split, frac in fractions.items():
            n = int(frac * len(keys) + 0.5)  # half up, not Python's half-to-even
            for k in keys[start:start + n]:
                out[k] = split
            start += n
        for k in keys[start:]:
            out[k] = rest
    return out


def group_split(members: dict[str, tuple[str, ...]], fractions: dict[str, float],
                seed: int) -> tuple[dict[str, str | None], dict[str, str]]:
    """Split items that involve one or more identities so that no identity is in two splits.

    `members` maps an item (a video) to the identities in it (a fake `a_b` involves a and b).
    Identities linked through shared items form groups; a group no larger than the smallest split's
    target (or than a pair) goes to one split whole, so none of its items straddles. Identities of a
    larger group (say actors who were all swapped with each other) are assigned one by one, and an
    item whose identities land in different splits gets None: the caller drops and counts it.
    Groups are shuffled with `seed`, then each goes to the split furthest below its target.

    Returns (item -> split or None, identity -> split).
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for ids in members.values():
        for i in ids:
            parent.setdefault(i, i)
        for i in ids[1:]:
            ra, rb = find(ids[0]), find(i)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = defaultdict(list)
    for i in sorted(parent):
        groups[find(i)].append(i)

    n = len(parent)
    targets = {s: f * n for s, f in fractions.items()}
    positive = [t for t in targets.values() if t > 0]
    limit = max(2.0, min(positive)) if positive else float(n)
    units: list[list[str]] = []
    for g in sorted(groups.values()):
        units.extend([g] if len(g) <= limit else [[i] for i in g])
    random.Random(seed).shuffle(units)

    filled = Counter()
    identity_split: dict[str, str] = {}
    for unit in units:
        split = max(targets, key=lambda s: targets[s] - filled[s])  # ties: first in `fractions`
        filled[split] += len(unit)
        for i in unit:
            identity_split[i] = split

    items: dict[str, str | None] = {}
    for item, ids in members.items():
        splits = {identity_split[i] for i in ids}
        items[item] = splits.pop() if len(splits) == 1 else None
    return items, identity_split
