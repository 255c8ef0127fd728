"""FaceForensics++: one VIDEO record per .mp4 (frame null); `lssat preprocess` turns them into crops.

Layout, for c in raw/c23/c40 (--compression)::

    ROOT/original_sequences/youtube/<c>/videos/<id>.mp4                         real, identity id
    ROOT/manipulated_sequences/<Method>/<c>/videos/<target>_<source>.mp4        fake, identities target, source
    ROOT/original_sequences/actors/<c>/videos/<actor>__<scene>.mp4              real (DeepFakeDetection)
    ROOT/manipulated_sequences/DeepFakeDetection/<c>/videos/<a>_<b>__<scene>__<hash>.mp4

Methods Deepfakes, Face2Face, FaceSwap, NeuralTextures, plus FaceShifter and DeepFakeDetection when
present (--methods picks). Record path and video_id are both the video's full path relative to ROOT:
the methods reuse the same file names, so a folder or file name is never an id.

Splits: the official lists (--splits DIR with train.json, val.json, test.json: JSON lists of
[id, id] pairs) when given, else a seeded split by identity (see `_common.group_split`) with the
720/140/140 proportions. No identity is ever in two splits; a video whose identities would straddle
splits is dropped and counted. DeepFakeDetection's actors are not in the official lists and always
get the seeded identity split.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import check_fractions, group_split, read_json, require_dir
from lssat.data.index import SPLITS, IndexHeader, Record
from lssat.errors import ConfigError, DataError

NAME = "ffpp"
HELP = "FaceForensics++ videos (original_sequences/, manipulated_sequences/): real vs fake"

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
DFD = "DeepFakeDetection"
COMPRESSIONS = ("raw", "c23", "c40")
DEFAULT_FRACTIONS = {"train": 0.72, "val": 0.14, "test": 0.14}  # 720 / 140 / 140 of 1000

_YOUTUBE_FAKE = re.compile(r"^([^_]+)_([^_]+)$")
_ACTOR_FAKE = re.compile(r"^([^_]+)_([^_]+)__")
_ACTOR_REAL = re.compile(r"^([^_]+)__")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FaceForensics++ options."""
    parser.add_argument("--compression", choices=COMPRESSIONS, default="c23",
                        help="quality level to index (default c23)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help=f"manipulation methods to include (default: those of {', '.join(METHODS)} "
                             "that are present)")
    parser.add_argument("--splits", default=None, metavar="DIR",
                        help="folder with the official train.json, val.json, test.json split lists "
                             "(default: a seeded split by identity)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the identity split (default 0)")
    parser.add_argument("--val-fraction", type=float, default=DEFAULT_FRACTIONS["val"],
                        help="share of identities for val in the seeded split (default 0.14)")
    parser.add_argument("--test-fraction", type=float, default=DEFAULT_FRACTIONS["test"],
                        help="share of identities for test in the seeded split (default 0.14)")


def read_split_lists(folder: Path) -> dict[str, str]:
    """Official split lists -> identity -> split. Each file is a JSON list of [id, id] pairs."""
    require_dir(folder, "split list folder (--splits)")
    out: dict[str, str] = {}
    for split in SPLITS:
        path = folder / f"{split}.json"
        if not path.exists():
            raise DataError(f"{path}: split list not found (--splits needs train.json, val.json, test.json)")
        pairs = read_json(path, "split list")
        if not isinstance(pairs, list):
            raise DataError(f"{path}: expected a JSON list of [id, id] pairs")
        for n, pair in enumerate(pairs):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, str) for i in pair)):
                raise DataError(f"{path}: entry {n} must be a pair of id strings, got {pair!r}")
            for i in pair:
                if out.get(i, split) != split:
                    raise DataError(f"{path}: id {i!r} is also in {out[i]}.json")
                out[i] = split
    return out


def _mp4s(folder: Path, skipped: Counter) -> list[Path]:
    files = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() == ".mp4" and p.is_file():
            files.append(p)
        elif not p.name.startswith("."):
            skipped["not an .mp4 file"] += 1
    return files


def _select_methods(root: Path, c: str, wanted: list[str] | None, skipped: Counter) -> list[str]:
    manip = root / "manipulated_sequences"
    if wanted is not None:
        for m in wanted:
            if not (manip / m / c / "videos").is_dir():
                raise DataError(f"{manip / m / c / 'videos'}: no videos for method {m!r} at {c}")
        return list(dict.fromkeys(wanted))
    if not manip.is_dir():
        raise DataError(f"{manip}: not found (no manipulated videos; is ROOT a FaceForensics++ folder?)")
    chosen = []
    for d in sorted(p.name for p in manip.iterdir() if p.is_dir()):
        if d not in METHODS:
            skipped[f"method folder {d!r} not indexed by default (name it in --methods)"] += 1
        elif not (manip / d / c / "videos").is_dir():
            skipped[f"method folder {d!r} has no {c}/videos"] += 1
        else:
            chosen.append(d)
    if not chosen:
        raise DataError(f"{manip}: no method folder with {c}/videos")
    return sorted(chosen, key=lambda m: METHODS.index(m))


def _collect(root: Path, options: argparse.Namespace, skipped: Counter):
    """(rel path, method, identities) per video; identities namespaced 'youtube:' or 'actors:'."""
    c = options.compression
    youtube = root / "original_sequences" / "youtube" / c / "videos"
    if not youtube.is_dir():
        raise DataError(f"{root}: not a FaceForensics++ folder (original_sequences/youtube/{c}/videos not found)")
    videos: list[tuple[str, str, tuple[str, ...]]] = []
    for p in _mp4s(youtube, skipped):
        videos.append((p.relative_to(root).as_posix(), "real", (f"youtube:{p.stem}",)))

    methods = _select_methods(root, c, options.methods, skipped)
    actors = root / "original_sequences" / "actors" / c / "videos"
    for m in methods:
        folder = root / "manipulated_sequences" / m / c / "videos"
        files = _mp4s(folder, skipped)
        if m == DFD and not actors.is_dir():
            if options.methods is not None:
                raise DataError(f"{actors}: not found (DeepFakeDetection's real videos live there)")
            skipped[f"{DFD} left out: original_sequences/actors/{c}/videos missing"] += len(files)
            methods = [x for x in methods if x != DFD]
            continue
        pattern, ns = (_ACTOR_FAKE, "actors") if m == DFD else (_YOUTUBE_FAKE, "youtube")
        for p in files:
            match = pattern.match(p.stem)
            if not match:
                form = "<a>_<b>__<scene>__<hash>" if m == DFD else "<target>_<source>"
                skipped[f"{m} file name not {form}.mp4"] += 1
                continue
            ids = (f"{ns}:{match.group(1)}", f"{ns}:{match.group(2)}")
            videos.append((p.relative_to(root).as_posix(), m, ids))
    if DFD in methods:
        for p in _mp4s(actors, skipped):
            match = _ACTOR_REAL.match(p.stem)
            if not match:
                skipped["actors file name not <actor>__<scene>.mp4"] += 1
                continue
            videos.append((p.relative_to(root).as_posix(), "real", (f"actors:{match.group(1)}",)))
    return videos, methods


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index FaceForensics++ as video records, split so that no identity is in two splits."""
    if options.methods is not None:
        unknown = [m for m in options.methods if not re.fullmatch(r"[A-Za-z0-9_.-]+", m)]
        if unknown:
            raise ConfigError(f"--methods: bad method name {unknown[0]!r}")
    check_fractions(val_fraction=options.val_fraction, test_fraction=options.test_fraction)
    skipped: Counter = Counter()
    videos, methods = _collect(root, options, skipped)

    fractions = {"train": 1.0 - options.val_fraction - options.test_fraction,
                 "val": options.val_fraction, "test": options.test_fraction}
    split_of: dict[str, str | None] = {}
    official = None
    if options.splits is not None:
        official = read_split_lists(Path(options.splits).expanduser())
        for rel, _, ids in videos:
            if ids[0].startswith("youtube:"):
                splits = {official.get(i.split(":", 1)[1]) for i in ids}
                if None in splits:
                    skipped["identity not in the official split lists"] += 1
                    split_of[rel] = "missing"  # dropped and counted here, not below
                else:
                    split_of[rel] = splits.pop() if len(splits) == 1 else None
        rest = {rel: ids for rel, _, ids in videos if rel not in split_of}
    else:
        rest = {rel: ids for rel, _, ids in videos}
    if rest:
        assigned, _ = group_split(rest, fractions, options.seed)
        split_of.update(assigned)

    records = []
    for rel, method, ids in videos:
        split = split_of[rel]
        if split == "missing":
            continue
        if split is None:
            skipped["identities of a fake fall in different splits"] += 1
            continue
        records.append(Record(path=rel, split=split, label=0 if method == "real" else 1, method=method,
                              video_id=rel, extra={"identities": [i.split(":", 1)[1] for i in ids]}))

    header = IndexHeader(
        dataset="ffpp", task="deepfake", root=str(root.resolve()), classes=["real", "fake"],
        info={"compression": options.compression, "methods": methods, "records": "videos",
              "splits": ("official lists" if official is not None else
                         f"seeded by identity (seed {options.seed}, fractions "
                         f"{fractions['train']:g}/{fractions['val']:g}/{fractions['test']:g})")},
    )
    return ImportResult(header=header, records=records, skipped=skipped)
