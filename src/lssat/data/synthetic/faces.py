"""Sampling what a synthetic face looks like: identity, attributes, expression, pose, light, camera.

Every face is a function of a row of uniform random numbers (see `draw_uniforms`), so a face is
reproducible from (seed, split, task, index) alone and a batch is sampled with vectorised numpy.
The result is a `Params` dict of per-face arrays (first axis: the batch) that `render.render` draws.

Lengths are in canonical face units (the face is about 1.2 tall; at 64 pixels one pixel is about
0.03). Colours are RGB in 0..255.
"""

from __future__ import annotations

import numpy as np

from lssat.data.synthetic.difficulty import Difficulty, resolve_difficulty

F32 = np.float32
Params = dict[str, np.ndarray]

ATTRIBUTE_NAMES = ("Bangs", "Beard", "Blond_Hair", "Eyeglasses", "Heavy_Makeup", "Mustache",
                   "Pale_Skin", "Smiling", "Wearing_Hat", "Wrinkles")
# AffectNet's expression codes 0..7, in code order.
EXPRESSIONS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
SKIN_GROUPS = ("light", "dark")
N_UNIFORMS = 192

# Expression geometry at full intensity, as offsets from the face's own neutral:
# brow_raise, brow_inner (inner ends up), eye_open, mouth_curve (corners up), mouth_open,
# mouth_width, smirk (one corner up), lip_press, nose_wrinkle, teeth.
EXPRESSION_KEYS = ("brow_raise", "brow_inner", "eye_open", "mouth_curve", "mouth_open", "mouth_width",
                   "smirk", "lip_press", "nose_wrinkle", "teeth")
EXPRESSION_PROTOTYPES = np.array([
    [0.000, 0.000, 0.00, 0.000, 0.000, 0.00, 0.00, 0.00, 0.0, 0.0],   # Neutral
    [0.010, 0.000, -0.30, 0.065, 0.025, 0.20, 0.00, 0.00, 0.0, 1.0],  # Happy
    [-0.005, 0.055, -0.30, -0.055, 0.000, -0.05, 0.00, 0.00, 0.0, 0.0],  # Sad
    [0.075, 0.010, 0.55, 0.000, 0.080, -0.28, 0.00, 0.00, 0.0, 0.0],  # Surprise
    [0.045, 0.055, 0.50, -0.020, 0.040, 0.22, 0.00, -0.20, 0.0, 1.0],  # Fear
    [-0.025, -0.020, -0.40, -0.030, 0.014, -0.05, 0.01, 0.00, 1.0, 1.0],  # Disgust
    [-0.040, -0.065, -0.30, -0.015, 0.000, -0.08, 0.00, -0.50, 0.3, 0.0],  # Anger
    [0.000, 0.000, -0.15, 0.000, 0.000, 0.00, 0.055, -0.10, 0.0, 0.0],  # Contempt
], dtype=F32)

_SKIN_PALETTE = np.array([[247, 222, 204], [232, 190, 160], [205, 150, 115], [160, 108, 75],
                          [118, 76, 52], [82, 54, 40]], F32)
_PALE = np.array([250, 236, 230], F32)
_HAIR = {"black": (28, 24, 22), "brown": (96, 62, 38), "red": (150, 68, 34), "grey": (172, 170, 164),
         "blond": (226, 192, 118)}


class Draws:
    """Hands out consecutive columns of a (B, K) matrix of uniforms, as named distributions."""

    def __init__(self, u: np.ndarray):
        self.u = np.asarray(u, np.float64)
        self.k = 0

    def raw(self, n: int | None = None) -> np.ndarray:
        """The next column (B,) or the next n columns (B, n)."""
        width = 1 if n is None else n
        if self.k + width > self.u.shape[1]:
            raise RuntimeError("synthetic faces: ran out of uniforms; raise N_UNIFORMS")
        out = self.u[:, self.k:self.k + width]
        self.k += width
        return out[:, 0] if n is None else out

    def uniform(self, lo: float, hi: float, n: int | None = None) -> np.ndarray:
        return (lo + (hi - lo) * self.raw(n)).astype(F32)

    def bern(self, p) -> np.ndarray:
        return self.raw() < p

    def choice(self, probs) -> np.ndarray:
        """Index drawn from shared (k,) or per-face (B, k) weights."""
        w = np.asarray(probs, np.float64)
        cum = np.cumsum(np.broadcast_to(w, (self.u.shape[0], w.shape[-1])), axis=1)
        r = self.raw()[:, None] * cum[:, -1:]
        return (r >= cum).sum(1).clip(0, cum.shape[1] - 1)


def draw_uniforms(keys: list[tuple[int, ...]], n: int = N_UNIFORMS) -> np.ndarray:
    """(B, n) uniforms, row i from its own generator seeded by `keys[i]` (non-negative integers)."""
    if not keys:
        return np.zeros((0, n))
    return np.stack([np.random.default_rng(list(k)).random(n) for k in keys])


def _lerp_palette(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    x = np.clip(t, 0, 1) * (len(palette) - 1)
    i = np.minimum(x.astype(int), len(palette) - 2)
    f = (x - i)[:, None]
    return ((1 - f) * palette[i] + f * palette[i + 1]).astype(F32)


def _jitter(d: Draws, base: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(base * d.uniform(1 - amount, 1 + amount, 3), 0, 255).astype(F32)


def _force(value: np.ndarray, forced: np.ndarray | None, name: str) -> np.ndarray:
    if forced is None:
        return value
    col = forced[:, ATTRIBUTE_NAMES.index(name)]
    return np.where(col >= 0, col == 1, value)


def sample_faces(u: np.ndarray, dark: np.ndarray, expression: np.ndarray | None = None,
                 attributes: np.ndarray | None = None, intensity: np.ndarray | None = None,
                 difficulty: Difficulty | str | None = None) -> Params:
    """Faces from uniforms `u` (B, N_UNIFORMS).

    `dark`: (B,) bool, the skin-tone group. `expression`: (B,) class ids to render (default: the
    Smiling attribute gives Happy, otherwise a mixture that is half neutral). `attributes`: (B, 10)
    values that force attributes (1 or 0; -1 draws as usual), in `ATTRIBUTE_NAMES` order; attributes
    drawn after a forced one follow their correlations with it. `intensity`: (B,) expression
    intensity in 0..1 instead of a draw in [intensity_min, 1] (Neutral always has 0). `difficulty`: a
    `Difficulty` or preset name (default "default"); it scales what is drawn, never what is consumed.
    """
    k = resolve_difficulty(difficulty)
    d = Draws(u)
    b = len(u)
    p: Params = {}
    f = None if attributes is None else np.asarray(attributes, np.int64).reshape(b, len(ATTRIBUTE_NAMES))
    male = d.bern(0.45)
    age = d.uniform(0, 1)
    old = age > 0.72
    dark = np.asarray(dark, bool)

    # attributes, with CelebA-like correlations
    pale = _force(d.bern(np.where(dark, 0.04, 0.15)), f, "Pale_Skin")
    blond = _force(d.bern(np.where(dark, np.where(male, 0.02, 0.05), np.where(male, 0.10, 0.30)) * ~old),
                   f, "Blond_Hair")
    makeup = _force(d.bern(np.where(male, 0.02, 0.55) * np.where(old, 0.5, 1.0)), f, "Heavy_Makeup")
    beard = _force(d.bern(np.where(male & ~makeup, 0.38, 0.0)), f, "Beard")
    mustache = _force(d.bern(np.where(beard, 0.6, np.where(male, 0.06, 0.0))), f, "Mustache")
    hat = _force(d.bern(0.12), f, "Wearing_Hat")
    style = np.where(male, d.choice([0.75, 0.10, 0.15]), d.choice([0.25, 0.75, 0.0]))  # short/long/bald
    style = np.where(blond & (style == 2), 0, style)
    bangs = _force(d.bern(np.where(style == 2, 0.0, np.where(male, 0.10, 0.28) * np.where(hat, 0.5, 1.0))),
                   f, "Bangs")
    style = np.where(bangs & (style == 2), 0, style)  # bangs need hair
    glasses = _force(d.bern(np.where(old, 0.25, 0.13)), f, "Eyeglasses")
    wrinkles = _force(d.bern(np.where(old, 0.85, 0.03)), f, "Wrinkles")
    smiling = _force(d.bern(0.48), f, "Smiling")

    # expression: given, or Happy when smiling, else a mixture of the others (half neutral)
    mix = d.choice([0.45, 0.10, 0.07, 0.07, 0.07, 0.08, 0.08, 0.08])
    nonhappy = d.choice([0.55, 0.0, 0.09, 0.07, 0.07, 0.07, 0.08, 0.07])
    if expression is None:
        expression = np.where(smiling, 1, np.where(mix == 1, nonhappy, mix))
    expression = np.asarray(expression, np.int64)
    smiling = expression == 1
    drawn = d.uniform(float(k.intensity_min), 1.0)
    intensity = drawn if intensity is None else np.asarray(intensity, F32)
    intensity = np.where(expression == 0, 0.0, intensity).astype(F32)
    p["expression"], p["intensity"] = expression, intensity
    p["attributes"] = np.stack([bangs, beard, blond, glasses, makeup, mustache, pale, smiling, hat,
                                wrinkles], 1).astype(np.int64)
    p["dark"], p["male"], p["age"] = dark, male, age

    # identity geometry
    p["face_w"] = d.uniform(0.40, 0.49) + np.where(male, 0.02, 0.0).astype(F32)
    p["face_h"] = d.uniform(0.56, 0.64)
    p["jaw"] = d.uniform(0.05, 0.35) - np.where(male, 0.08, 0.0).astype(F32)
    p["eye_y"] = d.uniform(-0.13, -0.05)
    p["eye_dx"] = d.uniform(0.17, 0.22)
    p["eye_w"] = d.uniform(0.085, 0.11)
    p["eye_h"] = d.uniform(0.038, 0.055)
    p["gaze"] = d.uniform(-0.3, 0.3)
    p["brow_dy"] = d.uniform(0.085, 0.12)
    p["brow_w"] = d.uniform(0.095, 0.13)
    p["brow_t"] = d.uniform(0.016, 0.028) * np.where(male, 1.25, 1.0).astype(F32)
    p["brow_arch"] = d.uniform(0.0, 0.03)
    p["nose_len"] = d.uniform(0.15, 0.22)
    p["nose_w"] = d.uniform(0.05, 0.08)
    p["mouth_y"] = d.uniform(0.26, 0.33)
    p["mouth_w"] = d.uniform(0.12, 0.165)
    p["lip_t"] = d.uniform(0.016, 0.03)
    p["hair_vol"] = d.uniform(0.04, 0.13)
    p["hair_style"] = style
    p["hairline"] = d.uniform(0.5, 0.62) + np.where(male & old, 0.08, 0.0).astype(F32)
    p["bangs_len"] = d.uniform(0.10, 0.17) * F32(1 + 0.25 * (k.detail - 1))
    # under a hat, bangs reach at least 0.09 below the brim (render.paint_hat) so they stay visible
    under_hat = p["face_h"] * (p["hairline"] - F32(0.45)) + F32(0.09)
    p["bangs_len"] = np.where(hat & bangs, np.maximum(p["bangs_len"], under_hat), p["bangs_len"]).astype(F32)
    p["bangs_phase"] = d.uniform(0, 6.283)
    p["strand_phase"] = d.uniform(0, 6.283)
    p["hat_style"] = d.bern(0.5)  # brimmed cap, else beanie
    p["sun"] = d.bern(0.15) & glasses  # sunglasses
    p["smirk_side"] = np.where(d.bern(0.5), 1.0, -1.0).astype(F32)

    # colours
    tone = np.where(dark, d.uniform(0.55, 1.0), d.uniform(0.0, 0.45))
    skin = _lerp_palette(_SKIN_PALETTE, tone)
    grey = skin.mean(1, keepdims=True)
    pale_skin = 0.45 * skin + 0.35 * _PALE + 0.2 * grey
    if k.attributes != 1:
        pale_skin = np.clip(skin + k.attributes * (pale_skin - skin), 0, 255)
    skin = np.where(pale[:, None], pale_skin, skin) * d.uniform(0.95, 1.05, 3)
    p["skin"] = skin.astype(F32)
    p["lip"] = (p["skin"] * np.array([0.82, 0.58, 0.58], F32) * d.uniform(0.9, 1.05, 3)).astype(F32)
    lipstick = np.array([[190, 25, 45], [150, 20, 60], [205, 70, 90], [120, 30, 40]], F32)
    p["lipstick"] = _jitter(d, lipstick[d.choice([1, 1, 1, 1])], 0.1)
    shadow = np.array([[110, 70, 130], [90, 60, 50], [60, 90, 140], [140, 90, 60]], F32)
    p["eyeshadow"] = _jitter(d, shadow[d.choice([1, 1, 1, 1])], 0.1)
    hair_probs = np.where(dark[:, None], [[0.8, 0.2, 0.0]], [[0.35, 0.5, 0.15]])
    hair_kind = np.array(["black", "brown", "red"])[d.choice(hair_probs)]
    grey_hair = old & d.bern(0.65)
    hair_kind = np.where(blond, "blond", np.where(grey_hair, "grey", hair_kind))
    p["hair"] = _jitter(d, np.array([_HAIR[k] for k in hair_kind], F32), 0.12)
    p["brow"] = (np.where(blond[:, None], p["hair"] * 0.75, p["hair"] * 0.85 + 8)).astype(F32)
    p["iris"] = _jitter(d, np.array([[70, 45, 25], [60, 90, 120], [80, 100, 60], [40, 30, 25]],
                                    F32)[d.choice(np.where(dark[:, None], [[0.5, 0, 0, 0.5]],
                                                           [[0.4, 0.25, 0.15, 0.2]]))], 0.15)
    p["clothes"] = d.uniform(20, 235, 3)
    p["hat_color"] = d.uniform(15, 240, 3)
    if k.detail != 1:  # more saturated hats, further from hair colours
        hat_grey = p["hat_color"].mean(1, keepdims=True)
        p["hat_color"] = np.clip(hat_grey + (p["hat_color"] - hat_grey) * F32(min(k.detail, 2.0)), 0, 255).astype(F32)
    p["frame_color"] = np.where(d.bern(0.6)[:, None], d.uniform(10, 60, 3), d.uniform(60, 220, 3)).astype(F32)

    # expression geometry: the face's own neutral plus intensity x the class prototype
    proto = _shrink(EXPRESSION_PROTOTYPES[expression] * intensity[:, None], 0.0, k.expression)
    proto[:, EXPRESSION_KEYS.index("teeth")] = np.minimum(proto[:, EXPRESSION_KEYS.index("teeth")], 1.0)
    neutral = {"brow_raise": d.uniform(-0.01, 0.01), "brow_inner": d.uniform(-0.012, 0.012),
               "eye_open": d.uniform(-0.1, 0.1), "mouth_curve": d.uniform(-0.012, 0.012),
               "mouth_open": np.zeros(b, F32), "mouth_width": d.uniform(-0.05, 0.05),
               "smirk": d.uniform(-0.008, 0.008), "lip_press": d.uniform(-0.1, 0.1),
               "nose_wrinkle": np.zeros(b, F32), "teeth": np.zeros(b, F32)}
    for j, key in enumerate(EXPRESSION_KEYS):
        p[key] = (neutral[key] + proto[:, j]).astype(F32)
    p["eye_open"] += 1.0
    p["mouth_width"] += 1.0
    p["lip_press"] += 1.0

    # pose
    p["cx"] = _shrink(d.uniform(-0.05, 0.05), 0.0, k.pose)
    p["cy"] = _shrink(d.uniform(0.0, 0.08), 0.04, k.pose)
    p["scale"] = _shrink(d.uniform(0.98, 1.12), 1.05, k.pose) * F32(k.zoom)
    p["roll"] = _shrink(d.uniform(-0.15, 0.15), 0.0, k.pose)
    p["yaw"] = _shrink(d.uniform(-0.6, 0.6), 0.0, k.pose)

    # lighting: ambient share and a light direction towards the viewer
    p["ambient"] = d.uniform(0.45, 0.75)
    theta, phi = d.uniform(0.0, 0.95), d.uniform(0, 6.283)
    p["light"] = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)],
                          1).astype(F32)

    # background: a blocky layout of coloured cells blended with a smooth gradient
    base = d.uniform(30, 220, 3)
    p["bg_cells"] = np.clip(base[:, None, :] + _shrink(d.uniform(-70, 70, 48), 0.0, k.clutter).reshape(b, 16, 3),
                            0, 255)
    p["bg_cuts"] = np.sort(d.uniform(0.05, 0.95, 6).reshape(b, 2, 3), axis=2)
    grad = np.stack([d.uniform(20, 235, 3), d.uniform(20, 235, 3)], 1)
    if k.clutter != 1:  # the gradient's two ends drawn towards their mean colour
        mid = grad.mean(1, keepdims=True)
        grad = np.clip(mid + (grad - mid) * F32(k.clutter), 0, 255).astype(F32)
    p["bg_grad"] = grad
    p["bg_angle"] = d.uniform(0, 6.283)
    p["bg_mix"] = d.uniform(0.25, 0.85)

    # camera: white balance, exposure, sensor noise, JPEG quality
    p["wb"] = d.uniform(0.93, 1.07, 3) * d.uniform(0.85, 1.12)[:, None]
    p["noise"] = _shrink(d.uniform(1.5, 7.0), 0.0, k.noise)
    p["jpeg_quality"] = np.round(d.uniform(float(k.jpeg_min), 95)).astype(np.int64)
    p["manipulation"] = np.full(b, k.manipulation, F32)
    p["detail"] = np.full(b, k.detail, F32)
    p["motion"] = d.uniform(0, 1, 12)  # per-clip motion for video frames (see video.py)
    return p


def _shrink(x: np.ndarray, centre: float, gain: float) -> np.ndarray:
    """`x` pulled towards `centre` by `gain` (1: unchanged, bit for bit)."""
    if gain == 1:
        return x
    return (F32(centre) + (x - F32(centre)) * F32(gain)).astype(F32)


def take(p: Params, index) -> Params:
    """The faces at `index` (an integer array or slice) of a batch."""
    return {k: v[index] for k, v in p.items()}


def concat(parts: list[Params]) -> Params:
    """One batch from several."""
    return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}
