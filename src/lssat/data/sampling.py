"""Which records of a split an epoch visits: training fraction, frames per video, class balancing.

All choices are seeded: the training subset by the run's seed alone, the per-epoch draws by
(seed, epoch), so every process of a distributed run draws the same sequence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

FRAME_MODES = ("even", "random")


def video_groups(video_ids: Sequence[str | None]) -> list[str | int]:
    """A group key per record: its video id, or its own position when it has none."""
    return [v if v else i for i, v in enumerate(video_ids)]


def fraction_subset(labels: Sequence[int | None], groups: Sequence[str | int], fraction: float,
                    seed: int) -> np.ndarray:
    """Positions of a seeded subset holding `fraction` of the groups (videos, or single records).

    Whole groups are kept or dropped, so the frames of one video stay together. The number kept is
    round(fraction x groups), at least 1; when the records carry labels the subset is stratified
    by the group's label (largest-remainder allocation, so the total is exact).
    """
    members: dict[str | int, list[int]] = defaultdict(list)
    for position, group in enumerate(groups):
        members[group].append(position)
    keys = list(members)
    if fraction >= 1.0 or not keys:
        return np.arange(len(groups))
    first_label = [labels[members[k][0]] for k in keys]
    by_class: dict[int | None, list[int]] = defaultdict(list)
    for g, label in enumerate(first_label):
        by_class[label].append(g)
    classes = sorted(by_class, key=lambda c: (c is None, c if c is not None else 0))
    counts = np.array([len(by_class[c]) for c in classes])
    total = max(1, int(round(fraction * len(keys))))
    quotas = fraction * counts
    take = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - take), kind="stable")
    for c in order:
        if take.sum() >= total:
            break
        if take[c] < counts[c]:
            take[c] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for c, n in zip(classes, take):
        picked = rng.permutation(len(by_class[c]))[:n]
        for g in picked:
            chosen.extend(members[keys[by_class[c][g]]])
    return np.array(sorted(chosen), dtype=np.int64)


def cap_frames(candidates: np.ndarray, groups: Sequence[str | int], frames: Sequence[int | None],
               k: int, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """At most `k` records per group among `candidates`, evenly spaced in frame order or at random."""
    members: dict[str | int, list[int]] = defaultdict(list)
    for position in candidates.tolist():
        members[groups[position]].append(position)
    kept: list[int] = []
    for positions in members.values():
        if len(positions) <= k:
            kept.extend(positions)
            continue
        positions.sort(key=lambda p: (frames[p] is None, frames[p] or 0, p))
        if mode == "even":
            picks = np.unique(np.linspace(0, len(positions) - 1, k).round().astype(int))
        else:
            picks = (rng or np.random.default_rng()).choice(len(positions), size=k, replace=False)
        kept.extend(positions[i] for i in picks)
    return np.array(sorted(kept), dtype=np.int64)


class TrainSampler(Sampler[int]):
    """Per-epoch order of training positions: frames-per-video cap, then balanced or shuffled.

    Without balancing each epoch is a permutation of the (capped) candidates; with balancing, as
    many draws with replacement, each record weighted by 1 / (its label's count among the
    candidates), so every label is drawn equally often in expectation. `set_epoch` is called by
    Lightning; iterating also advances the epoch, so plain loops see fresh draws too.
    """

    def __init__(self, candidates: np.ndarray, labels: Sequence[int | None], groups: Sequence[str | int],
                 frames: Sequence[int | None], *, frames_per_video: int | None = None,
                 frame_mode: str = "even", balance: bool = False, seed: int = 0) -> None:
        self.candidates = np.asarray(candidates, dtype=np.int64)
        self.labels = labels
        self.groups = groups
        self.frames = frames
        self.frames_per_video = frames_per_video
        self.frame_mode = frame_mode
        self.balance = balance
        self.seed = seed
        self.epoch = 0
        self._fixed = None
        if frames_per_video is None or frame_mode == "even":  # the same candidates every epoch
            self._fixed = self._epoch_candidates(None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def possible_positions(self) -> np.ndarray:
        """Every position some epoch can draw (the fixed candidates, or all of them with a random cap)."""
        return self._fixed if self._fixed is not None else self.candidates

    def _epoch_candidates(self, rng: np.random.Generator | None) -> np.ndarray:
        if self.frames_per_video is None:
            return self.candidates
        return cap_frames(self.candidates, self.groups, self.frames, self.frames_per_video, self.frame_mode, rng)

    def epoch_positions(self, epoch: int) -> np.ndarray:
        """The positions drawn in one epoch, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        candidates = self._fixed if self._fixed is not None else self._epoch_candidates(rng)
        if not self.balance:
            return candidates[rng.permutation(len(candidates))]
        labels = np.array([self.labels[p] for p in candidates.tolist()])
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[inverse]
        return rng.choice(candidates, size=len(candidates), replace=True, p=weights / weights.sum())

    def __iter__(self) -> Iterator[int]:
        positions = self.epoch_positions(self.epoch)
        self.epoch += 1
        return iter(positions.tolist())

    def __len__(self) -> int:
        if self._fixed is not None:
            return len(self._fixed)
        return len(self._epoch_candidates(np.random.default_rng(0)))


class FixedSampler(Sampler[int]):
    """A fixed sequence of positions (evaluation subsets, in record order)."""

    def __init__(self, positions: np.ndarray | Sequence[int]) -> None:
        self.positions = [int(p) for p in positions]

    def __iter__(self) -> Iterator[int]:
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)
