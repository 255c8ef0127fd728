r"""DeepfakeBench's JSON index (preprocessing/dataset_json/<Dataset>.json): frame records, no re-preprocessing.

The JSON written by DeepfakeBench's `preprocessing/rearrange.py` nests::

    {dataset: {label_name: {split: {video_name: {"label": label_name, "frames": [path, ...], ...}}}}}

and, for the FaceForensics++ family (FaceForensics++, FF-DF, FF-F2F, FF-FS, FF-NT, FaceShifter,
DeepFakeDetection), one more level for the quality between split and video::

    {dataset: {label_name: {split: {"c23": {video_name: {...}}, "c40": {...}, "raw": {...}}}}}

Both are accepted (the level is recognised by its keys raw/c23/c40; --compression picks one).
Frame paths may be absolute, start with './', or be relative to DeepfakeBench's `rgb_dir` with
Windows separators ('FaceForensics++\original_sequences\...'); ROOT is the folder they are found
under (usually DeepfakeBench's datasets/rgb). A leading part of the path that is not under ROOT
(an old absolute location, './datasets/rgb/') is found once from the files and stripped.

Labels come from DeepfakeBench's label names (FF-real, FF-DF, CelebDFv2_fake, ...): `label_dict` of
its training config, else a name containing 'real' or 'fake'; --real-labels / --fake-labels add more.
`video_id` is the frame folder's path relative to ROOT, `frame` the number in the frame's file name.
A video that DeepfakeBench lists under several splits (it does so for DeepFakeDetection, and Celeb-DF
lists its test videos under train as well) is kept once, in the most held-out split
(test, then val, then train), and the other listings are counted as skipped.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.formats._common import FileLister, image_is_readable, progress, read_json, resolve_under
from lssat.data.index import SPLITS, IndexHeader, Record
from lssat.errors import DataError

NAME = "deepfakebench"
HELP = "DeepfakeBench's dataset_json/<Dataset>.json over its preprocessed frames: real vs fake"

COMPRESSIONS = ("raw", "c23", "c40")
# DeepfakeBench's training/config/train_config.yaml `label_dict`.
LABELS = {
    "DFD_fake": 1, "DFD_real": 0, "FF-SH": 1, "FF-F2F": 1, "FF-DF": 1, "FF-FS": 1, "FF-NT": 1,
    "FF-FH": 1, "FF-real": 0, "CelebDFv1_real": 0, "CelebDFv1_fake": 1, "CelebDFv2_real": 0,
    "CelebDFv2_fake": 1, "DFDCP_Real": 0, "DFDCP_FakeA": 1, "DFDCP_FakeB": 1, "DFDC_Fake": 1,
    "DFDC_Real": 0, "DF_fake": 1, "DF_real": 0, "UADFV_Fake": 1, "UADFV_Real": 0,
    "roop_Real": 0, "roop_Fake": 1,
}
_HELD_OUT = {"test": 0, "val": 1, "train": 2}  # lower wins when a video is listed twice
_DIGITS = re.compile(r"(\d+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """DeepfakeBench options."""
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="the DeepfakeBench JSON (default: the only *.json in ROOT/dataset_json "
                             "or ROOT/preprocessing/dataset_json)")
    parser.add_argument("--dataset", default=None,
                        help="top-level key of the JSON (default: its only key)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default="c23",
                        help="quality level for JSONs that have that level (default c23)")
    parser.add_argument("--as-split", choices=SPLITS, default=None,
                        help="put every video in this split, e.g. test for a cross-dataset test set")
    parser.add_argument("--real-labels", nargs="+", default=[], metavar="NAME",
                        help="extra DeepfakeBench label names meaning real")
    parser.add_argument("--fake-labels", nargs="+", default=[], metavar="NAME",
                        help="extra DeepfakeBench label names meaning fake")
    parser.add_argument("--check-images", action="store_true",
                        help="open every frame and skip (and count) those that cannot be decoded")


def _find_json(root: Path, given: str | None) -> Path:
    if given is not None:
        path = resolve_under(root, given)
        if not path.exists():
            raise DataError(f"{path}: DeepfakeBench JSON not found (--json)")
        return path
    found = sorted(root.glob("dataset_json/*.json")) + sorted(root.glob("preprocessing/dataset_json/*.json"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise DataError(f"{root}: {what} *.json files in dataset_json/; name the DeepfakeBench JSON with --json")
    return found[0]


def label_of(name: str, real: set[str], fake: set[str]) -> int:
    """0 (real) or 1 (fake) for a DeepfakeBench label name."""
    if name in real:
        return 0
    if name in fake:
        return 1
    if name in LABELS:
        return LABELS[name]
    low = name.lower()
    if "real" in low and "fake" not in low:
        return 0
    if "fake" in low and "real" not in low:
        return 1
    raise DataError(f"label {name!r}: not a known DeepfakeBench label; say what it is with "
                    "--real-labels or --fake-labels")


class _Resolver:
    """Maps a JSON frame path to a path relative to ROOT, learning which leading parts to strip."""

    def __init__(self, root: Path):
        self.lister = FileLister(root)
        self.prefixes: list[str] = [""]

    def __call__(self, raw: str) -> str | None:
        p = raw.replace("\\", "/")
        while p.startswith("./"):
            p = p[2:]
        for pre in self.prefixes:
            if p.startswith(pre) and self.lister.exists(p[len(pre):]):
                return p[len(pre):]
        parts = p.split("/")
        for k in range(1, len(parts)):
            rel = "/".join(parts[k:])
            if self.lister.exists(rel):
                self.prefixes.append("/".join(parts[:k]) + "/")
                return rel
        return None


def _videos(data: dict, dataset: str, compression: str, skipped: Counter, where: str):
    """Yield (label key, split, video name, info) from the nested JSON."""
    if not isinstance(data, dict):
        raise DataError(f"{where}: {dataset}: expected an object of label names")
    for label_key, by_split in data.items():
        if not isinstance(by_split, dict):
            raise DataError(f"{where}: {dataset}/{label_key}: expected an object of splits")
        for split, videos in by_split.items():
            if split not in SPLITS:
                skipped[f"entries under unknown split {split!r}"] += len(videos) if isinstance(videos, dict) else 1
                continue
            if not isinstance(videos, dict):
                raise DataError(f"{where}: {dataset}/{label_key}/{split}: expected an object of videos")
            nested = [k for k in videos if k in COMPRESSIONS and isinstance(videos[k], dict)
                      and "frames" not in videos[k]]
            if nested:
                if compression not in videos:
                    skipped[f"{label_key}/{split}: no {compression} entry (has {', '.join(sorted(nested))})"] += 1
                    continue
                videos = videos[compression]
            for name, info in videos.items():
                if not isinstance(info, dict) or not isinstance(info.get("frames"), list):
                    raise DataError(f"{where}: {dataset}/{label_key}/{split}/{name}: expected "
                                    "{'label': ..., 'frames': [...]}")
                yield label_key, split, name, info


def _frame_number(rel: str, position: int) -> int:
    stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    m = _DIGITS.search(stem)
    return int(m.group(1)) if m else position


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Index a DeepfakeBench JSON as frame records."""
    path = _find_json(root, options.json)
    content = read_json(path, "DeepfakeBench JSON")
    if not isinstance(content, dict) or not content:
        raise DataError(f"{path}: expected an object {{dataset: {{label: {{split: ...}}}}}}")
    if options.dataset is not None:
        if options.dataset not in content:
            raise DataError(f"{path}: no dataset {options.dataset!r} (has {', '.join(content)})")
        dataset = options.dataset
    elif len(content) == 1:
        dataset = next(iter(content))
    else:
        raise DataError(f"{path}: holds several datasets ({', '.join(content)}); pick one with --dataset")

    real, fake = set(options.real_labels), set(options.fake_labels)
    skipped: Counter = Counter()
    resolver = _Resolver(root)
    chosen: dict[str, tuple[str, int, str, list[str]]] = {}  # video id -> (split, label, name, frames)
    for label_key, split, name, info in progress(
            list(_videos(content[dataset], dataset, options.compression, skipped, path.name)), "videos"):
        label_name = str(info.get("label", label_key))
        label = label_of(label_name, real, fake)
        if options.as_split:
            split = options.as_split
        frames = []
        for raw in dict.fromkeys(str(f) for f in info["frames"]):
            rel = resolver(raw)
            if rel is None:
                skipped["frame file not found under ROOT"] += 1
            elif options.check_images and not image_is_readable(root / rel):
                skipped["frame cannot be decoded"] += 1
            else:
                frames.append(rel)
        if not frames:
            skipped["video without frames" if not info["frames"] else "video with no frame found"] += 1
            continue
        video_id = frames[0].rsplit("/", 1)[0] if "/" in frames[0] else f"{label_key}/{name}"
        previous = chosen.get(video_id)
        if previous is not None:
            if previous[0] == split:
                skipped["video listed twice in one split"] += 1
                continue
            skipped["video listed in several splits (kept once, in the most held-out)"] += 1
            if _HELD_OUT[previous[0]] <= _HELD_OUT[split]:
                continue
        chosen[video_id] = (split, label, label_name, frames)

    records = []
    for video_id in sorted(chosen):
        split, label, label_name, frames = chosen[video_id]
        numbered = sorted((_frame_number(rel, i), rel) for i, rel in enumerate(sorted(frames)))
        for frame, rel in numbered:
            records.append(Record(path=rel, split=split, label=label,
                                  method="real" if label == 0 else label_name,
                                  video_id=video_id, frame=frame, extra={"dfb_label": label_name}))
    header = IndexHeader(
        dataset=dataset, task="deepfake", root=str(root.resolve()), classes=["real", "fake"],
        info={"source": "deepfakebench", "json": str(path.resolve()), "compression": options.compression,
              "as_split": options.as_split, "videos": len(chosen)},
    )
    return ImportResult(header=header, records=records, skipped=skipped)
