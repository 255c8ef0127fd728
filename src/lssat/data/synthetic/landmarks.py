"""Landmarks of the synthetic faces, from their geometry: the outline that dlib's 68-point scheme
draws with its jaw (17 points, ear to ear at eye level, round the chin) and brows (10 points).

The convex hull of these points is the face region a self-blended image (`lssat.data.sbi`) is
blended in. Nothing is rendered: the points come from the face parameters (`item_faces`) and the
canvas geometry that `render` uses, so they fit the pixels exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lssat.data.synthetic.canvas import Canvas
from lssat.data.synthetic.faces import Params
from lssat.data.synthetic.features import offsets
from lssat.data.synthetic.generator import SyntheticSpec, item_faces

N_JAW, N_BROW = 17, 10


def face_outline(p: Params, size: int) -> np.ndarray:
    """(B, 27, 2) x, y pixel coordinates (0 is the first pixel's centre) of each face's jaw and
    brow points at render size `size`."""
    fu = offsets(p)["fu"].astype(np.float64)[:, None]
    fw, fh = p["face_w"].astype(np.float64)[:, None], p["face_h"].astype(np.float64)[:, None]
    jaw = p["jaw"].astype(np.float64)[:, None]

    def half_width(v: np.ndarray) -> np.ndarray:  # the head's outline (`render.paint_head`)
        width = fw * (1 - jaw * np.square(np.clip(v / fh, 0, 1)))
        return width * np.sqrt(np.clip(1 - np.square(v / fh), 0, 1))

    top = np.arcsin(np.clip(p["eye_y"].astype(np.float64)[:, None] / fh, -1, 1))
    theta = top + (np.pi - 2 * top) * np.linspace(0, 1, N_JAW)[None, :]
    jaw_v = fh * np.sin(theta)
    jaw_u = fu + np.sign(np.cos(theta)) * half_width(jaw_v)
    brow_v = np.repeat((p["eye_y"] - p["brow_dy"] - 0.03).astype(np.float64)[:, None], N_BROW, axis=1)
    brow_u = fu + 0.85 * half_width(brow_v) * np.linspace(-1, 1, N_BROW)[None, :]
    u, v = np.concatenate([jaw_u, brow_u], axis=1), np.concatenate([jaw_v, brow_v], axis=1)
    x, y = Canvas(size, p).to_pixels(u.T, v.T)  # (27, B) each
    return np.stack([np.asarray(x, np.float64).T, np.asarray(y, np.float64).T], axis=-1)


def item_landmarks(spec: SyntheticSpec, index: Sequence[int] | np.ndarray) -> np.ndarray:
    """(n, 27, 2) outline landmarks of items `index` of a synthetic split, in its pixels."""
    return face_outline(item_faces(spec, index), spec.size)
