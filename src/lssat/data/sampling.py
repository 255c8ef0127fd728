"""Which records of a split an epoch visits: training fraction, frames per video, class balancing.

All choices are seeded: the training subset by the run's seed alone, the per-epoch draws by
(seed, epoch), so every process of a distributed run draws the same sequence.

The training sampler yields each position as a `Draw`: an int that also knows its epoch and its
place in that epoch's sequence. The training augmentation seeds each batch from the draw of its
first sample (`batch_seed`), so a batch's augmentation is a function of (seed, epoch, place) alone,
whichever process or worker cuts it; and a run resumed in the middle of an epoch
(`TrainSampler.resume_at`) skips the draws already trained on and gets the very same batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

FRAME_MODES = ("even", "random")


class Draw(int):
    """A sampled position (an int, usable wherever one is) that knows where it was drawn: its
    `epoch` and its place `draw` in that epoch's sequence of the training sampler."""

    def __new__(cls, position: int, epoch: int, draw: int) -> Draw:
        obj = super().__new__(cls, position)
        obj.epoch = epoch
        obj.draw = draw
        return obj

    def __reduce__(self) -> tuple[Any, tuple[int, int, int]]:  # to DataLoader workers and back
        return Draw, (int(self), self.epoch, self.draw)

    def __repr__(self) -> str:
        return f"Draw({int(self)}, epoch={self.epoch}, draw={self.draw})"


def batch_seed(seed: int, positions: Sequence[int]) -> int | None:
    """The augmentation seed of a batch: a hash of (seed, epoch, draw) of its first sample, or
    None when the positions are plain ints (not from a `TrainSampler`)."""
    first = positions[0] if len(positions) else None
    if not isinstance(first, Draw):
        return None
    words = [int(seed) % 2**64, int(first.epoch) % 2**64, int(first.draw) % 2**64]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


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

    Positions come out as `Draw` ints. `resume_at(epoch, draws)` makes the next iteration of that
    epoch start after its first `draws` draws (a run resumed mid-epoch). `epoch_source`, when set,
    gives the epoch of each iteration instead (the trainer's own count: after some resumes
    Lightning's `set_epoch` runs one ahead of the epoch it trains).
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
        self._resume: tuple[int, int] | None = None
        self.epoch_source: Callable[[], int | None] | None = None
        self._fixed = None
        if frames_per_video is None or frame_mode == "even":  # the same candidates every epoch
            self._fixed = self._epoch_candidates(None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, draws: int = 0) -> None:
        """Make the next iteration epoch `epoch` without its first `draws` draws (done already).

        The next iteration is that epoch whenever it comes: a DataLoader with workers starts
        iterating when Lightning sets it up, before the trainer's epoch count is restored."""
        self.epoch = int(epoch)
        self._resume = (int(epoch), max(0, int(draws)))

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
        if self._resume is not None:
            (epoch, start), self._resume = self._resume, None
        else:
            epoch = self.epoch_source() if self.epoch_source is not None else None
            epoch, start = (self.epoch if epoch is None else epoch), 0
        positions = self.epoch_positions(epoch)
        start = min(start, len(positions))
        self.epoch = epoch + 1
        return (Draw(p, epoch, i) for i, p in enumerate(positions[start:].tolist(), start))

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
