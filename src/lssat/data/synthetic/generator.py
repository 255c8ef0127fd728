"""Generating the synthetic face benchmark: which face each item is, its record, and its pixels.

Every image is a pure function of (task, seed, split, index, size): its random numbers come from
generators seeded by those values, and rendering is exact per face (see `canvas.py`), so item i is
the same whether it is made alone, in any batch, or read back from the written files. Splits use
different seeds, so they share no face.

Tasks:

- ``expression``: 8 classes in AffectNet's code order (`EXPRESSIONS`), drawn uniformly, each with
  an intensity in [0.35, 1] (``extra["intensity"]``; neutral has 0).
- ``attributes``: 10 binary attributes (`ATTRIBUTE_NAMES`), drawn with CelebA-like correlations.
- ``deepfake``: clips of `clip_len` frames; clips come in pairs from one source (same identity,
  motion, background and sensor noise): a real clip, then a fake one made from it by one of the
  methods, taken in turn. ``video_id`` is the clip's video path relative to the data root, unique
  across splits and methods (e.g. ``deepfake/videos/test/fake/Face2Face/0007.mp4``).

Every record carries ``subgroup = {"skin_tone": "light" | "dark"}``; a fraction `dark_fraction` of
the faces (of the sources, for deepfakes) is dark, spread evenly over the indices.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lssat.data.index import SPLITS, TASKS, IndexHeader, Record
from lssat.data.synthetic import camera
from lssat.data.synthetic.deepfakes import METHODS, N_MANIP_UNIFORMS, manipulate
from lssat.data.synthetic.faces import (ATTRIBUTE_NAMES, EXPRESSIONS, N_UNIFORMS, SKIN_GROUPS, Params,
                                        draw_uniforms, sample_faces)
from lssat.data.synthetic.difficulty import Difficulty, difficulty_name, resolve_difficulty
from lssat.data.synthetic.domains import SHIFTED_KEY_OFFSET, check_domain, shift_faces
from lssat.data.synthetic.render import render
from lssat.data.synthetic.video import apply_motion
from lssat.errors import ConfigError

GENERATOR_VERSION = 1
DEFAULT_DARK_FRACTION = 0.25
DEFAULT_CLIP_LEN = 8
MIN_SIZE, MAX_SIZE = 16, 1024
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_TASK_CODES = {"deepfake": 1, "attributes": 2, "expression": 3}
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; checked on creation (ConfigError naming the bad value)."""

    task: str
    size: int = 64
    seed: int = 0
    split: str = "train"
    dark_fraction: float = DEFAULT_DARK_FRACTION
    clip_len: int = DEFAULT_CLIP_LEN
    methods: tuple[str, ...] = METHODS
    difficulty: Difficulty | str | Any = "default"
    domain: str = "default"

    def __post_init__(self) -> None:
        object.__setattr__(self, "difficulty", resolve_difficulty(self.difficulty))
        check_domain(self.domain)
        if self.task not in TASKS:
            raise ConfigError(f"synthetic: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"synthetic: split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if not isinstance(self.size, int) or not MIN_SIZE <= self.size <= MAX_SIZE:
            raise ConfigError(f"synthetic: size must be an integer in {MIN_SIZE}..{MAX_SIZE}, "
                              f"got {self.size!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"synthetic: seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 <= float(self.dark_fraction) <= 1.0:
            raise ConfigError(f"synthetic: subgroup imbalance (fraction of dark skin tones) must be in "
                              f"0..1, got {self.dark_fraction!r}")
        if not isinstance(self.clip_len, int) or self.clip_len < 1:
            raise ConfigError(f"synthetic: clip length must be a positive integer, got {self.clip_len!r}")
        methods = tuple(self.methods)
        unknown = [m for m in methods if m not in METHODS]
        if not methods or unknown:
            raise ConfigError(f"synthetic: methods must be among {', '.join(METHODS)}, got {list(methods)}")
        object.__setattr__(self, "methods", methods)


@dataclass
class Generated:
    """Generated faces: decoded uint8 images (n, H, W, 3), their records, and the JPEG bytes."""

    images: np.ndarray
    records: list[Record]
    jpeg: list[bytes] = field(default_factory=list)


def make_header(spec: SyntheticSpec) -> IndexHeader:
    """The index header of a synthetic dataset (root '.': paths are relative to the data root)."""
    classes = {"expression": list(EXPRESSIONS), "deepfake": ["real", "fake"]}.get(spec.task)
    info: dict[str, Any] = {"generator": "lssat.data.synthetic", "version": GENERATOR_VERSION,
                            "size": spec.size, "seed": spec.seed, "dark_fraction": spec.dark_fraction,
                            "difficulty": difficulty_name(spec.difficulty),
                            "difficulty_knobs": spec.difficulty.to_dict()}
    if spec.task == "deepfake":
        info.update(clip_len=spec.clip_len, methods=list(spec.methods))
    if spec.domain != "default":  # the default domain's header stays as it was
        info["domain"] = spec.domain
    return IndexHeader(dataset="synthetic", task=spec.task, classes=classes,
                       attribute_names=list(ATTRIBUTE_NAMES) if spec.task == "attributes" else None,
                       subgroups=["skin_tone"], info=info)


def _key(spec: SyntheticSpec, unit: int, *extra: int) -> tuple[int, ...]:
    split = _SPLIT_CODES[spec.split] + (SHIFTED_KEY_OFFSET if spec.domain == "shifted" else 0)
    return (spec.seed, split, _TASK_CODES[spec.task], int(unit), *extra)


def is_dark(spec: SyntheticSpec, units: np.ndarray) -> np.ndarray:
    """Skin-tone group of each unit (face, or deepfake source): a golden-ratio sequence below the
    fraction, so any run of n units holds n * dark_fraction dark ones, give or take about one."""
    offset = np.random.default_rng(list(_key(spec, 0, 99))).random()
    return ((np.asarray(units, np.float64) * _GOLDEN + offset) % 1.0) < spec.dark_fraction


def _finish(spec: SyntheticSpec, p: Params, noise_keys: list[tuple[int, ...]],
            method: np.ndarray | None = None, donor: Params | None = None,
            manip_u: np.ndarray | None = None) -> tuple[np.ndarray, list[bytes]]:
    images = camera.expose(render(p, spec.size), p)
    camera.add_noise(images, p["noise"], noise_keys, luma=spec.domain == "shifted")
    if method is not None and (method >= 0).any():
        manipulate(images, p, donor, method, manip_u)
    return camera.finish(images, p["jpeg_quality"])


def _shift(spec: SyntheticSpec, p: Params) -> Params:
    return shift_faces(p, spec.domain, float(spec.difficulty.jpeg_min))


def _subgroup(dark: bool) -> dict[str, str]:
    return {"skin_tone": SKIN_GROUPS[int(dark)]}


def _face_params(spec: SyntheticSpec, index: np.ndarray) -> tuple[Params, np.ndarray]:
    u = draw_uniforms([_key(spec, i) for i in index], N_UNIFORMS + 1)
    dark = is_dark(spec, index)
    labels = None
    if spec.task == "expression":
        labels = np.minimum((u[:, 0] * len(EXPRESSIONS)).astype(np.int64), len(EXPRESSIONS) - 1)
    p = _shift(spec, sample_faces(u[:, 1:], dark, expression=labels, difficulty=spec.difficulty))
    p["frame"] = np.zeros(len(index), np.int64)
    return p, dark


def _face_records(spec: SyntheticSpec, index: np.ndarray, p: Params, dark: np.ndarray) -> list[Record]:
    records = []
    for j, i in enumerate(index):
        path = f"{spec.task}/{spec.split}/{int(i):06d}.jpg"
        if spec.task == "expression":
            records.append(Record(path=path, split=spec.split, label=int(p["expression"][j]),
                                  subgroup=_subgroup(dark[j]),
                                  extra={"intensity": round(float(p["intensity"][j]), 3)}))
        else:
            records.append(Record(path=path, split=spec.split, subgroup=_subgroup(dark[j]),
                                  attributes=[int(a) for a in p["attributes"][j]]))
    return records


def clip_layout(spec: SyntheticSpec, index: np.ndarray) -> dict[str, np.ndarray]:
    """Where deepfake frames `index` sit: source group, frame in clip, and method (-1: real)."""
    clip, frame = np.divmod(np.asarray(index, np.int64), spec.clip_len)
    group, fake = np.divmod(clip, 2)
    order = np.array([METHODS.index(m) for m in spec.methods])
    method = np.where(fake == 1, order[group % len(order)], -1)
    return {"group": group, "frame": frame, "method": method}


def video_id(spec: SyntheticSpec, group: int, method: int) -> str:
    """The video path of a clip, relative to the data root."""
    kind = "real" if method < 0 else f"fake/{METHODS[method]}"
    return f"{spec.task}/videos/{spec.split}/{kind}/{group:04d}.mp4"


def _clip_records(spec: SyntheticSpec, lay: dict[str, np.ndarray]) -> list[Record]:
    dark = is_dark(spec, lay["group"])
    records = []
    for g, f, m, d in zip(lay["group"].tolist(), lay["frame"].tolist(), lay["method"].tolist(), dark):
        kind = "real" if m < 0 else f"fake/{METHODS[m]}"
        records.append(Record(path=f"{spec.task}/{spec.split}/{kind}/{g:04d}/{f:03d}.jpg", split=spec.split,
                              label=int(m >= 0), method="real" if m < 0 else METHODS[m],
                              video_id=video_id(spec, g, m), frame=f, subgroup=_subgroup(d)))
    return records


def _clip_faces(spec: SyntheticSpec, lay: dict[str, np.ndarray]) -> Params:
    """The source faces of deepfake frames (`clip_layout`), posed and moved as in their frame."""
    groups, inverse = np.unique(lay["group"], return_inverse=True)
    u = draw_uniforms([_key(spec, g) for g in groups])[inverse]
    dark = is_dark(spec, lay["group"])
    return apply_motion(_shift(spec, sample_faces(u, dark, difficulty=spec.difficulty)), lay["frame"], spec.clip_len)


def item_faces(spec: SyntheticSpec, index: Sequence[int] | np.ndarray) -> Params:
    """The face parameters (identity, expression, pose in the frame) that items `index` are drawn
    from, without drawing them: for a deepfake frame, its real source face (what a manipulation
    replaces part of). `face_outline` turns them into landmarks."""
    index = _check_index(index)
    if spec.task == "deepfake":
        return _clip_faces(spec, clip_layout(spec, index))
    return _face_params(spec, index)[0]


def _render_clips(spec: SyntheticSpec, index: np.ndarray) -> Generated:
    lay = clip_layout(spec, index)
    groups, inverse = np.unique(lay["group"], return_inverse=True)
    donor_u = draw_uniforms([_key(spec, g, 1) for g in groups])[inverse]
    manip_u = draw_uniforms([_key(spec, g, 2) for g in groups], N_MANIP_UNIFORMS)[inverse]
    dark = is_dark(spec, lay["group"])
    p = _clip_faces(spec, lay)
    donor = _shift(spec, sample_faces(donor_u, dark, difficulty=spec.difficulty))
    # a fake frame shares the sensor noise of its real source frame
    noise_keys = [_key(spec, g, 3, f) for g, f in zip(lay["group"], lay["frame"])]
    images, data = _finish(spec, p, noise_keys, lay["method"], donor, manip_u)
    return Generated(images, _clip_records(spec, lay), data)


def _check_index(index: Sequence[int] | np.ndarray) -> np.ndarray:
    index = np.asarray(index, np.int64).reshape(-1)
    if len(index) and (index < 0).any():
        raise ConfigError(f"synthetic: item indices must be non-negative, got {int(index.min())}")
    return index


def render_items(spec: SyntheticSpec, index: Sequence[int] | np.ndarray) -> Generated:
    """The items at `index` (non-negative integers, any order) of the split `spec` describes."""
    index = _check_index(index)
    if len(index) == 0:
        return Generated(np.zeros((0, spec.size, spec.size, 3), np.uint8), [], [])
    if spec.task == "deepfake":
        return _render_clips(spec, index)
    p, dark = _face_params(spec, index)
    images, data = _finish(spec, p, [_key(spec, i, 1) for i in index])
    return Generated(images, _face_records(spec, index, p, dark), data)


def record_items(spec: SyntheticSpec, index: Sequence[int] | np.ndarray) -> list[Record]:
    """The records of items `index`, without drawing them (about 50x faster than `render_items`)."""
    index = _check_index(index)
    if len(index) == 0:
        return []
    if spec.task == "deepfake":
        return _clip_records(spec, clip_layout(spec, index))
    p, dark = _face_params(spec, index)
    return _face_records(spec, index, p, dark)


def default_batch_size(size: int) -> int:
    """Faces per vectorised batch: large at small sizes (amortise numpy calls), small at large sizes
    (keep the working set in cache)."""
    return int(np.clip(1_000_000 // (size * size), 8, 256))


def iter_batches(spec: SyntheticSpec, start: int, stop: int,
                 batch_size: int | None = None) -> Iterator[Generated]:
    """Items start..stop-1 in consecutive batches."""
    step = batch_size or default_batch_size(spec.size)
    for lo in range(start, stop, step):
        yield render_items(spec, np.arange(lo, min(stop, lo + step)))


def generate(task: str, n: int, size: int = 64, seed: int = 0, split: str = "train", *, start: int = 0,
             dark_fraction: float = DEFAULT_DARK_FRACTION, clip_len: int = DEFAULT_CLIP_LEN,
             methods: Sequence[str] = METHODS, batch_size: int | None = None,
             difficulty: Difficulty | str | Any = "default", domain: str = "default") -> Generated:
    """Items start..start+n-1 of a synthetic split: uint8 (n, size, size, 3) images and records."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"synthetic: number of images must be a non-negative integer, got {n!r}")
    n = int(n)
    spec = SyntheticSpec(task, size, seed, split, dark_fraction, clip_len, tuple(methods), difficulty, domain)
    parts = list(iter_batches(spec, start, start + n, batch_size))
    if not parts:
        return render_items(spec, [])
    return Generated(np.concatenate([g.images for g in parts]), [r for g in parts for r in g.records],
                     [d for g in parts for d in g.jpeg])
