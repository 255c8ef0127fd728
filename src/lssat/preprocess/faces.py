"""Face detectors behind one small interface.

A detector takes an RGB uint8 image (H x W x 3) and returns a list of `Face`: a box, a score and,
when it has them, landmarks with the name of their scheme (which alignment template applies).
Coordinates are pixel indices: (0, 0) is the centre of the top-left pixel, boxes are
[x0, y0, x1, y1] with the first and last pixel covered (dlib's convention).

Built in:

- ``dlib``: dlib's HOG frontal-face detector and the 5-point landmark model shipped in the
  `face-recognition-models` package (optional extra ``pip install 'lssat[faces]'``). Landmarks are
  the outer and inner corner of each eye and the base of the nose (scheme ``dlib5``).
- ``center``: no detection; the central square of the frame, for data that is already cropped.

Another detector (MTCNN, OpenCV, ...) only needs a `detect` method and, for landmark alignment,
an entry for its scheme in `lssat.preprocess.align.TEMPLATES`; register it in `DETECTORS`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lssat.errors import ConfigError, InputError, MissingDependencyError

FACES_EXTRA_HINT = "pip install 'lssat[faces]' (that is: pip install dlib-bin face-recognition-models)"


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in pixel coordinates of the image it was found in."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None  # (K, 2) x, y
    scheme: str | None = None  # landmark scheme, a key of align.TEMPLATES

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0 + 1) * max(0.0, y1 - y0 + 1)


@runtime_checkable
class FaceDetector(Protocol):
    """What the preprocessing needs of a face detector."""

    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image (H x W x 3), in any order."""
        ...


def check_rgb(rgb: Any) -> np.ndarray:
    """Return `rgb` as a C-contiguous uint8 H x W x 3 array, or raise InputError."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise InputError(f"image: expected an RGB uint8 array H x W x 3, got shape {shape} dtype {dtype}")
    return np.ascontiguousarray(rgb)


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise MissingDependencyError(f"the dlib face detector needs dlib: {FACES_EXTRA_HINT}") from None
    return dlib


def five_point_model_path() -> Path:
    """The 5-point landmark model file of the `face-recognition-models` package.

    Found without importing the package: its __init__ needs `pkg_resources`, which recent
    setuptools no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"the dlib face detector needs the landmark model of face-recognition-models: {FACES_EXTRA_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / "shape_predictor_5_face_landmarks.dat"
        if path.is_file():
            return path
    raise MissingDependencyError(
        "face-recognition-models is installed but has no models/shape_predictor_5_face_landmarks.dat; "
        f"reinstall it: {FACES_EXTRA_HINT}")


class DlibDetector:
    """dlib's HOG frontal-face detector plus its 5-point landmark model.

    `upsample`: times the image is doubled before detection (finds faces below about 80 pixels;
    each step costs about 4x). `min_score`: detections scoring below it are dropped (dlib's
    default is 0). `max_side`: images whose longer side exceeds it are shrunk for detection only
    (landmarks are fitted on the full image); None or 0 never shrinks.
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, min_score: float = 0.0, max_side: int | None = 640,
                 predictor_path: str | Path | None = None) -> None:
        if upsample < 0:
            raise ConfigError(f"dlib detector: upsample must be >= 0, got {upsample}")
        if max_side is not None and max_side < 0:
            raise ConfigError(f"dlib detector: max_side must be >= 0, got {max_side}")
        dlib = _import_dlib()
        model = Path(predictor_path) if predictor_path else five_point_model_path()
        if not model.is_file():
            raise InputError(f"{model}: landmark model file not found")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.max_side = int(max_side or 0)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        rgb = check_rgb(rgb)
        height, width = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if self.max_side and max(height, width) > self.max_side:
            from PIL import Image

            scale = self.max_side / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
            scale = size[0] / width
        rects, scores, _ = self._detector.run(small, self.upsample, self.min_score)
        faces = []
        for rect, score in zip(rects, scores):
            box = (rect.left() / scale, rect.top() / scale, rect.right() / scale, rect.bottom() / scale)
            full = self._dlib.rectangle(int(round(box[0])), int(round(box[1])),
                                        int(round(box[2])), int(round(box[3])))
            shape = self._predictor(rgb, full)
            landmarks = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)],
                                 dtype=np.float64)
            faces.append(Face(box=tuple(float(v) for v in box), score=float(score),
                              landmarks=landmarks, scheme="dlib5"))
        return faces


class CenterDetector:
    """Reports the central square of the image (side = the shorter side) as the one face."""

    name = "center"

    def detect(self, rgb: np.ndarray) -> list[Face]:
        rgb = check_rgb(rgb)
        height, width = rgb.shape[:2]
        side = min(height, width)
        x0, y0 = (width - side) // 2, (height - side) // 2
        return [Face(box=(float(x0), float(y0), float(x0 + side - 1), float(y0 + side - 1)), score=1.0)]


#: Detector names for `make_detector` and the command line.
DETECTORS: dict[str, type] = {"dlib": DlibDetector, "center": CenterDetector}


def make_detector(name: str, **options: Any) -> FaceDetector:
    """Build a detector by name; options irrelevant to it are ignored (the CLI passes them all)."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    cls = DETECTORS[name]
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return cls(**{k: v for k, v in options.items() if k in accepted and v is not None})
