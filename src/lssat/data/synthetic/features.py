"""The inner face: eyes, brows, nose, mouth, beard, make-up and wrinkles, painted on a Canvas.

Expression lives here: brow height and inner tilt, eye opening, mouth curve, opening, width,
one-sided smirk, lip press, nose wrinkle and teeth all come from the `Params` of `faces.py`.
Thin lines get a width of at least most of a pixel, so they stay visible at 64 x 64.
"""

from __future__ import annotations

import numpy as np

from lssat.data.synthetic.canvas import F32, Canvas, Region, col, ramp
from lssat.data.synthetic.faces import Params

_SCLERA = np.array([236, 234, 228], F32)
_DARK = np.array([22, 18, 18], F32)
_MOUTH = np.array([58, 18, 24], F32)
_TEETH = np.array([238, 234, 222], F32)
_BLUSH = np.array([222, 96, 108], F32)


def offsets(p: Params) -> dict[str, np.ndarray]:
    """Horizontal shifts of face parts with yaw (nearer parts move more), and eye centres."""
    yaw = p["yaw"]
    eu = F32(0.09) * yaw
    far = np.abs(yaw) * F32(0.35)
    left_w = p["eye_w"] * (F32(1) - np.where(yaw < 0, far, 0))
    right_w = p["eye_w"] * (F32(1) - np.where(yaw > 0, far, 0))
    return {"fu": F32(0.04) * yaw, "eu": eu, "nu": F32(0.13) * yaw, "mu": F32(0.08) * yaw,
            "eyes": [(eu - p["eye_dx"], left_w, F32(1)), (eu + p["eye_dx"], right_w, F32(-1))]}


def strength(p: Params, alpha: float) -> np.ndarray | np.float32:
    """A darkening or tint of opacity `alpha` applied `detail` times (the difficulty knob that makes
    small attributes show): 1 - (1 - alpha) ** detail per face, shaped (B, 1, 1); exactly `alpha`
    at detail 1."""
    k = p.get("detail")
    if k is None or np.all(k == 1):
        return F32(alpha)
    return col(F32(1) - np.power(F32(1 - alpha), k.astype(F32)))


def line_width(r: Region, width) -> np.ndarray:
    """A stroke width of at least 0.8 pixel."""
    return np.maximum(col(width), F32(0.8) * r.pix)


def stipple(r: Region) -> np.ndarray:
    """A fixed pseudo-random texture in canonical coordinates (hair and beard grain)."""
    h = np.sin(r.U * F32(127.1) + r.V * F32(311.7)) * F32(43758.5453)
    return h - np.floor(h)


def paint_blush(cv: Canvas, p: Params, o: dict) -> None:
    """Cheek blush of heavy make-up."""
    for side in (-1, 1):
        cu = o["eu"] + side * F32(0.24)
        cvv = p["eye_y"] + F32(0.2)
        r = cv.region(cu - 0.1, cu + 0.1, cvv - 0.07, cvv + 0.07)
        d2 = np.square((r.U - col(cu)) / F32(0.09)) + np.square((r.V - col(cvv)) / F32(0.06))
        r.paint(np.clip(F32(1) - d2, 0, 1) * F32(0.45), np.broadcast_to(_BLUSH, (cv.batch, 3)))


def paint_wrinkles(cv: Canvas, p: Params, o: dict) -> None:
    """Forehead lines, nasolabial folds and under-eye bags."""
    fu, by = o["fu"], p["eye_y"] - p["brow_dy"]
    r = cv.region(fu - 0.25, fu + 0.25, by - 0.2, by - 0.02)
    lines = np.zeros_like(r.U)
    for k in range(3):
        v = by - F32(0.07) - F32(0.04) * k
        half = F32(0.2) - F32(0.03) * k
        w = line_width(r, 0.012)
        lines = np.maximum(lines, ramp(np.maximum(np.abs(r.V - col(v) - F32(0.02) * np.square(
            (r.U - col(fu)) / col(half))) - w / 2, np.abs(r.U - col(fu)) - col(half)), r.pix))
    r.multiply(F32(1) - strength(p, 0.45) * lines)
    for (ecx, ew, inward) in o["eyes"]:
        nose_side = o["nu"] - inward * p["nose_w"] * F32(0.9)
        corner = o["mu"] - inward * (p["mouth_w"] + F32(0.035))
        lo = np.minimum(np.minimum(nose_side, corner), ecx - ew)
        hi = np.maximum(np.maximum(nose_side, corner), ecx + ew)
        r = cv.region(lo - 0.04, hi + 0.04, p["eye_y"], p["mouth_y"] + 0.06)
        fold = r.segment(nose_side, p["eye_y"] + p["nose_len"] - 0.02,
                         corner, p["mouth_y"] + 0.03,
                         np.maximum(0.014, 0.8 * r.pix.ravel()))
        bag = r.segment(ecx - ew * 0.7, p["eye_y"] + p["eye_h"] * 1.5 + 0.018,
                        ecx + ew * 0.7, p["eye_y"] + p["eye_h"] * 1.5 + 0.018,
                        np.maximum(0.01, 0.7 * r.pix.ravel()))
        r.multiply(F32(1) - strength(p, 0.4) * np.maximum(fold, bag))


def paint_nose(cv: Canvas, p: Params, o: dict) -> None:
    """Nostrils, a side shadow, the tip shadow, and the disgust wrinkle across the bridge."""
    nu, tip, nw = o["nu"], p["eye_y"] + p["nose_len"], p["nose_w"]
    r = cv.region(nu - nw - 0.05, nu + nw + 0.05, p["eye_y"] - 0.02, tip + 0.05)
    flare = F32(1) + F32(0.35) * p["nose_wrinkle"]
    shade = r.ellipse(nu, tip + 0.014, nw * 0.95 * flare, 0.02) * F32(0.18)
    shade = np.maximum(shade, r.segment(nu + nw * 0.35, p["eye_y"] + 0.03, nu + nw * 0.6, tip - 0.035,
                                        np.maximum(0.012, 0.8 * r.pix.ravel())) * F32(0.22))
    wr = np.maximum(r.segment(nu - nw * 0.5, p["eye_y"] + 0.025, nu + nw * 0.5, p["eye_y"] + 0.025,
                              np.maximum(0.012, 0.8 * r.pix.ravel())),
                    r.segment(nu - nw * 0.45, p["eye_y"] + 0.055, nu + nw * 0.45, p["eye_y"] + 0.055,
                              np.maximum(0.012, 0.8 * r.pix.ravel())))
    shade = np.maximum(shade, wr * col(F32(0.5) * p["nose_wrinkle"]))
    r.multiply(F32(1) - shade)
    lift = p["nose_wrinkle"] * F32(0.012)
    for side in (-1, 1):
        a = r.ellipse(nu + side * nw * 0.5 * flare, tip - lift, nw * 0.3 * flare, 0.015)
        r.multiply(F32(1) - F32(0.6) * a)


def paint_eyes(cv: Canvas, p: Params, o: dict) -> None:
    """Eye shadow (make-up), sclera, iris, pupil and the upper lash line, then the brows."""
    makeup = col(p["attributes"][:, 4].astype(F32))
    eh = p["eye_h"] * p["eye_open"]
    ey = p["eye_y"]
    for ecx, ew, inward in o["eyes"]:
        r = cv.region(ecx - ew - 0.03, ecx + ew + 0.03, ey - eh - 0.07, ey + eh + 0.03)
        if makeup.any():
            r.paint(r.ellipse(ecx, ey - eh * 0.9, ew * 1.1, eh * 0.9 + 0.03) * strength(p, 0.6) * makeup,
                    p["eyeshadow"])
        t = (r.U - col(ecx)) / col(ew)
        w = np.clip(F32(1) - t * t, 0, 1)
        upper = col(ey) - col(eh) * w
        lower = col(ey) + col(eh) * F32(0.8) * w
        edge = (np.abs(t) - F32(1)) * col(ew)
        eye = ramp(np.maximum(np.maximum(upper - r.V, r.V - lower), edge), r.pix)
        r.paint(eye, np.broadcast_to(_SCLERA, (cv.batch, 3)))
        ir = p["eye_h"] * F32(0.95)
        icx = ecx + p["gaze"] * ew * F32(0.35)
        r.paint(r.ellipse(icx, ey, ir, ir) * eye, p["iris"])
        r.paint(r.ellipse(icx, ey, ir * 0.45, ir * 0.45) * eye, np.broadcast_to(_DARK, (cv.batch, 3)))
        lash = line_width(r, 0.012) * (F32(1) + makeup)
        lid = ramp(np.maximum(np.abs(r.V - upper) - lash / 2, (np.abs(t) - F32(1.08)) * col(ew)), r.pix)
        r.paint(lid * F32(0.9), np.broadcast_to(_DARK, (cv.batch, 3)))
        paint_brow(cv, p, ecx, inward)


def paint_brow(cv: Canvas, p: Params, ecx: np.ndarray, inward: F32) -> None:
    """One eyebrow: an arched, tapering stroke whose inner end rises or falls with expression."""
    bw, by = p["brow_w"], p["eye_y"] - p["brow_dy"] - p["brow_raise"]
    bcx = ecx - inward * F32(0.01)
    top = by - p["brow_arch"] - np.maximum(p["brow_inner"], 0) - 0.03
    bottom = by - np.minimum(p["brow_inner"], 0) + 0.03
    r = cv.region(bcx - bw - 0.02, bcx + bw + 0.02, top, bottom)
    t = (r.U - col(bcx)) / col(bw)
    ti = t * inward  # +1 at the inner end
    vb = col(by) - col(p["brow_arch"]) * (F32(1) - t * t) - col(p["brow_inner"]) * (ti + F32(1)) / 2
    th = np.maximum(col(p["brow_t"]) * (F32(0.7) + F32(0.3) * ti), F32(0.9) * r.pix)
    a = ramp(np.maximum(np.abs(r.V - vb) - th / 2, (np.abs(t) - F32(1)) * col(bw)), r.pix)
    r.paint(a, p["brow"])


def _mouth_shape(r: Region, p: Params, o: dict) -> dict[str, np.ndarray]:
    mh = col(p["mouth_w"] * p["mouth_width"])
    t = (r.U - col(o["mu"])) / mh
    w2 = np.clip(F32(1) - t * t, 0, 1)
    sw = np.sqrt(w2)
    side = np.clip(t * col(p["smirk_side"]), 0, 1)
    yc = col(p["mouth_y"]) - col(p["mouth_curve"]) * t * t - col(p["smirk"]) * side * side
    opening = col(p["mouth_open"]) * sw
    lip = col(p["lip_t"] * p["lip_press"])
    top = yc - opening - lip * (F32(0.55) + F32(0.45) * sw)
    bottom = yc + opening + F32(1.3) * lip * (F32(0.5) + F32(0.5) * sw)
    return {"t": t, "mh": mh, "yc": yc, "open": opening, "top": top, "bottom": bottom}


def _mouth_region(cv: Canvas, p: Params, o: dict, extra: float = 0.0) -> Region:
    mh = p["mouth_w"] * p["mouth_width"]
    reach = np.abs(p["mouth_curve"]) + np.abs(p["smirk"]) + p["mouth_open"] + 2.5 * p["lip_t"] + extra
    return cv.region(o["mu"] - mh - 0.03, o["mu"] + mh + 0.03, p["mouth_y"] - reach - 0.03,
                     p["mouth_y"] + reach + 0.03)


def paint_beard(cv: Canvas, p: Params, o: dict) -> None:
    """Beard over jaw and chin: below the mouth, rising to the cheeks, with a grainy texture."""
    fu, fw, fh = o["fu"], p["face_w"], p["face_h"]
    r = cv.region(fu - fw - 0.03, fu + fw + 0.03, p["eye_y"], fh + 0.03)
    x = (r.U - col(fu)) / col(fw)
    width = col(fw + 0.012) * (F32(1) - col(p["jaw"]) * np.square(np.clip(r.V / col(fh), 0, 1)))
    d = np.sqrt(np.square((r.U - col(fu)) / width) + np.square(r.V / col(fh + 0.012)))
    inside = ramp((d - F32(1)) * width, r.pix)
    top = col(p["mouth_y"]) + F32(0.035) - F32(0.33) * np.abs(x) ** F32(1.5)
    r.paint(inside * ramp(top - r.V, r.pix) * (F32(0.55) + F32(0.4) * stipple(r)), p["hair"] * F32(0.7))


def paint_mustache(cv: Canvas, p: Params, o: dict) -> None:
    """A moustache over the upper lip, following the mouth's shape."""
    r = _mouth_region(cv, p, o, extra=0.05)
    m = _mouth_shape(r, p, o)
    t = m["t"] / F32(1.1)
    th = F32(0.05) * (F32(1) - F32(0.5) * t * t)
    vc = m["top"] - th / 2 + F32(0.004)
    a = ramp(np.maximum(np.abs(r.V - vc) - th / 2, (np.abs(t) - F32(1)) * m["mh"]), r.pix)
    r.paint(a * F32(0.92) * (F32(0.75) + F32(0.25) * stipple(r)), p["hair"] * F32(0.6))


def paint_mouth(cv: Canvas, p: Params, o: dict) -> None:
    """Lips (lipstick with make-up), the opening or the closed lip line, and teeth."""
    r = _mouth_region(cv, p, o)
    m = _mouth_shape(r, p, o)
    t, mh, yc, opening = m["t"], m["mh"], m["yc"], m["open"]
    makeup = p["attributes"][:, 4].astype(bool)[:, None]
    lips = ramp(np.maximum(np.maximum(m["top"] - r.V, r.V - m["bottom"]), (np.abs(t) - F32(1)) * mh), r.pix)
    r.paint(lips, np.where(makeup, p["lipstick"], p["lip"]))
    half = np.maximum(opening, line_width(r, 0.008) / 2)
    gap = ramp(np.maximum(np.abs(r.V - yc) - half, (np.abs(t) - F32(0.97)) * mh), r.pix)
    r.paint(gap, np.broadcast_to(_MOUTH, (cv.batch, 3)))
    show = col((p["teeth"] > 0.2) & (p["mouth_open"] > 0.006)).astype(F32)
    if show.any():
        depth = np.minimum(opening * F32(1.1), F32(0.03))
        teeth = ramp(np.maximum(np.maximum(yc - opening - r.V, r.V - (yc - opening + depth)),
                                (np.abs(t) - F32(0.8)) * mh), r.pix)
        r.paint(teeth * show, np.broadcast_to(_TEETH, (cv.batch, 3)))
