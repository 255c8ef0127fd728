"""Face manipulations in the spirit of FaceForensics++, applied to camera frames before JPEG.

Each method replaces part of a real frame with a re-synthesised face region, so its evidence is
local: a blending seam, a colour mismatch, missing sensor noise, resampling blur or blockiness.
Outside the blend mask a fake frame equals its real source exactly (before JPEG).

- ``Deepfakes``: the inner face of another identity (same pose and expression), synthesised at 0.6
  resolution like an autoencoder output, colour-shifted, blended with a wide feathered seam.
- ``Face2Face``: the face's own mouth and jaw re-rendered with another expression at half
  resolution and upsampled with nearest neighbours (blocky), blended softly.
- ``FaceSwap``: another identity's inner face, slightly misaligned (scale, roll, shift: a warp),
  rendered at 0.85 resolution, colour-mismatched and pasted with a nearly hard edge.
- ``NeuralTextures``: the lower face re-synthesised at a third of the resolution (smooth texture, no
  sensor noise) with a slightly changed mouth, blended softly.

A manipulation is fixed per clip (from clip-level uniforms); the mask wobbles a little per frame,
as real deepfakes flicker.
"""

from __future__ import annotations

import numpy as np

from lssat.data.synthetic.camera import expose
from lssat.data.synthetic.canvas import F32, Canvas, ramp
from lssat.data.synthetic.faces import Params, take
from lssat.data.synthetic.features import offsets
from lssat.data.synthetic.render import render

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
N_MANIP_UNIFORMS = 12

# What makes someone who they are; a face swap takes these from the donor.
IDENTITY_KEYS = ("face_w", "face_h", "jaw", "eye_y", "eye_dx", "eye_w", "eye_h", "brow_dy", "brow_w",
                 "brow_t", "brow_arch", "nose_len", "nose_w", "mouth_y", "mouth_w", "lip_t", "skin",
                 "lip", "iris", "brow", "male", "age")


def swap_identity(target: Params, donor: Params) -> Params:
    """The target's pose, expression, light and camera with the donor's identity."""
    out = dict(target)
    for key in IDENTITY_KEYS:
        out[key] = donor[key]
    return out


def _axis(lo: int, hi: int, size: int, low: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights that resize `low` samples to output pixels lo..hi-1 of `size`
    (pixel centres aligned, as torch's align_corners=False)."""
    pos = (np.arange(lo, hi) + 0.5) * (low / size)
    if mode == "nearest":
        i0 = np.minimum(np.floor(pos).astype(np.int64), low - 1)
        return i0, i0, np.zeros(len(i0), F32)
    src = np.maximum(pos - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), low - 1)
    return i0, np.minimum(i0 + 1, low - 1), (src - i0).astype(F32)


def upsample_window(images: np.ndarray, size: int, sy: slice, sx: slice, mode: str) -> np.ndarray:
    """Rows sy and columns sx of planar (B, 3, h, w) images resized to size x size.

    `mode`: "bilinear" or "nearest". Only the window is computed: the blend masks cover a part
    of the face, and a full-frame resize would cost more than the rest of the manipulation.
    """
    low_h, low_w = images.shape[-2:]
    y0, y1, ty = _axis(sy.start, sy.stop, size, low_h, mode)
    x0, x1, tx = _axis(sx.start, sx.stop, size, low_w, mode)
    ty = ty[:, None]
    rows = images[:, :, y0, :] * (F32(1) - ty) + images[:, :, y1, :] * ty
    return rows[..., x0] * (F32(1) - tx) + rows[..., x1] * tx


def _blend(frames: np.ndarray, p: Params, source: np.ndarray, mode: str, center_u, center_v, a, b,
           feather) -> None:
    """Blend `source` (planar, any resolution; `mode` resizes it) into `frames` in place, inside a
    feathered ellipse of the faces' canonical coordinates."""
    size = frames.shape[-1]
    cv = Canvas(size, p, img=frames)
    r = cv.region(center_u - a - feather - 0.02, center_u + a + feather + 0.02,
                  center_v - b - feather - 0.02, center_v + b + feather + 0.02)
    if r is None:
        return
    cu, cvv, aa, bb = (np.asarray(x, F32).reshape(-1, 1, 1) for x in (center_u, center_v, a, b))
    d = np.sqrt(np.square((r.U - cu) / aa) + np.square((r.V - cvv) / bb))
    width = np.maximum(np.asarray(feather, F32).reshape(-1, 1, 1), r.pix)
    alpha = ramp((d - F32(1)) * np.minimum(aa, bb), width)
    if source.shape[-1] == size:
        window = source[:, :, r.sy, r.sx]
    else:
        window = upsample_window(source, size, r.sy, r.sx, mode)
    r.paint_image(alpha, window)


def _wobble(p: Params, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame jitter of the mask centre."""
    t = p["frame"].astype(F32)
    du = F32(0.012) * np.sin(F32(2 * np.pi) * (t * F32(0.37) + u[:, 10]))
    dv = F32(0.010) * np.sin(F32(2 * np.pi) * (t * F32(0.23) + u[:, 11]))
    return du.astype(F32), dv.astype(F32)


def _gain(u: np.ndarray, amount: float, least: float = 0.0) -> np.ndarray:
    """Per-channel colour gains 1 +- (least..amount), signs and sizes from uniforms `u` (B, 3)."""
    x = (u - 0.5) * 2  # -1..1
    g = 1 + np.sign(x) * (least + (amount - least) * np.abs(x))
    return g.astype(F32)[:, :, None, None]


def _strength(p: Params) -> float:
    """The difficulty's manipulation strength (1: the artefacts as first released)."""
    k = p.get("manipulation")
    return 1.0 if k is None or len(k) == 0 else float(k[0])


def _low_res(first: int, size: int, factor: float, k: float) -> int:
    """The size a manipulation re-synthesises at: `first` (the first release's size, about `factor`
    of the frame) at strength 1, `factor` ** k of the frame (blurrier) at strength k, at least 8."""
    return first if k == 1 else max(8, round(size * factor ** k))


def deepfakes(frames: np.ndarray, p: Params, donor: Params, u: np.ndarray) -> None:
    size, k = frames.shape[-1], _strength(p)
    src = swap_identity(p, donor)
    face = expose(render(src, _low_res(max(16, round(size * 0.6)), size, 0.6, k)), src) * _gain(u[:, 0:3], 0.05 * k)
    o, (du, dv) = offsets(p), _wobble(p, u)
    _blend(frames, p, face, "bilinear", o["fu"] + du, F32(0.05) + dv, p["face_w"] * 0.8, p["face_h"] * 0.78,
           np.full(len(u), 0.07, F32))


def face2face(frames: np.ndarray, p: Params, donor: Params, u: np.ndarray) -> None:
    size, k = frames.shape[-1], _strength(p)
    src = dict(p)
    src["mouth_open"] = p["mouth_open"] + (u[:, 3] * 0.05).astype(F32)
    src["mouth_curve"] = p["mouth_curve"] + ((u[:, 4] - 0.5) * 0.06).astype(F32)
    src["mouth_width"] = p["mouth_width"] * (0.9 + 0.2 * u[:, 5]).astype(F32)
    src["teeth"] = np.where(u[:, 6] < 0.5, 1.0, p["teeth"]).astype(F32)
    face = expose(render(src, _low_res(max(16, size // 2), size, 0.5, k)), src)
    o, (du, dv) = offsets(p), _wobble(p, u)
    _blend(frames, p, face, "nearest", o["mu"] + du, p["mouth_y"] + 0.03 + dv, p["mouth_w"] * 1.9,
           np.full(len(u), 0.16, F32), np.full(len(u), 0.05, F32))


def faceswap(frames: np.ndarray, p: Params, donor: Params, u: np.ndarray) -> None:
    size, k = frames.shape[-1], _strength(p)
    src = swap_identity(p, donor)
    src["scale"] = p["scale"] * (1 + (u[:, 3] - 0.5) * 0.1).astype(F32)
    src["roll"] = p["roll"] + ((u[:, 4] - 0.5) * 0.12).astype(F32)
    src["cx"] = p["cx"] + ((u[:, 5] - 0.5) * 0.03).astype(F32)
    src["cy"] = p["cy"] + ((u[:, 6] - 0.5) * 0.03).astype(F32)
    face = expose(render(src, _low_res(max(16, round(size * 0.85)), size, 0.85, k)), src) * _gain(u[:, 0:3], 0.07 * k, 0.02 * k)
    o, (du, dv) = offsets(p), _wobble(p, u)
    pix = (F32(2.0 / size) / p["scale"]).astype(F32)
    _blend(frames, p, face, "bilinear", o["fu"] + du, F32(0.02) + dv, p["face_w"] * 0.75, p["face_h"] * 0.72,
           1.5 * pix)


def neural_textures(frames: np.ndarray, p: Params, donor: Params, u: np.ndarray) -> None:
    size, k = frames.shape[-1], _strength(p)
    src = dict(p)
    src["mouth_open"] = p["mouth_open"] + (u[:, 3] * 0.025).astype(F32)
    src["mouth_curve"] = p["mouth_curve"] + ((u[:, 4] - 0.5) * 0.03).astype(F32)
    face = expose(render(src, _low_res(max(20, size // 3), size, 1 / 3, k)), src) * _gain(u[:, 0:3], 0.02 * k)
    o, (du, dv) = offsets(p), _wobble(p, u)
    _blend(frames, p, face, "bilinear", o["mu"] + du, p["mouth_y"] - 0.03 + dv, p["face_w"] * 0.62,
           np.full(len(u), 0.21, F32), np.full(len(u), 0.05, F32))


_APPLY = (deepfakes, face2face, faceswap, neural_textures)


def manipulate(frames: np.ndarray, p: Params, donor: Params, method: np.ndarray,
               u: np.ndarray) -> np.ndarray:
    """Apply each face's manipulation in place.

    `frames`: planar float32 (B, 3, H, W) after `camera.expose` and sensor noise. `p`: the faces'
    params (with a ``frame`` entry), `donor`: params of donor identities (same batch order),
    `method`: (B,) index into METHODS, or -1 to leave a face real, `u`: (B, N_MANIP_UNIFORMS)
    clip-level uniforms. Returns `frames`.
    """
    for m, apply in enumerate(_APPLY):
        index = np.flatnonzero(method == m)
        if len(index) == 0:
            continue
        sub = np.ascontiguousarray(frames[index])
        apply(sub, take(p, index), take(donor, index), u[index])
        frames[index] = sub
    return frames
