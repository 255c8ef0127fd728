"""Clips for a clip model at inference: the face crops of a video cut as the evaluation cuts them.

`lssat predict` on a video with a clip model collects the face crops of the scored frames (the
tracked crops, `lssat.infer.video`), then scores the evaluation clips of that crop sequence: as many
evenly spaced clips as the model's training config had ``data.clip.eval_clips`` (4 when unknown),
each of T crops ``stride`` apart (`lssat.data.clips`, the same rule as evaluation: a sequence
shorter than a clip repeats its last crop). The video score is the aggregate over the clips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lssat.data.clips import ClipConfig, clip_positions, eval_starts


def clip_batch(crops: Sequence[torch.Tensor], frames: int, clip: Mapping[str, Any] | None = None) -> torch.Tensor:
    """(K, T, 3, S, S) evaluation clips of a sequence of (3, S, S) crops (see the module notes)."""
    cfg = ClipConfig(frames=frames, stride=int((clip or {}).get("stride", 1)),
                     eval_clips=int((clip or {}).get("eval_clips", 4)))
    order = list(range(len(crops)))
    stacked = torch.stack(list(crops))
    return torch.stack([stacked[clip_positions(order, start, cfg.frames, cfg.stride)]
                        for start in eval_starts(len(order), cfg)])
