"""Helpers shared by the importers of deepfake VIDEO datasets (celebdf, dfdc, dfd, uadfv).

Their records are videos: `path` and `video_id` are both the video's path relative to ROOT (never
a bare file name: datasets reuse names across folders), `frame` is null, `label` 0 real / 1 fake,
`method` "real" or the manipulation's name. `lssat preprocess` turns them into face crops.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from lssat.data.formats._common import group_split
from lssat.data.index import SPLITS, Record
from lssat.errors import DataError

MISSING = "listed video missing (--skip-missing)"


def is_video_name(name: str) -> bool:
    """Whether a file name ends like a video that `lssat preprocess` can read."""
    from lssat.preprocess.frames import is_video_path

    return is_video_path(name)


def video_files(folder: Path, root: Path, skipped: Counter, ignore: Iterable[str] = ()) -> list[str]:
    """The video files directly in `folder`, as sorted '/'-paths relative to `root`.

    Other files are counted as "not a video file" (hidden files and the names in `ignore`, such as
    the folder's own label file, are not); subfolders are not entered.
    """
    ignored = set(ignore)
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name in ignored or p.is_dir():
            continue
        if is_video_name(p.name) and p.is_file():
            out.append(p.relative_to(root).as_posix())
        else:
            skipped["not a video file"] += 1
    return out


def add_skip_missing(parser: argparse.ArgumentParser) -> None:
    """--skip-missing: count listed videos that are not on disk instead of stopping."""
    parser.add_argument("--skip-missing", action="store_true",
                        help="skip and count videos that a list names but that are not on disk "
                             "(default: stop with an error naming the list's file and line)")


def missing_video(where: str, rel: str, options: argparse.Namespace, skipped: Counter) -> None:
    """A listed video is not on disk: a DataError naming `where` (file:line), or counted with --skip-missing."""
    if not options.skip_missing:
        raise DataError(f"{where}: video {rel!r} not found under ROOT (pass --skip-missing to skip "
                        "and count missing videos)")
    skipped[MISSING] += 1


def check_relative(where: str, rel: str) -> str:
    """A listed path as a clean '/'-path inside ROOT, or a DataError naming `where`."""
    p = rel.replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    if not p or p.startswith("/") or ".." in p.split("/") or (len(p) > 1 and p[1] == ":"):
        raise DataError(f"{where}: {rel!r} is not a path relative to ROOT")
    return p


def add_split_options(parser: argparse.ArgumentParser, val: float, test: float, as_split: bool) -> None:
    """--seed, --val-fraction, --test-fraction and (when `as_split`) --as-split."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated splits (default 0)")
    parser.add_argument("--val-fraction", type=float, default=val,
                        help=f"share of identities (source videos) for val in a generated split (default {val})")
    parser.add_argument("--test-fraction", type=float, default=test,
                        help=f"share of identities (source videos) for test when the data has no official "
                             f"test list (default {test})")
    if as_split:
        parser.add_argument("--as-split", choices=SPLITS, default=None,
                            help="put every video in this split, e.g. test for a cross-dataset test set")


def split_by_identity(members: dict[str, tuple[str, ...]], fractions: dict[str, float], seed: int,
                      skipped: Counter) -> dict[str, str]:
    """Seeded split of videos so that no identity (or source video) is in two splits.

    `members` maps a video to the identities in it; see `_common.group_split`. A video whose
    identities land in different splits is left out and counted.
    """
    assigned, _ = group_split(members, fractions, seed)
    out = {}
    for video, split in assigned.items():
        if split is None:
            skipped["identities of a fake fall in different splits"] += 1
        else:
            out[video] = split
    return out


def assign_splits(members: dict[str, tuple[str, ...]], options: argparse.Namespace, skipped: Counter,
                  by: str) -> tuple[dict[str, str], str]:
    """(split of each video, how it was made): every video in ``--as-split`` when given, else a
    seeded split by identity (`split_by_identity`) at the ``--val-fraction`` / ``--test-fraction``."""
    if options.as_split is not None:
        return {rel: options.as_split for rel in members}, f"all in {options.as_split} (--as-split)"
    fractions = {"train": 1.0 - options.val_fraction - options.test_fraction,
                 "val": options.val_fraction, "test": options.test_fraction}
    return split_by_identity(members, fractions, options.seed, skipped), fractions_text(fractions, options.seed, by)


def fractions_text(fractions: dict[str, float], seed: int, by: str) -> str:
    """How a generated split was made, for the header's info."""
    parts = "/".join(f"{fractions[s]:g}" for s in SPLITS if s in fractions)
    names = "/".join(s for s in SPLITS if s in fractions)
    return f"seeded by {by} (seed {seed}, {names} {parts})"


def video_record(rel: str, split: str, label: int, method: str, **extra) -> Record:
    """A video record: path and video_id both the full relative path, frame null."""
    return Record(path=rel, split=split, label=label, method=method, video_id=rel,
                  extra={k: v for k, v in extra.items() if v is not None})
