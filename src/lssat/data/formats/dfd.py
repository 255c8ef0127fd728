"""DeepFakeDetection (DFD, Google/Jigsaw's part of FaceForensics++) on its own: one VIDEO record per video.

Layout, as FaceForensics++'s download script writes it (-d DeepFakeDetection_original and
-d DeepFakeDetection), for c in raw/c23/c40 (--compression)::

    ROOT/original_sequences/actors/<c>/videos/<actor>__<scene>.mp4                       real
    ROOT/manipulated_sequences/DeepFakeDetection/<c>/videos/<a>_<b>__<scene>__<code>.mp4  fake, actors a and b

This is for DFD without the rest of FaceForensics++ (the `ffpp` format already indexes DFD, and
FaceShifter, when the whole dataset is there). `method` is "DeepFakeDetection" for every fake;
`extra.identities` holds the actors in a video and `extra.scene` its scene.

DFD has no official split. --as-split test puts every video in test (the cross-dataset protocol);
otherwise a seeded split by actor: the 28 actors were all swapped with each other, so they are
assigned one by one and a fake whose two actors land in different splits is dropped and counted
(expect to lose roughly 40 to 45 % of the fakes with the default fractions).
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

NAME = "dfd"
HELP = "DeepFakeDetection videos (original_sequences/actors/, manipulated_sequences/DeepFakeDetection/)"

METHOD = "DeepFakeDetection"
COMPRESSIONS = ("raw", "c23", "c40")
_REAL = re.compile(r"^([^_]+)__(.+)$")
_FAKE = re.compile(r"^([^_]+)_([^_]+)__(.+)__([^_]+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """DeepFakeDetection options."""
    parser.add_argument("--compression", choices=COMPRESSIONS, default="c23",
                        help="quality level to index (default c23)")
    add_split_options(parser, val=0.14, test=0.14, as_split=True)


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index DeepFakeDetection as video records, split by actor (or all in one split with --as-split)."""
    c = options.compression
    real_dir = root / "original_sequences" / "actors" / c / "videos"
    fake_dir = root / "manipulated_sequences" / METHOD / c / "videos"
    for folder in (real_dir, fake_dir):
        if not folder.is_dir():
            raise DataError(f"{root}: not a DeepFakeDetection folder "
                            f"({folder.relative_to(root).as_posix()} not found)")
    if options.as_split is None:
        check_fractions(val_fraction=options.val_fraction, test_fraction=options.test_fraction)
    skipped: Counter = Counter()
    videos: dict[str, tuple[int, tuple[str, ...], str]] = {}  # rel -> (label, actors, scene)
    for folder, label, pattern, form in ((real_dir, 0, _REAL, "<actor>__<scene>"),
                                         (fake_dir, 1, _FAKE, "<a>_<b>__<scene>__<code>")):
        for rel in video_files(folder, root, skipped):
            m = pattern.match(rel.rsplit("/", 1)[1].rsplit(".", 1)[0])
            if not m:
                skipped[f"{'fake' if label else 'real'} file name not {form}.mp4"] += 1
                continue
            actors = (m.group(1),) if label == 0 else (m.group(1), m.group(2))
            videos[rel] = (label, actors, m.group(2) if label == 0 else m.group(3))

    split_of, how = assign_splits({rel: a for rel, (_, a, _) in videos.items()}, options, skipped, "actor")
    records = []
    for rel in sorted(split_of):
        label, actors, scene = videos[rel]
        records.append(video_record(rel, split_of[rel], label, "real" if label == 0 else METHOD,
                                    identities=list(actors), scene=scene))
    header = IndexHeader(dataset="dfd", task="deepfake", root=str(root.resolve()), classes=["real", "fake"],
                         info={"records": "videos", "compression": c, "splits": how})
    return ImportResult(header=header, records=records, skipped=skipped)
