"""Short clips of one identity in small motion, and writing them as real video files (PyAV)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lssat.data.synthetic.faces import Params
from lssat.errors import InputError, MissingDependencyError

F32 = np.float32
CODECS = ("libx264", "mpeg4")  # tried in this order


def apply_motion(p: Params, frame: np.ndarray, clip_len: int) -> Params:
    """The faces of `p` at frame `frame` (B,) of clips of `clip_len` frames.

    Per clip (from ``p["motion"]``): a drift of position, roll, yaw and scale across the clip, a
    small sway, talking (the mouth opening and closing) and sometimes a blink.
    """
    m = p["motion"].astype(np.float64)
    frame = np.asarray(frame)
    t = frame / max(1, clip_len - 1)
    two_pi = 2 * np.pi
    q = dict(p)
    q["cx"] = (p["cx"] + (m[:, 0] - 0.5) * 0.06 * t + 0.008 * np.sin(two_pi * (t * (1 + 2 * m[:, 1])
                                                                             + m[:, 2]))).astype(F32)
    q["cy"] = (p["cy"] + (m[:, 3] - 0.5) * 0.04 * t).astype(F32)
    q["roll"] = (p["roll"] + (m[:, 4] - 0.5) * 0.08 * t).astype(F32)
    q["yaw"] = np.clip(p["yaw"] + (m[:, 5] - 0.5) * 0.5 * t, -0.8, 0.8).astype(F32)
    q["scale"] = (p["scale"] * (1 + (m[:, 6] - 0.5) * 0.04 * t)).astype(F32)
    talk = m[:, 7] * 0.035 * np.maximum(0.0, np.sin(two_pi * ((1 + 2 * m[:, 8]) * t + m[:, 9])))
    q["mouth_open"] = (p["mouth_open"] + talk).astype(F32)
    blink = (m[:, 10] < 0.3) & (frame == np.floor(m[:, 11] * clip_len))
    q["eye_open"] = np.where(blink, p["eye_open"] * 0.15, p["eye_open"]).astype(F32)
    q["frame"] = frame.astype(np.int64)
    return q


def write_clip_video(path: str | os.PathLike, frames: np.ndarray | Sequence[np.ndarray], fps: int = 25,
                     codec: str | None = None) -> str:
    """Write uint8 RGB frames (T x H x W x 3, H and W even) as a video file; returns the codec used.

    The container follows the file name (``.mp4``, ``.avi``, ``.mkv``); the codec is H.264
    (libx264) when this PyAV build can encode it, else MPEG-4 part 2, unless `codec` names one.
    """
    try:
        import av
    except ImportError:  # pragma: no cover
        raise MissingDependencyError("writing videos needs PyAV: pip install av") from None
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"{path}: frames must be a non-empty uint8 array T x H x W x 3, "
                         f"got shape {frames.shape} dtype {frames.dtype}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise InputError(f"{path}: frame size {width}x{height} must be even for yuv420p video")
    name = codec or _available_codec(av)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(name, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if name == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image),
                                                                   format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return name


def _available_codec(av) -> str:
    for name in CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - PyAV raises different types across versions
            continue
    raise MissingDependencyError(f"this PyAV build can encode none of {', '.join(CODECS)}")
