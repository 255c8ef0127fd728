"""How hard the synthetic faces are: one documented setting, per-factor knobs, three presets.

A `Difficulty` scales the nuisance factors and the strength of each task's evidence that
`faces.sample_faces` and `deepfakes.manipulate` draw. Every factor is a plain number, so a
benchmark can ask for ``difficulty: default`` or for ``{preset: default, pose: 0.5}``.

Presets (the calibration behind them is in docs/synthetic.md, made by benchmarks/calibrate.py):

- ``hard``: the generator as first released (version 1): full pose range, cluttered backgrounds,
  expressions from 35% intensity, a face that fills about 60% of the frame. Learnable by a small
  CNN at 64 px in minutes, out of reach of tiny models at 32 px.
- ``default``: calibrated so that tiny models (2-block ViT and DeiT, a 2-stage Swin) learn every
  task at 32 px within 200 optimiser steps of 32 images on one CPU thread, with headroom below
  saturation.
- ``easy``: clearer still, for smoke tests and teaching.

The draws do not change with the difficulty (the same uniforms are consumed in the same order),
so the same seed gives the same people, labels and splits at every difficulty: only how strongly
the evidence shows, and how much nuisance surrounds it, changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lssat.errors import ConfigError


@dataclass(frozen=True)
class Difficulty:
    """Per-factor knobs; 1.0 (and the listed defaults) reproduce the ``hard`` preset.

    expression: gain on the expression geometry (brows, eyes, mouth) over the person's neutral.
    intensity_min: lowest expression intensity drawn (uniform in [intensity_min, 1]).
    pose: scale of the pose ranges (shift, roll, yaw, scale spread); 0 is a frontal, centred face.
    zoom: face size in the frame (1.0 fills about 60% of it; 1.3 fills most of it).
    clutter: contrast of the background blocks and gradient (0 is a plain grey background).
    noise: sensor-noise gain (sigma 1.5 to 7 grey levels at 1.0).
    jpeg_min: lowest JPEG quality drawn (uniform up to 95).
    attributes: gain on how visibly the pale-skin attribute shows (its colour shift).
    detail: how strongly the small attributes show (1.0 as first released; k applies each darkening
        or tint k times): make-up, wrinkles, the hat's band and colour, glasses, the bangs' length.
    manipulation: strength of the deepfake artefacts (colour mismatch, resampling, seam).
    """

    expression: float = 1.0
    intensity_min: float = 0.35
    pose: float = 1.0
    zoom: float = 1.0
    clutter: float = 1.0
    noise: float = 1.0
    jpeg_min: float = 55.0
    attributes: float = 1.0
    manipulation: float = 1.0
    detail: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ConfigError(f"synthetic difficulty: {f.name} must be a number, got {value!r}")
        limits = {"intensity_min": (0.0, 1.0), "jpeg_min": (5.0, 95.0), "zoom": (0.5, 2.0),
                  "expression": (0.0, 4.0), "pose": (0.0, 3.0), "clutter": (0.0, 3.0), "noise": (0.0, 5.0),
                  "attributes": (0.0, 4.0), "manipulation": (0.0, 4.0),
                  "detail": (1.0, 4.0)}
        for name, (lo, hi) in limits.items():
            if not lo <= float(getattr(self, name)) <= hi:
                raise ConfigError(f"synthetic difficulty: {name} must lie in [{lo:g}, {hi:g}], "
                                  f"got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, float]:
        """The knobs as plain numbers (for index headers and run records)."""
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


PRESETS: dict[str, Difficulty] = {
    "hard": Difficulty(),
    "default": Difficulty(expression=3.5, intensity_min=1.0, pose=0.1, zoom=1.3, clutter=0.2, noise=1.0,
                          jpeg_min=80.0, attributes=2.5, manipulation=4.0, detail=1.0),
    "easy": Difficulty(expression=4.0, intensity_min=1.0, pose=0.0, zoom=1.35, clutter=0.1, noise=1.0,
                       jpeg_min=85.0, attributes=3.0, manipulation=4.0, detail=4.0),
}
DEFAULT = "default"


def resolve_difficulty(value: Any = DEFAULT) -> Difficulty:
    """A `Difficulty` from a preset name, a mapping of knobs (``preset:`` names the base, default
    ``default``), or a `Difficulty`; a ConfigError names anything unknown."""
    if isinstance(value, Difficulty):
        return value
    if value is None:
        value = DEFAULT
    if isinstance(value, str):
        if value not in PRESETS:
            raise ConfigError(f"synthetic difficulty must be one of {', '.join(PRESETS)} or a mapping of "
                              f"knobs, got {value!r}")
        return PRESETS[value]
    if isinstance(value, Mapping):
        knobs = dict(value)
        base = resolve_difficulty(knobs.pop("preset", DEFAULT))
        names = [f.name for f in fields(Difficulty)]
        unknown = sorted(set(knobs) - set(names))
        if unknown:
            raise ConfigError(f"synthetic difficulty: unknown knob {unknown[0]!r} (known: preset, {', '.join(names)})")
        return dataclasses.replace(base, **knobs)
    raise ConfigError(f"synthetic difficulty must be a preset name or a mapping, got {value!r}")


def difficulty_name(d: Difficulty) -> str:
    """The preset's name when `d` is one, else "custom"."""
    return next((name for name, preset in PRESETS.items() if preset == d), "custom")
