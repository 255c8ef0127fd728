"""Video decoding and frame sampling with PyAV.

`sample_frames(path, n)` returns `n` evenly spaced frames of a video as RGB uint8 arrays, each
with its frame index (0-based, in presentation order). The first and the last frame are always
among them; with `n <= 0`, or `n` at least the frame count, every frame is returned.

Frame indices count decoded frames, so they match what any sequential decoder of the same file
yields. Rotation metadata (phone videos) is not applied.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lssat.errors import DataError

#: File name endings treated as videos (lower case).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".ts", ".3gp")


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether a file name ends like a video (see VIDEO_EXTENSIONS)."""
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def sample_indices(total: int, n: int) -> list[int]:
    """`n` evenly spaced frame indices in 0..total-1, first and last included, strictly increasing.

    `n <= 0` or `n >= total` gives every index. Positions are rounded half up, so the result does
    not depend on banker's rounding.
    """
    if total <= 0:
        return []
    if n <= 0 or n >= total:
        return list(range(total))
    if n == 1:
        return [0]
    positions = np.linspace(0.0, total - 1, n)
    # The step is >= 1 whenever n < total, so rounding keeps the indices distinct.
    return [int(i) for i in np.floor(positions + 0.5)]


def open_video(path: Path):
    """Open a video with PyAV, or raise DataError naming the file and the problem."""
    import av

    from lssat.paths import file_problem

    problem = file_problem(path)
    if problem is not None:
        raise DataError(f"{path}: video file {problem}")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read video ({_reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream in the file")
    return container


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]


def count_frames(path: str | os.PathLike) -> int:
    """The number of frames of a video: the container's count, else a count of its packets."""
    import av

    path = Path(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as err:
        raise DataError(f"{path}: cannot read video ({_reason(err)})") from None
    finally:
        container.close()


def _decode_at(path: Path, wanted: Sequence[int]) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Decode sequentially, converting only the wanted frames; returns them and the frames seen."""
    import av

    want = set(wanted)
    last = max(want) if want else -1
    out: list[tuple[int, np.ndarray]] = []
    seen = 0
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            seen = index + 1
            if index in want:
                out.append((index, frame.to_ndarray(format="rgb24")))
            if index >= last:
                break
    except av.FFmpegError as err:
        raise DataError(f"{path}: cannot decode video at frame {seen} ({_reason(err)})") from None
    finally:
        container.close()
    return out, seen


def sample_frames(video_path: str | os.PathLike, n: int) -> list[tuple[int, np.ndarray]]:
    """`n` evenly spaced frames of a video as (frame index, RGB uint8 array H x W x 3).

    Raises DataError naming the file when it is missing, not a video, or cannot be decoded.
    When the container's frame count overstates the decodable frames, the frames are sampled
    again over the true count, so the spacing stays even.
    """
    path = Path(video_path)
    total = count_frames(path)
    if total <= 0:
        raise DataError(f"{path}: the video has no frames")
    wanted = sample_indices(total, n)
    frames, seen = _decode_at(path, wanted)
    if len(frames) < len(wanted):
        if seen == 0:
            raise DataError(f"{path}: no frame could be decoded")
        wanted = sample_indices(seen, n)
        frames, _ = _decode_at(path, wanted)
    return frames


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int = 25,
                codec: str = "libx264", crf: int = 18) -> Path:
    """Encode RGB uint8 frames (all the same even-sided size) into a video file.

    For tests, benchmarks and synthetic data; `crf` sets the quality of the x264 codec.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = None
        for rgb in frames:
            if stream is None:
                height, width = rgb.shape[:2]
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": str(crf), "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path
