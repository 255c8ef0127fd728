"""The built-in synthetic faces: `lssat index synthetic ROOT --task TASK` generates them into ROOT.

Unlike the other importers this one writes the data: JPEG files under ``ROOT/<task>/<split>/``
(and, with --videos, each deepfake clip as a video at its ``video_id``; with --video-index only the
videos, one record each, ready for `lssat preprocess`). Nothing is skipped.
See `lssat.data.synthetic` and docs/synthetic.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lssat.data.formats import ImportResult
from lssat.data.index import TASKS
from lssat.errors import ConfigError

NAME = "synthetic"
HELP = "built-in procedural faces (no download): generates images for a task into ROOT"
CREATES_ROOT = True  # `lssat index` may be given a ROOT that does not exist yet

_DEFAULTS = {"train": 2000, "val": 500, "test": 500}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Synthetic-data options."""
    parser.add_argument("--task", choices=TASKS, default=None,
                        help="what the labels are: deepfake (real/fake clips), attributes (10 binary), "
                             "expression (8 classes); required")
    for split, n in _DEFAULTS.items():
        parser.add_argument(f"--{split}", type=int, default=n, metavar="N",
                            help=f"number of {split} images (default {n}; deepfakes: frames)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--subgroup-imbalance", type=float, default=0.25, metavar="FRACTION",
                        help="fraction of faces in the 'dark' skin-tone subgroup (default 0.25; "
                             "0.5 is balanced)")
    parser.add_argument("--difficulty", choices=("easy", "default", "hard"), default="default",
                        help="how clearly the labels show and how much nuisance surrounds them "
                             "(default: calibrated for tiny models at 32 px; hard: the first release's "
                             "faces); see docs/synthetic.md")
    parser.add_argument("--clip-len", type=int, default=8, help="deepfake frames per clip (default 8)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help="deepfake methods to use in turn (default: Deepfakes Face2Face FaceSwap "
                             "NeuralTextures)")
    parser.add_argument("--videos", action="store_true",
                        help="also write each deepfake clip as a video file (its video_id)")
    parser.add_argument("--video-index", action="store_true",
                        help="write only the deepfake clip videos and index them, one record per video "
                             "(as `lssat index ffpp` does), for `lssat preprocess`")


def build_index(root: Path, options: argparse.Namespace) -> ImportResult:
    """Generate the images under `root` and return their records."""
    from lssat.data.synthetic import METHODS, write_synthetic

    task = getattr(options, "task", None)
    if task is None:
        raise ConfigError(f"synthetic: --task is required ({', '.join(TASKS)})")
    sizes = {s: getattr(options, s, n) for s, n in _DEFAULTS.items()}
    for split, n in sizes.items():
        if n < 0:
            raise ConfigError(f"synthetic: --{split} must be >= 0, got {n}")
    if sum(sizes.values()) == 0:
        raise ConfigError("synthetic: --train, --val and --test are all 0; nothing to generate")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: exists and is not a folder")
    return write_synthetic(root, task, sizes, size=getattr(options, "size", 64),
                           seed=getattr(options, "seed", 0),
                           dark_fraction=getattr(options, "subgroup_imbalance", 0.25),
                           clip_len=getattr(options, "clip_len", 8),
                           difficulty=getattr(options, "difficulty", "default"),
                           methods=getattr(options, "methods", None) or METHODS,
                           videos=getattr(options, "videos", False),
                           video_records=getattr(options, "video_index", False),
                           progress=getattr(options, "progress", True))
