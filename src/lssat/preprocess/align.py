"""Face alignment: a similarity transform from landmarks to a canonical template, then a crop.

With landmarks of a known scheme (see `TEMPLATES`), the crop is the least-squares similarity
transform (rotation, uniform scale, translation; Umeyama) taking the landmarks onto the template.
The template lives in a unit square that spans the face; `margin` m shows m times that square,
so margin 1.3 adds 15% of the face on every side. This is dlib's `get_face_chip` with
padding = (m - 1) / 2, which the tests check.

For ``dlib5`` the landmarks are the eye corners and the base of the nose (dlib's 5-point model has
no mouth point), so the in-plane rotation comes from the eyes and the scale from the eyes and nose.

Without landmarks the crop is the square around the box centre with side margin x the box's longer
side, unrotated. Parts of a crop outside the frame are black.

Coordinates are pixel indices, (0, 0) the centre of the top-left pixel, in the frame and in the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lssat.errors import ConfigError, InputError
from lssat.preprocess.faces import Face, FaceDetector, check_rgb

#: Canonical landmark positions in the unit face square, per landmark scheme.
TEMPLATES: dict[str, np.ndarray] = {
    # dlib's 5-point template (get_face_chip_details in dlib/image_transforms/interpolation.h):
    # subject's left eye outer and inner corner, right eye outer and inner corner, nose base.
    "dlib5": np.array([
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]),
}


@dataclass
class FaceCrop:
    """An aligned face crop and where it came from."""

    image: np.ndarray  # size x size x 3, uint8
    face: Face  # the detection, in frame coordinates
    matrix: np.ndarray  # 3 x 3, frame pixel coordinates -> crop pixel coordinates
    box: list[float]  # the face box in crop coordinates (bounds of the mapped box corners)
    landmarks: list[list[float]] | None  # the landmarks in crop coordinates


def check_crop_settings(margin: float, size: int) -> None:
    """Raise ConfigError for a margin or size that cannot give a crop."""
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ConfigError(f"margin must be a positive number, got {margin!r}")
    if not (isinstance(size, int) and 8 <= size <= 4096):
        raise ConfigError(f"crop size must be an integer in 8..4096, got {size!r}")


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3 x 3 least-squares similarity transform taking points `src` (N x 2) onto `dst`.

    Solves x' = a x - b y + tx, y' = b x + a y + ty as one linear least-squares problem (the 2-D
    case of Umeyama's method, no reflection); the tests check it against scikit-image's
    SimilarityTransform, which is ten times slower on five points.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(src) < 2 or len(src) != len(dst) or np.ptp(src, axis=0).max() <= 1e-9:
        raise InputError(f"landmarks: cannot fit a similarity transform to {len(src)} points (degenerate)")
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    system = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(system, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])


def face_matrix(face: Face, margin: float, size: int) -> np.ndarray:
    """The transform from frame pixels to crop pixels for one face (see the module notes)."""
    template = TEMPLATES.get(face.scheme or "")
    if face.landmarks is not None and template is not None:
        if face.landmarks.shape != template.shape:
            raise InputError(f"landmarks: scheme {face.scheme!r} has {len(template)} points, "
                             f"got an array of shape {face.landmarks.shape}")
        # The unit square spans the crop edge to edge: its centre lands on the centre pixel.
        dst = ((template - 0.5) / margin + 0.5) * size - 0.5
        return similarity_matrix(face.landmarks, dst)
    x0, y0, x1, y1 = face.box
    side = max(x1 - x0 + 1, y1 - y0 + 1) * margin
    scale = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    centre = (size - 1) / 2
    return np.array([[scale, 0.0, centre - scale * cx], [0.0, scale, centre - scale * cy], [0.0, 0.0, 1.0]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map N x 2 points through a 3 x 3 affine matrix."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def warp(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample `rgb` into a size x size crop where crop pixel q shows frame point inverse(matrix) q.

    Bilinear (PIL's, which rounds values down: on average half a level darker); when the crop
    shrinks the face by 2x or more, the region is first box-reduced by the integer factor, so the
    result is not aliased.
    """
    scale = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    if scale <= 0:
        raise InputError("alignment: the transform is singular")
    image = Image.fromarray(rgb)
    factor = int(1.0 / scale) if scale < 0.5 else 1
    if factor > 1:
        inverse = np.linalg.inv(matrix)
        corners = apply(inverse, np.array([[-1, -1], [size, -1], [-1, size], [size, size]], dtype=float))
        left, top = np.floor(corners.min(axis=0)).astype(int) - 1
        right, bottom = np.ceil(corners.max(axis=0)).astype(int) + 1
        width = (right - left + factor) // factor * factor
        height = (bottom - top + factor) // factor * factor
        image = image.crop((int(left), int(top), int(left + width), int(top + height))).reduce(factor)
        # Reduced pixel r covers frame pixels left + k r .. left + k r + k - 1: centre left + k r + (k-1)/2.
        offset = (factor - 1) / 2
        to_frame = np.array([[factor, 0, left + offset], [0, factor, top + offset], [0, 0, 1]], dtype=float)
        matrix = matrix @ to_frame
    inverse = np.linalg.inv(matrix)
    linear = inverse[:2, :2]
    # PIL samples in continuous coordinates (pixel centres at +0.5): shift in and out by half a pixel.
    shift = inverse[:2, 2] - linear @ np.array([0.5, 0.5]) + 0.5
    coeffs = (linear[0, 0], linear[0, 1], shift[0], linear[1, 0], linear[1, 1], shift[1])
    out = image.transform((size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def align_face(rgb: np.ndarray, face: Face, margin: float = 1.3, size: int = 256) -> FaceCrop:
    """Align and crop one detected face."""
    rgb = check_rgb(rgb)
    check_crop_settings(margin, size)
    matrix = face_matrix(face, margin, size)
    image = warp(rgb, matrix, size)
    x0, y0, x1, y1 = face.box
    corners = apply(matrix, np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]))
    box = [round(float(v), 2) for v in (*corners.min(axis=0), *corners.max(axis=0))]
    landmarks = None
    if face.landmarks is not None:
        landmarks = [[round(float(x), 2), round(float(y), 2)] for x, y in apply(matrix, face.landmarks)]
    return FaceCrop(image=image, face=face, matrix=matrix, box=box, landmarks=landmarks)


def crop_faces(rgb: np.ndarray, detector: FaceDetector, margin: float = 1.3, size: int = 256,
               max_faces: int | None = 1) -> list[FaceCrop]:
    """Detect, align and crop the faces of one frame, largest box first.

    `max_faces` keeps the largest few (None keeps all); an empty list means no face was found.
    """
    rgb = check_rgb(rgb)
    check_crop_settings(margin, size)
    faces = sorted(detector.detect(rgb), key=lambda f: (-f.area, -f.score))
    if max_faces is not None:
        faces = faces[:max_faces]
    return [align_face(rgb, face, margin, size) for face in faces]
