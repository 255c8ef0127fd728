"""Drawing a batch of synthetic faces: background, body, head, hair, hat, glasses and lighting.

`render(params, size)` paints every face of a `Params` batch (see `faces.py`) into a planar float32
(B, 3, size, size) array in 0..255, before any camera effect (see `camera.py`). The same params at
another size give the same face at that resolution, which the deepfake manipulations use to
re-synthesise a face at low resolution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lssat.data.synthetic import features
from lssat.data.synthetic.canvas import F32, Canvas, Region, col, ramp
from lssat.data.synthetic.faces import Params, take


def render(p: Params, size: int) -> np.ndarray:
    """The faces of `p` drawn at size x size: planar float32 (B, 3, size, size) in 0..255."""
    cv = Canvas(size, p)
    paint_background(cv, p)
    attr = p["attributes"]
    _some(cv, p, p["hair_style"] == 1, paint_long_hair)
    _some(cv, p, None, paint_body)
    _some(cv, p, p["hair_style"] != 2, paint_hair_back)
    _some(cv, p, None, paint_head)
    _some(cv, p, attr[:, 4] == 1, features.paint_blush)
    _some(cv, p, attr[:, 9] == 1, features.paint_wrinkles)
    _some(cv, p, None, features.paint_nose)
    _some(cv, p, None, features.paint_eyes)
    _some(cv, p, attr[:, 1] == 1, features.paint_beard)
    _some(cv, p, attr[:, 5] == 1, features.paint_mustache)
    _some(cv, p, None, features.paint_mouth)
    _some(cv, p, p["hair_style"] != 2, paint_hair_front)
    _some(cv, p, attr[:, 8] == 1, paint_hat)
    _some(cv, p, attr[:, 3] == 1, paint_glasses)
    _some(cv, p, None, shade)
    return cv.img


def _some(cv: Canvas, p: Params, which: np.ndarray | None, layer: Callable) -> None:
    """Paint `layer` on the faces where `which` holds (all when None).

    A layer most faces have is painted on the whole batch with the others masked out; a rarer one
    on a sub-batch (copying its windows out and back costs less than painting every face).
    """
    if which is None or which.all():
        layer(cv, p, features.offsets(p))
        return
    index = np.flatnonzero(which)
    if len(index) == 0:
        return
    if len(index) >= 0.5 * len(which):
        layer(cv.masked(which), p, features.offsets(p))
        return
    q = take(p, index)
    layer(cv.subset(index), q, features.offsets(q))


def paint_background(cv: Canvas, p: Params) -> None:
    """Clutter: a grid of coloured cells with random cuts, blended with a smooth colour gradient.

    Both parts are separable in x and y.
    """
    x = (cv.grid + F32(1)) / 2  # 0..1 across the image
    mix = p["bg_mix"].astype(F32)
    ix = (x[None, :] > p["bg_cuts"][:, 0, :, None]).sum(1)  # (B, W) cell column
    iy = (x[None, :] > p["bg_cuts"][:, 1, :, None]).sum(1)  # (B, H) cell row
    c0, c1 = p["bg_grad"][:, 0], p["bg_grad"][:, 1]
    dc = ((c1 - c0) * (1 - mix)[:, None] / 2.83).astype(F32)[:, :, None]  # (B, 3, 1)
    base = ((c0 + c1) / 2 * (1 - mix)[:, None]).astype(F32)[:, :, None]
    gx = np.cos(p["bg_angle"]).astype(F32)[:, None, None] * cv.grid * dc + base  # (B, 3, W)
    gy = np.sin(p["bg_angle"]).astype(F32)[:, None, None] * cv.grid * dc  # (B, 3, H)
    cells = p["bg_cells"].reshape(-1, 4, 4, 3).transpose(0, 3, 1, 2) * mix[:, None, None, None]
    counts = (ix[:, :, None] == np.arange(4)).sum(1)  # (B, 4) pixels per cell column (cuts sorted)
    for b in range(cv.batch):
        rows = cells[b][:, iy[b]].astype(F32) + gy[b][:, :, None]  # (3, H, 4): cells of each row
        cv.img[b] = np.repeat(rows, counts[b], axis=2)
    torch.from_numpy(cv.img).add_(torch.from_numpy(gx)[:, :, None, :])


def _strands(r: Region, p: Params) -> np.ndarray:
    """Brightness of hair strands (a triangle wave across u, kinked along v): (B, h, w)."""
    x = r.U * F32(11) + F32(0.05) * np.floor(r.V * F32(30)) + col(p["strand_phase"])
    x -= np.floor(x)
    x -= F32(0.5)
    np.abs(x, out=x)
    x *= F32(0.32)
    x += F32(0.76)
    return x


def paint_long_hair(cv: Canvas, p: Params, o: dict) -> None:
    """Long hair falling behind the shoulders."""
    fu, fw, hv = o["fu"], p["face_w"], p["hair_vol"]
    r = cv.region(fu - fw - hv - 0.02, fu + fw + hv + 0.02, -0.3, 1.05)
    a = r.span(fu - fw - hv, fu + fw + hv) * r.span(-0.3, 0.95 - fw * 0.2, "v")
    r.paint(a, p["hair"], _strands(r, p))


def paint_body(cv: Canvas, p: Params, o: dict) -> None:
    """Neck and clothes."""
    fu, fw = o["fu"], p["face_w"]
    r = cv.region(fu - fw * 0.45 - 0.02, fu + fw * 0.45 + 0.02, 0.2, 1.5)
    if r is not None:  # a zoomed-in face can push the neck and clothes out of the frame
        r.paint(r.span(fu - fw * 0.42, fu + fw * 0.42) * r.span(0.2, 1.5, "v"), p["skin"] * F32(0.8))
    r = cv.region(-1.2, 1.2, 0.75, 1.9)
    if r is not None:
        r.paint(r.ellipse(fu * 0.5, 1.3, 1.05, 0.52), p["clothes"])


def paint_hair_back(cv: Canvas, p: Params, o: dict) -> None:
    """Hair at the back of the head, around the face."""
    fu, fw, fh, hv = o["fu"], p["face_w"], p["face_h"], p["hair_vol"]
    a_u, a_v, cvv = fw + hv, fh * 0.78 + hv * 1.3, -0.12
    r = cv.region(fu * 0.6 - a_u - 0.02, fu * 0.6 + a_u + 0.02, cvv - a_v - 0.02, cvv + a_v + 0.02)
    r.paint(r.ellipse(fu * 0.6, cvv, a_u, a_v), p["hair"], _strands(r, p))


def paint_head(cv: Canvas, p: Params, o: dict) -> None:
    """Ears (hidden by long hair) and the face with its jaw taper."""
    fu, fw, fh = o["fu"], p["face_w"], p["face_h"]
    ears = col(p["hair_style"] != 1).astype(F32)
    ey = p["eye_y"] + 0.07
    for side in (-1, 1):
        eu = fu + side * fw * 0.97 - o["fu"] * 0.5
        r = cv.region(eu - 0.07, eu + 0.07, ey - 0.12, ey + 0.12)
        r.paint(r.ellipse(eu, ey, 0.055, 0.1) * ears, p["skin"] * F32(0.92))
    r = cv.region(fu - fw - 0.02, fu + fw + 0.02, -fh - 0.02, fh + 0.02)
    width = col(fw) * (F32(1) - col(p["jaw"]) * np.square(np.clip(r.V / col(fh), 0, 1)))
    d = np.sqrt(np.square((r.U - col(fu)) / width) + np.square(r.V / col(fh)))
    r.paint(ramp((d - F32(1)) * width, r.pix), p["skin"])


def paint_hair_front(cv: Canvas, p: Params, o: dict) -> None:
    """Hair over the top of the forehead (down to the hairline), then bangs."""
    fu, fw, fh = o["fu"], p["face_w"], p["face_h"]
    bangs = col(p["attributes"][:, 0]).astype(F32)
    line = -fh * p["hairline"]
    r = cv.region(fu - fw - 0.03, fu + fw + 0.03, -fh - 0.03, line + 0.3)
    head = r.ellipse(fu, 0, fw + 0.015, fh + 0.015)
    x = (r.U - col(fu)) / col(fw)
    cap = ramp(r.V - col(line) - F32(0.22) * x * x, r.pix)
    edge = col(line + p["bangs_len"]) + F32(0.022) * np.abs(np.sin(r.U * F32(25) + col(p["bangs_phase"])))
    fringe = ramp(r.V - edge, r.pix) * bangs
    r.paint(head * np.maximum(cap, fringe), p["hair"], _strands(r, p))


def paint_hat(cv: Canvas, p: Params, o: dict) -> None:
    """A beanie with a cuff, or a cap with a brim, over the crown and the hair on it."""
    fu, fw, fh, hv = o["fu"], p["face_w"], p["face_h"], p["hair_vol"]
    a_u = fw + hv + 0.03
    brim_v = -fh * 0.45
    b_v = fh * 0.33 + hv * 1.3 + 0.17
    r = cv.region(fu - fw * 1.4 - 0.03, fu + fw * 1.4 + 0.03, brim_v - b_v - 0.03, brim_v + 0.08)
    dome = r.ellipse(fu * 0.6, brim_v + 0.02, a_u, b_v) * ramp(r.V - col(brim_v) - F32(0.02), r.pix)
    r.paint(dome, p["hat_color"])
    cap = col(p["hat_style"]).astype(F32)
    brim = r.ellipse(fu + p["yaw"] * 0.05, brim_v + 0.015, fw * 1.35, 0.05) * cap
    cuff = dome * r.span(brim_v - 0.08, brim_v + 0.03, "v") * (F32(1) - cap)
    band = F32(1) - features.strength(p, 0.28)  # darker band with more detail
    r.paint(np.maximum(brim, cuff), p["hat_color"] * (band if np.ndim(band) == 0 else band.reshape(-1, 1)))


def paint_glasses(cv: Canvas, p: Params, o: dict) -> None:
    """Round frames with tinted lenses (dark ones for sunglasses), bridge and temples."""
    ey = p["eye_y"] + 0.005
    b = np.maximum(p["eye_h"] * 1.9, 0.075)
    lens_alpha = col(np.where(p["sun"], 0.88, 0.16)).astype(F32)
    clear = features.strength(p, 0.16)  # more tinted clear lenses with more detail
    if np.ndim(clear):
        lens_alpha = np.where(col(p["sun"]), lens_alpha, clear).astype(F32)
    lens_color = np.where(p["sun"][:, None], np.array([18, 20, 26], F32), np.array([200, 215, 225], F32))
    (lx, lw, _), (rx, rw, _) = o["eyes"]
    fu, fw = o["fu"], p["face_w"]
    r = cv.region(fu - fw - 0.04, fu + fw + 0.04, ey - b - 0.04, ey + b + 0.04)
    width = np.maximum(F32(0.016), F32(0.9) * r.pix.ravel())
    frame = np.zeros_like(r.U)
    for cx, ew in ((lx, lw), (rx, rw)):
        a = ew * 1.5
        r.paint(r.ellipse(cx, ey, a, b) * lens_alpha, lens_color)
        frame = np.maximum(frame, r.ring(cx, ey, a, b, width))
    frame = np.maximum(frame, r.segment(lx + lw * 1.5, ey - 0.015, rx - rw * 1.5, ey - 0.015, width))
    frame = np.maximum(frame, r.segment(lx - lw * 1.5, ey - 0.01, fu - fw, ey - 0.03, width))
    frame = np.maximum(frame, r.segment(rx + rw * 1.5, ey - 0.01, fu + fw, ey - 0.03, width))
    r.paint(frame, p["frame_color"])


def shade(cv: Canvas, p: Params, o: dict) -> None:
    """Directional light on the head, treated as an ellipsoid (Lambert plus ambient).

    Shading is smooth, so it is computed every few pixels and interpolated.
    """
    fu, fw, fh = o["fu"], p["face_w"] + 0.12, p["face_h"] + 0.12
    got = cv.coarse(fu - fw, fu + fw, -fh - 0.12, fh, step=max(1, cv.size // 32))
    if got is None:
        return
    r, upsample = got
    nu = (r.U - col(fu)) / col(fw)
    nv = (r.V + F32(0.06)) / col(fh)
    r2 = nu * nu + nv * nv
    nz = np.sqrt(np.clip(F32(1) - r2, 0, 1))
    light = p["light"]
    lam = np.maximum(nu * col(light[:, 0]) + nv * col(light[:, 1]) + nz * col(light[:, 2]), 0)
    amb = col(p["ambient"])
    s = (amb + (F32(1) - amb) * lam) / (amb + (F32(1) - amb) * col(light[:, 2]))
    weight = np.clip((F32(1) - r2) * F32(4), 0, 1)
    factor = upsample(weight * (s - F32(1)))
    factor += F32(1)
    r.multiply(factor)
