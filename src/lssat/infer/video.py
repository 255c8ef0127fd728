"""Scoring a video: decode frames, find and align the face, batch the model, aggregate to one score.

Frames: `frames=N` scores N evenly spaced frames (first and last included: the same frames
`lssat preprocess --frames N` crops, so a model is scored as it was evaluated); `frames=0` streams
and scores every frame.

Faces: the preprocessing detector finds the largest face; alignment and crop follow training
(margin, crop size), then the crop is resized to the model input. With `detect_every=K > 1` the
detector runs on every K-th scored frame only; in between, the last face box is reused and, for
dlib, its 5 landmarks are re-fitted on the current frame (about 1 ms) and the box follows their
shift, so the alignment tracks small motion. A frame where the detector finds nothing is counted
as "no face" and the next frame is detected again. `faces="crop"` scores whole frames (already
cropped face videos); "auto" means "detect" for videos.

Aggregation (`aggregate`): per score column over the scored frames: "mean" (default), "median",
"max", or "topk:K" (mean of the K largest). For expression models the aggregated vector is
renormalised to sum to 1.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lssat.errors import ConfigError, DataError
from lssat.infer.results import FileResult

if TYPE_CHECKING:
    from lssat.infer.predictor import Predictor
    from lssat.preprocess.faces import Face, FaceDetector

AGGREGATES = ("mean", "median", "max", "topk:K")


class StageTimer:
    """Seconds spent per stage (decode, detect, align, model), summed over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.frames = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds


def _tick(timer: StageTimer | None, stage: str, start: float) -> float:
    now = time.perf_counter()
    if timer is not None:
        timer.add(stage, now - start)
    return now


def check_aggregate(how: str) -> tuple[str, int]:
    """Parse an aggregation name: ("mean" | "median" | "max" | "topk", k)."""
    if how in ("mean", "median", "max"):
        return how, 0
    if how.startswith("topk:"):
        try:
            k = int(how[5:])
        except ValueError:
            k = 0
        if k >= 1:
            return "topk", k
    raise ConfigError(f"aggregate must be mean, median, max or topk:K (K >= 1), got {how!r}")


def aggregate_scores(scores: np.ndarray, how: str = "mean", renormalise: bool = False) -> np.ndarray:
    """Aggregate (F, K) per-frame scores to (K,), per column (see the module notes)."""
    name, k = check_aggregate(how)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise DataError(f"aggregate: need a non-empty (frames, scores) array, got shape {scores.shape}")
    if name == "mean":
        out = scores.mean(axis=0)
    elif name == "median":
        out = np.median(scores, axis=0)
    elif name == "max":
        out = scores.max(axis=0)
    else:
        k = min(k, scores.shape[0])
        out = np.sort(scores, axis=0)[-k:].mean(axis=0)
    if renormalise and out.sum() > 0:
        out = out / out.sum()
    return out


def iter_frames(path: Path, frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB uint8) of `frames` evenly spaced frames, or of every frame when 0."""
    if frames > 0:
        from lssat.preprocess.frames import sample_frames

        yield from sample_frames(path, frames)
        return
    import av

    from lssat.preprocess.frames import open_video

    container = open_video(path)
    index = -1
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            yield index, frame.to_ndarray(format="rgb24")
    except av.FFmpegError as err:
        raise DataError(f"{path}: cannot decode video at frame {index + 1} ({str(err).splitlines()[0][:160]})") from None
    finally:
        container.close()
    if index < 0:
        raise DataError(f"{path}: no frame could be decoded")


class FaceTracker:
    """Detect every `detect_every` frames, reuse (and for dlib, re-fit) the face in between."""

    def __init__(self, detector: FaceDetector, detect_every: int = 1) -> None:
        if not isinstance(detect_every, int) or detect_every < 1:
            raise ConfigError(f"detect_every must be an integer >= 1, got {detect_every!r}")
        self.detector = detector
        self.detect_every = detect_every
        self.last: Face | None = None
        self.since = 0
        self._shape = None
        if detect_every > 1 and getattr(detector, "name", "") == "dlib":
            import dlib

            from lssat.preprocess.faces import five_point_model_path

            self._dlib = dlib
            self._shape = dlib.shape_predictor(str(five_point_model_path()))

    def locate(self, rgb: np.ndarray, timer: StageTimer | None = None) -> Face | None:
        """The face to crop in this frame, or None."""
        start = time.perf_counter()
        if self.last is None or self.since >= self.detect_every - 1:
            faces = self.detector.detect(rgb)
            self.last = max(faces, key=lambda f: (f.area, f.score)) if faces else None
            self.since = 0
            _tick(timer, "detect", start)
        else:
            self.since += 1
            if self._shape is not None and self.last.landmarks is not None:
                self.last = self._refit(rgb, self.last)
            _tick(timer, "track", start)
        return self.last

    def _refit(self, rgb: np.ndarray, face: Face) -> Face:
        from lssat.preprocess.faces import Face

        x0, y0, x1, y1 = face.box
        rect = self._dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
        shape = self._shape(rgb, rect)
        landmarks = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)
        dx, dy = landmarks.mean(axis=0) - face.landmarks.mean(axis=0)
        return Face(box=(x0 + dx, y0 + dy, x1 + dx, y1 + dy), score=face.score, landmarks=landmarks,
                    scheme=face.scheme)


def score_video(predictor: Predictor, path: str | Path, faces: str = "auto", frames: int = 32,
                aggregate: str = "mean", detect_every: int = 1, timer: StageTimer | None = None) -> FileResult:
    """Score one video file; problems (unreadable, no face in any frame) go into the result."""
    from lssat.infer.predictor import _check_mode, chw_tensor
    from lssat.preprocess.align import align_face

    check_aggregate(aggregate)
    _check_mode(faces)
    if not isinstance(frames, int) or frames < 0:
        raise ConfigError(f"frames must be an integer >= 0 (0 = every frame), got {frames!r}")
    path = Path(path)
    result = FileResult(str(path), "video")
    tracker = FaceTracker(predictor.detector, detect_every) if faces != "crop" else None
    spec = predictor.spec
    pending: list[torch.Tensor] = []
    scores: list[np.ndarray] = []
    clip_frames = getattr(predictor.model, "num_frames", None)  # a clip model scores clips of the crops

    def flush() -> None:
        start = time.perf_counter()
        if clip_frames:
            from lssat.infer.clips import clip_batch

            scores.append(predictor.scores(clip_batch(pending, clip_frames, spec.clip)))
        else:
            scores.append(predictor.scores(torch.stack(pending)))
        pending.clear()
        _tick(timer, "model", start)

    try:
        start = time.perf_counter()
        for index, rgb in iter_frames(path, frames):
            start = _tick(timer, "decode", start)
            if tracker is not None:
                face = tracker.locate(rgb, timer)
                if face is None:
                    result.frames_no_face += 1
                    start = time.perf_counter()
                    continue
                align_start = time.perf_counter()
                crop = chw_tensor(align_face(rgb, face, spec.margin, spec.crop_size).image)
            else:
                align_start = time.perf_counter()
                crop = chw_tensor(rgb)
            pending.append(predictor.to_model_input(crop))
            _tick(timer, "align", align_start)
            result.frame_indices.append(index)
            if len(pending) >= predictor.batch_size and not clip_frames:
                flush()
            start = time.perf_counter()
        if pending:
            flush()
    except DataError as err:
        result.error = str(err).removeprefix(f"{path}: ")
        return result
    if timer is not None:
        timer.frames += len(result.frame_indices) + result.frames_no_face
    result.frames_scored = len(result.frame_indices)
    if not result.frames_scored:
        total = result.frames_no_face
        result.error = f"no face found in any of the {total} frames scored (faces={faces})"
        return result
    result.frame_scores = np.concatenate(scores)
    if clip_frames:
        result.notes.append(f"clip model: {len(result.frame_scores)} clips of {clip_frames} face crops scored "
                            f"(frame_scores holds one row per clip)")
    combined = aggregate_scores(result.frame_scores, aggregate, renormalise=predictor.kind == "expression")
    result.prediction = predictor.make_prediction(combined)
    if result.frames_no_face:
        result.notes.append(f"{result.frames_no_face} of {result.frames_scored + result.frames_no_face} "
                            "frames had no face")
    return result
