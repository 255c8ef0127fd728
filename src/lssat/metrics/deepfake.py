"""Deepfake detection metrics: ACC, frame AUC, video AUC, EER, AP and per-manipulation AUC.

Scores are probabilities of "fake" (label 1). A frame counts as predicted fake at score >= threshold
(0.5). The video score is the mean of its frame scores, videos keyed by the full video id string
(never a folder name, which the FF++ methods reuse). Per-manipulation AUC compares each method's
fakes with all reals. The EER is where the false-negative rate equals the false-positive rate on
the ROC curve joined by straight lines (the usual `brentq` on `interp1d(fpr, tpr)` computation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc

from lssat.errors import InputError
from lssat.metrics.classification import NamedStatesMetric, fraction, stable_hash, to_float64

NO_VIDEO = -1  # key of a frame that belongs to no video (left out of the video-level metrics)


def roc_auc(scores: Tensor, target: Tensor) -> float:
    """Area under the ROC curve; nan unless both classes are present."""
    if not _both_classes(target):
        return math.nan
    return float(binary_auroc(to_float64(scores), target.long(), validate_args=False))


def average_precision(scores: Tensor, target: Tensor) -> float:
    """Average precision (scikit-learn's step-wise definition); nan unless both classes are present."""
    if not _both_classes(target):
        return math.nan
    return float(binary_average_precision(to_float64(scores), target.long(), validate_args=False))


def equal_error_rate(scores: Tensor, target: Tensor) -> float:
    """The rate at which FNR = FPR on the linearly interpolated ROC curve; nan unless both classes."""
    if not _both_classes(target):
        return math.nan
    fpr, tpr, _ = binary_roc(to_float64(scores), target.long(), validate_args=False)
    fpr, tpr = fpr.cpu().tolist(), tpr.cpu().tolist()
    # gap = FNR - FPR falls monotonically along the curve, from 1 at (0, 0) to -1 at (1, 1)
    gap = [1.0 - t - f for f, t in zip(fpr, tpr)]
    for i in range(len(gap) - 1):
        if gap[i] >= 0.0 >= gap[i + 1]:
            if gap[i] == gap[i + 1]:
                return fpr[i]
            w = gap[i] / (gap[i] - gap[i + 1])
            return fpr[i] + w * (fpr[i + 1] - fpr[i])
    return math.nan  # unreachable for a valid ROC curve


def _both_classes(target: Tensor) -> bool:
    return bool(target.numel()) and bool((target == 0).any()) and bool((target == 1).any())


def video_scores(scores: Tensor, target: Tensor, videos: Tensor) -> tuple[Tensor, Tensor, int]:
    """Mean score and label per video (frames with key NO_VIDEO left out).

    Returns (scores, labels, number of videos whose frames disagree on the label); such a video
    takes the label "fake" if any frame is fake.
    """
    keep = videos != NO_VIDEO
    scores, target, videos = to_float64(scores[keep]), target[keep].long(), videos[keep]
    _, inverse = torch.unique(videos, return_inverse=True)
    n = int(inverse.max()) + 1 if inverse.numel() else 0
    total = torch.zeros(n, dtype=scores.dtype, device=scores.device).index_add_(0, inverse, scores)
    count = torch.bincount(inverse, minlength=n).to(scores.dtype)
    high = torch.zeros(n, dtype=torch.long, device=target.device).scatter_reduce_(0, inverse, target, "amax")
    low = torch.ones(n, dtype=torch.long, device=target.device).scatter_reduce_(0, inverse, target, "amin")
    return total / count.clamp(min=1), high, int((high != low).sum())


class DeepfakeMetrics(NamedStatesMetric):
    """Frame- and video-level binary detection metrics, accumulated over batches and ranks."""

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.clips = False  # samples are clips (a clip model): frame-level figures are per clip
        self.add_cat_state("scores", torch.float32)
        self.add_cat_state("target", torch.long)
        self.add_cat_state("video", torch.long)
        self.add_cat_state("method", torch.long)
        self.add_name_states("method")

    def update(self, scores: Tensor, target: Tensor, video_ids: Sequence[str | None] | None = None,
               methods: Sequence[str | None] | None = None) -> None:
        """scores: (B,) probabilities of fake; target: (B,) 0 real / 1 fake.

        video_ids: the full video id per frame (None or "" for a frame of no video, or no list at
        all for an image dataset). methods: manipulation name per frame; missing (None or "") names
        become "real" for label 0 and "fake" for label 1.
        """
        scores = scores.detach().reshape(-1)
        target = target.detach().reshape(-1).long()
        b = scores.numel()
        if target.numel() != b:
            raise InputError(f"{b} scores but {target.numel()} labels")
        if b and (scores.min() < 0 or scores.max() > 1):
            raise InputError("deepfake scores must be probabilities in [0, 1] (apply a sigmoid to logits)")
        if b and not bool(((target == 0) | (target == 1)).all()):
            raise InputError("deepfake labels must be 0 (real) or 1 (fake)")
        labels = target.tolist()
        if video_ids is None:
            video_ids = [None] * b
        if methods is None:
            methods = [None] * b
        if len(video_ids) != b or len(methods) != b:
            raise InputError(f"{b} scores but {len(video_ids)} video ids and {len(methods)} method names")
        videos = torch.tensor([NO_VIDEO if v in (None, "") else stable_hash(str(v)) for v in video_ids],
                              dtype=torch.long, device=self.device)
        names = [m if m not in (None, "") else ("fake" if y else "real") for m, y in zip(methods, labels)]
        self.scores.append(scores.float())
        self.target.append(target)
        self.video.append(videos)
        self.method.append(self.remember_names("method", names))

    def compute(self) -> dict[str, Any]:
        scores, target = self.cat("scores"), self.cat("target")
        video, method = self.cat("video"), self.cat("method")
        notes: list[str] = []
        n_fake = int(target.sum())
        n_real = int(target.numel()) - n_fake
        if not target.numel():
            notes.append("no samples")
        elif not n_fake or not n_real:
            notes.append(f"only {'fake' if n_fake else 'real'} frames: AUC, EER and AP are undefined (nan)")
        v_scores, v_target, conflicts = video_scores(scores, target, video)
        if conflicts:
            notes.append(f"{conflicts} videos hold both real and fake frames (counted as fake)")
        if target.numel() and not v_target.numel():
            notes.append("no video ids: video-level metrics are undefined (nan)")
        elif v_target.numel() and not _both_classes(v_target):
            notes.append("videos of one class only: video AUC is undefined (nan)")
        correct = ((scores >= self.threshold).long() == target).sum()
        v_correct = ((v_scores >= self.threshold).long() == v_target).sum()
        out: dict[str, Any] = {
            "acc": fraction(int(correct), target.numel()),
            "frame_auc": roc_auc(scores, target),
            "video_auc": roc_auc(v_scores, v_target),
            "video_acc": fraction(int(v_correct), v_target.numel()),
            "eer": equal_error_rate(scores, target),
            "ap": average_precision(scores, target),
            "n_frames": int(target.numel()),
            "n_real": n_real,
            "n_fake": n_fake,
            "n_videos": int(v_target.numel()),
        }
        names = self.names("method")
        reals = target == 0
        for key in sorted(set(method[target == 1].tolist()), key=lambda k: names.get(k, "")):
            chosen = reals | ((method == key) & (target == 1))
            out[f"auc/{names.get(key, f'method-{key:x}')}"] = roc_auc(scores[chosen], target[chosen])
        if n_fake and not n_real:
            notes.append("no real frames: per-method AUC is undefined (nan)")
        if self.clips:
            out["clip_auc"] = out["frame_auc"]
            notes.append("samples are clips: acc, frame_auc (= clip_auc), eer, ap and n_frames count clips")
        out["notes"] = notes
        return out


# ------------------------------------------------------------------ DeepfakeBench's definitions
DEEPFAKEBENCH_THRESHOLD = 0.5  # DeepfakeBench: fake when the probability is above 0.5 (strictly)


def deepfakebench_video_key(name: str, frame_path: bool = False) -> str:
    """DeepfakeBench's video of a frame: the name of the folder holding the frame file (the path's
    second-to-last part, split on backslashes when the path has any, else on slashes). For an lssat
    video id (no frame file), the same folder name is the id's last part. FF++ methods reuse these
    names, so same-named videos of different methods are one video there."""
    parts = name.split("\\") if "\\" in name else name.split("/")
    return parts[-2] if frame_path else parts[-1]


def deepfakebench_metrics(scores: Sequence[float] | Tensor, labels: Sequence[int] | Tensor,
                          video_ids: Sequence[str] | None = None,
                          frame_paths: Sequence[str] | None = None) -> dict[str, float]:
    """Test metrics as DeepfakeBench computes them (its ``get_test_metrics``), for numbers comparable
    with its published tables; see docs/metrics.md for how they differ from lssat's.

    - ``auc``: ROC AUC over frames (as lssat's ``frame_auc``).
    - ``eer``: the false-positive rate at the point of scikit-learn's ROC curve (``roc_curve`` with
      its default ``drop_intermediate``) where ``|FNR - FPR|`` is smallest, the first such point;
      no interpolation (lssat's ``eer`` interpolates between the curve's points).
    - ``ap``: average precision (as lssat's).
    - ``acc``: frames predicted fake at probability > 0.5 (lssat: >= ``threshold``).
    - ``video_auc``: ROC AUC over videos, a video's score the mean of its frames' and its label
      the floor of its frames' mean label (fake only when every frame is fake); videos keyed by
      `deepfakebench_video_key` of `frame_paths` (DeepfakeBench's input) or of `video_ids`;
      nan without either.

    A value undefined on the data (one class only) is nan.
    """
    import warnings

    import numpy as np
    from sklearn import metrics

    y_score = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float64).ravel()
    y_true = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels, dtype=np.int64).ravel()
    if y_score.shape != y_true.shape:
        raise InputError(f"{y_score.size} scores but {y_true.size} labels")

    def auc_eer(y: Any, s: Any) -> tuple[float, float]:
        if not (y == 0).any() or not (y == 1).any():
            return math.nan, math.nan
        fpr, tpr, _ = metrics.roc_curve(y, s, pos_label=1)
        return float(metrics.auc(fpr, tpr)), float(fpr[np.nanargmin(np.absolute((1 - tpr) - fpr))])

    auc, eer = auc_eer(y_true, y_score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AP of a split without fakes: scikit-learn warns, we say nan
        ap = float(metrics.average_precision_score(y_true, y_score)) if (y_true == 1).any() else math.nan
    acc = float(((y_score > DEEPFAKEBENCH_THRESHOLD).astype(np.int64) == np.clip(y_true, 0, 1)).mean()) \
        if y_true.size else math.nan
    names, from_frames = (frame_paths, True) if frame_paths is not None else (video_ids, False)
    video_auc = math.nan
    if names is not None:
        if len(names) != y_true.size:
            raise InputError(f"{y_true.size} scores but {len(names)} video ids or frame paths")
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(deepfakebench_video_key(str(name), from_frames), []).append(i)
        v_score = np.array([y_score[idx].mean() for idx in groups.values()])
        v_true = np.array([int(y_true[idx].sum() // len(idx)) for idx in groups.values()])
        video_auc = auc_eer(v_true, v_score)[0]
    return {"acc": acc, "auc": auc, "eer": eer, "ap": ap, "video_auc": video_auc}
