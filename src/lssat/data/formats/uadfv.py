"""UADFV: 49 real videos and 49 fakes made from them with FakeApp; one VIDEO record per video.

Layout, as the dataset is distributed::

    ROOT/real/<NNNN>.mp4            real
    ROOT/fake/<NNNN>_fake.mp4       fake, made from real/<NNNN>.mp4 (the same person)

Subfolders of real/ and fake/ (DeepfakeBench's frames/, ...) are not read. `method` is "UADFV"
for every fake (the dataset has one generator); `extra.identities` is [NNNN] and a fake's
`extra.original` its real video when that is on disk.

UADFV has no official split. --as-split test puts every video in test (the cross-dataset protocol);
otherwise a seeded split by identity (--val-fraction, --test-fraction, --seed): a real video and its
fake always land in the same split.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import check_fractions
from lssat.data.formats._videos import add_split_options, assign_splits, video_files, video_record
from lssat.data.index import IndexHeader
from lssat.errors import DataError

NAME = "uadfv"
HELP = "UADFV videos (real/<id>.mp4, fake/<id>_fake.mp4): real vs fake"

METHOD = "UADFV"
_REAL = re.compile(r"^(\d+)$")
_FAKE = re.compile(r"^(\d+)_fake$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """UADFV options."""
    add_split_options(parser, val=0.15, test=0.15, as_split=True)


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index UADFV as video records, split by identity (or all in one split with --as-split)."""
    for folder in ("real", "fake"):
        if not (root / folder).is_dir():
            raise DataError(f"{root}: not a UADFV folder ({folder}/ not found)")
    if options.as_split is None:
        check_fractions(val_fraction=options.val_fraction, test_fraction=options.test_fraction)
    skipped: Counter = Counter()
    videos: dict[str, tuple[int, str]] = {}  # rel -> (label, identity)
    for folder, label, pattern, form in (("real", 0, _REAL, "<id>"), ("fake", 1, _FAKE, "<id>_fake")):
        for rel in video_files(root / folder, root, skipped):
            m = pattern.match(rel.rsplit("/", 1)[1].rsplit(".", 1)[0])
            if not m:
                skipped[f"{folder} file name not {form}.mp4"] += 1
                continue
            videos[rel] = (label, m.group(1))

    split_of, how = assign_splits({rel: (i,) for rel, (_, i) in videos.items()}, options, skipped, "identity")
    reals = {i: rel for rel, (label, i) in videos.items() if label == 0}
    records = []
    for rel in sorted(split_of):
        label, identity = videos[rel]
        records.append(video_record(rel, split_of[rel], label, "real" if label == 0 else METHOD,
                                    identities=[identity], original=reals.get(identity) if label else None))
    header = IndexHeader(dataset="uadfv", task="deepfake", root=str(root.resolve()), classes=["real", "fake"],
                         info={"records": "videos", "splits": how})
    return ImportResult(header=header, records=records, skipped=skipped)
