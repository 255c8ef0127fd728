"""Celeb-DF (v2, and v1 which has the same layout): one VIDEO record per .mp4.

Layout, as the dataset is distributed::

    ROOT/Celeb-real/id<N>_<NNNN>.mp4                    real, celebrity id<N>
    ROOT/YouTube-real/<NNNNN>.mp4                       real, one unnamed person per video
    ROOT/Celeb-synthesis/id<A>_id<B>_<NNNN>.mp4         fake: Celeb-real/id<A>_<NNNN>.mp4 with id<B>'s face
    ROOT/List_of_testing_videos.txt                     the official test list, lines "LABEL PATH"

In the test list LABEL is Celeb-DF's own convention, 1 = real and 0 = fake (the reverse of lssat's),
and PATH is relative to ROOT ("1 YouTube-real/00170.mp4", "0 Celeb-synthesis/id0_id16_0002.mp4").
A label that contradicts the video's folder, a malformed or repeated line, and a listed video not on
disk stop the import with the file and line named (--skip-missing counts missing ones instead).

Splits: the listed videos are the test split (518 videos in v2). The other videos are split into
train and val by identity, seeded, so that no celebrity is in both (`_common.group_split`; a fake
whose two celebrities land in different splits is dropped and counted). The official protocol does
not keep test identities out of training: the same celebrities appear in both, as in every paper
that uses the list. --test-list-only keeps only the listed videos (the cross-dataset protocol);
--seeded-test ignores the list and makes a seeded train/val/test split by identity instead.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import check_fractions, require_dir, resolve_under
from lssat.data.formats._videos import (add_skip_missing, add_split_options, check_relative, fractions_text,
                                        missing_video, split_by_identity, video_files, video_record)
from lssat.data.index import IndexHeader
from lssat.errors import ConfigError, DataError
from lssat.paths import read_text

NAME = "celebdf"
HELP = "Celeb-DF v2/v1 videos (Celeb-real/, YouTube-real/, Celeb-synthesis/, List_of_testing_videos.txt)"

REAL_FOLDERS = ("Celeb-real", "YouTube-real")
FAKE_FOLDER = "Celeb-synthesis"
FOLDERS = (*REAL_FOLDERS, FAKE_FOLDER)
TEST_LIST = "List_of_testing_videos.txt"
METHOD = "Celeb-synthesis"  # Celeb-DF has one (improved DeepFake) synthesis method; its folder name

_CELEB_REAL = re.compile(r"^(id\d+)_(\d+)$")
_CELEB_FAKE = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Celeb-DF options."""
    parser.add_argument("--test-list", default=TEST_LIST, metavar="FILE",
                        help=f"the official test list, relative to ROOT or absolute (default {TEST_LIST})")
    parser.add_argument("--test-list-only", action="store_true",
                        help="index only the videos of the test list, all in split test "
                             "(the cross-dataset protocol)")
    parser.add_argument("--seeded-test", action="store_true",
                        help="ignore the test list; seeded train/val/test split by identity")
    add_skip_missing(parser)
    add_split_options(parser, val=0.1, test=0.1, as_split=False)


def identities(rel: str) -> tuple[str, ...] | None:
    """The identities in a Celeb-DF video ('celeb:id0', 'youtube:00170'), or None for a name
    that does not follow the dataset's naming."""
    folder, _, name = rel.partition("/")
    stem = name.rsplit(".", 1)[0]
    if folder == "YouTube-real":
        return (f"youtube:{stem}",)
    pattern = _CELEB_REAL if folder == "Celeb-real" else _CELEB_FAKE
    m = pattern.match(stem)
    if not m:
        return None
    return (f"celeb:{m.group(1)}",) if folder == "Celeb-real" else (f"celeb:{m.group(1)}", f"celeb:{m.group(2)}")


def read_test_list(path: Path, on_disk: set[str], options: argparse.Namespace,
                   skipped: Counter) -> list[str]:
    """The listed videos (relative paths, in list order) that are on disk; errors name file:line."""
    text = read_text(path, "Celeb-DF test list")
    seen: dict[str, int] = {}
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        fields = line.split()
        if len(fields) != 2:
            raise DataError(f"{where}: expected 'LABEL PATH' (label 1 real, 0 fake), got {line.strip()!r}")
        label, rel = fields
        rel = check_relative(where, rel)
        folder = rel.split("/", 1)[0]
        if folder not in FOLDERS or "/" not in rel:
            raise DataError(f"{where}: {rel!r} is not in {', '.join(FOLDERS)}")
        if label not in ("0", "1"):
            raise DataError(f"{where}: label must be 1 (real) or 0 (fake) in Celeb-DF's convention, got {label!r}")
        if (label == "1") != (folder in REAL_FOLDERS):
            raise DataError(f"{where}: label {label} ({'real' if label == '1' else 'fake'}) contradicts "
                            f"folder {folder} (Celeb-DF's list uses 1 = real, 0 = fake)")
        if rel in seen:
            raise DataError(f"{where}: {rel!r} is listed twice (also line {seen[rel]})")
        seen[rel] = n
        if rel not in on_disk:
            missing_video(where, rel, options, skipped)
            continue
        out.append(rel)
    if not seen:
        raise DataError(f"{path}: the test list is empty")
    return out


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index Celeb-DF as video records: the official test list as test, the rest split by identity."""
    if options.test_list_only and options.seeded_test:
        raise ConfigError("--test-list-only, --seeded-test: choose one")
    fractions = {"train": 1.0 - options.val_fraction, "val": options.val_fraction}
    if options.seeded_test:
        check_fractions(val_fraction=options.val_fraction, test_fraction=options.test_fraction)
        fractions = {"train": 1.0 - options.val_fraction - options.test_fraction,
                     "val": options.val_fraction, "test": options.test_fraction}
    else:
        check_fractions(val_fraction=options.val_fraction)
    for folder in (REAL_FOLDERS[0], FAKE_FOLDER):
        if not (root / folder).is_dir():
            raise DataError(f"{root}: not a Celeb-DF folder ({folder}/ not found)")
    skipped: Counter = Counter()
    videos: list[str] = []
    present = [f for f in FOLDERS if (root / f).is_dir()]
    for folder in present:
        videos += video_files(require_dir(root / folder, folder), root, skipped)

    split_of: dict[str, str] = {}
    test_list = None
    if not options.seeded_test:
        test_list = resolve_under(root, options.test_list)
        if not test_list.is_file():
            raise DataError(f"{test_list}: Celeb-DF test list not found (--test-list names another; "
                            "--seeded-test makes a seeded split instead)")
        for rel in read_test_list(test_list, set(videos), options, skipped):
            split_of[rel] = "test"

    ids: dict[str, tuple[str, ...]] = {}
    for rel in videos:
        found = identities(rel)
        if found is not None:
            ids[rel] = found
        elif rel not in split_of:  # a listed video is kept whatever its file name
            form = "id<A>_id<B>_<n>" if rel.startswith(FAKE_FOLDER) else "id<N>_<n>"
            skipped[f"{rel.split('/', 1)[0]} file name not {form}.mp4"] += 1
    rest = {rel: i for rel, i in ids.items() if rel not in split_of}
    if options.test_list_only:
        if rest:
            skipped["not in the test list (--test-list-only)"] += len(rest)
    elif rest:
        split_of.update(split_by_identity(rest, fractions, options.seed, skipped))

    records = []
    for rel in sorted(split_of):
        folder = rel.split("/", 1)[0]
        real = folder in REAL_FOLDERS
        people = ids.get(rel, ())
        original = None
        if not real and len(people) == 2:
            m = _CELEB_FAKE.match(rel.split("/", 1)[1].rsplit(".", 1)[0])
            candidate = f"Celeb-real/{m.group(1)}_{m.group(3)}.mp4"
            original = candidate if candidate in ids else None
        records.append(video_record(rel, split_of[rel], 0 if real else 1, "real" if real else METHOD,
                                    source=folder, identities=[p.split(":", 1)[1] for p in people] or None,
                                    original=original))
    how = ("official test list" + (" only" if options.test_list_only else
                                   "; train/val " + fractions_text(fractions, options.seed, "identity"))
           if test_list is not None else fractions_text(fractions, options.seed, "identity"))
    header = IndexHeader(
        dataset="celebdf", task="deepfake", root=str(root.resolve()), classes=["real", "fake"],
        info={"records": "videos", "folders": present, "splits": how,
              **({"test_list": str(test_list.resolve())} if test_list is not None else {})},
    )
    return ImportResult(header=header, records=records, skipped=skipped)
