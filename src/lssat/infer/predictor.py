"""Load a trained model and predict on face images, image files, folders and videos.

    >>> import lssat
    >>> predictor = lssat.load("runs/abc123")          # a run folder or a checkpoint file
    >>> predictor.predict("photo.jpg").prediction       # FileResult for a path
    >>> predictor.predict(rgb_array)                    # Prediction for an in-memory image
    >>> predictor.features([a, b])                      # (2, D) embeddings

A predictor knows its task (kind, class or attribute names, threshold) and its preprocessing:
faces are found with the preprocessing detector, aligned and cropped as for training (margin,
crop size), then resized to the model's input like the evaluation transform. `faces` says what
an input is: "detect" (find the face), "crop" (already a face crop: only resized), "auto" (detect;
an image with no detected face is scored whole, as a crop, and the result says so).

Checkpoints (`lssat.infer.checkpoint`): a run folder of `lssat train` or one of its checkpoint
files, or a file written by `save_checkpoint`.

Every result carries `model`, what the model was trained on (`Predictor.provenance`). A model
trained on the built-in synthetic faces warns once (`SyntheticModelWarning`) when it predicts on
anything but that synthetic data; `quiet=True` silences the warning, not the field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lssat.errors import ConfigError, DataError, InputError
from lssat.infer.checkpoint import ModelSpec, read_checkpoint, save_checkpoint
from lssat.infer.results import FileResult, Prediction, make_prediction

FACE_MODES = ("detect", "crop", "auto")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
ImageLike = Any  # np.ndarray (H, W, 3) uint8, PIL.Image, torch.Tensor (3, H, W) uint8


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device {device!r}: {err}") from None


class Predictor:
    """A trained model in evaluation mode plus its task and preprocessing.

    Args:
        model: an `LSSATModel` (put in eval mode here).
        spec: what the checkpoint says about the model, task and preprocessing.
        device: "auto" (CUDA when available), "cpu", "cuda:0", ...
        detector: face detector name for `faces="detect"/"auto"` (default: the checkpoint's).
        detector_options: passed to `lssat.preprocess.faces.make_detector`.
        batch_size: faces per model call.
        quiet: do not warn when a model trained on the synthetic faces is used on other images.
    """

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, device: str | torch.device | None = "auto",
                 detector: str | None = None, detector_options: dict[str, Any] | None = None,
                 batch_size: int = 32, quiet: bool = False) -> None:
        from lssat.tasks import build_task

        self.spec = spec
        self.device = _pick_device(device)
        self.model = model.to(self.device).eval()
        self.task = build_task(spec.task_kind, spec.names, threshold=spec.threshold)
        self.img_size = int(spec.img_size)
        self.detector_name = detector or spec.detector
        self.detector_options = dict(detector_options or {})
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self._detector = None
        self._resize = None
        self.quiet = bool(quiet)
        self._warned = False

    # ------------------------------------------------------------------ properties
    @property
    def kind(self) -> str:
        """Task kind: deepfake, attributes or expression."""
        return self.spec.task_kind

    @property
    def names(self) -> list[str]:
        """Class names (deepfake, expression) or attribute names, in the head's order."""
        return list(self.spec.names)

    @property
    def provenance(self) -> dict[str, Any]:
        """What the model was trained on: dataset, synthetic, task, names, image size, preprocessing,
        lssat version and run id (None where the checkpoint does not say)."""
        from lssat.infer.provenance import describe

        return describe(self.spec)

    def synthetic_warning(self, paths: Sequence[str | os.PathLike] | None) -> str | None:
        """The warning for a synthetic-trained model used on `paths` (None: in-memory images), or None."""
        from lssat.infer.provenance import synthetic_warning

        return synthetic_warning(self.spec, paths, self.spec.source or "this model")

    def _warn_once(self, inputs: Any) -> None:
        if self.quiet or self._warned:
            return
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        paths = items if all(isinstance(x, (str, os.PathLike)) for x in items) else None
        message = self.synthetic_warning(paths)
        if message:
            import warnings

            from lssat.infer.provenance import SyntheticModelWarning

            self._warned = True
            warnings.warn(message, SyntheticModelWarning, stacklevel=3)

    @property
    def detector(self):
        """The face detector (built on first use)."""
        if self._detector is None:
            from lssat.preprocess.faces import make_detector

            self._detector = make_detector(self.detector_name, **self.detector_options)
        return self._detector

    # ------------------------------------------------------------------ preprocessing
    def to_model_input(self, crop: torch.Tensor) -> torch.Tensor:
        """A uint8 (3, H, W) face crop -> (3, S, S) uint8, as the evaluation transform does."""
        if self._resize is None:
            from lssat.data.transforms import AugmentConfig, eval_transform

            self._resize = eval_transform(self.img_size, AugmentConfig(eval_crop_fraction=self.spec.eval_crop_fraction))
        if tuple(crop.shape[-2:]) == (self.img_size, self.img_size):
            return crop
        return self._resize(crop)

    def face_crops(self, rgb: np.ndarray, faces: str = "auto") -> tuple[torch.Tensor | None, str | None]:
        """The model input for one RGB uint8 (H, W, 3) image, and a note.

        Returns (None, reason) when `faces` is "detect" and no face is found.
        """
        _check_mode(faces)
        if faces != "crop":
            from lssat.preprocess.align import crop_faces

            found = crop_faces(rgb, self.detector, self.spec.margin, self.spec.crop_size, max_faces=1)
            if found:
                return self.to_model_input(chw_tensor(found[0].image)), None
            if faces == "detect":
                return None, "no face found"
            note = "no face detected; scored the whole image as a face crop"
        else:
            note = None
        return self.to_model_input(chw_tensor(rgb)), note

    # ------------------------------------------------------------------ model calls
    @torch.inference_mode()
    def scores(self, batch: torch.Tensor) -> np.ndarray:
        """Probabilities for a (B, 3, S, S) batch in [0, 255]: (B, 1) fake, (B, A) or (B, C)."""
        out = []
        for start in range(0, batch.shape[0], self.batch_size):
            chunk = batch[start:start + self.batch_size].to(self.device)
            probs = self.task.probabilities(self.model(chunk)).float()
            out.append(probs.reshape(chunk.shape[0], -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.spec.num_outputs), np.float32)

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> np.ndarray:
        """Pooled features (the head's input: CLS/pooled feature, fused with the auxiliary feature
        for fusion recipes) of a (B, 3, S, S) batch in [0, 255]."""
        captured: list[torch.Tensor] = []
        hook = self.model.head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
        try:
            for start in range(0, batch.shape[0], self.batch_size):
                self.model(batch[start:start + self.batch_size].to(self.device))
        finally:
            hook.remove()
        return torch.cat(captured).float().cpu().numpy() if captured else np.zeros((0, 0), np.float32)

    def make_prediction(self, scores: np.ndarray) -> Prediction:
        """A typed Prediction from one row of `scores`, carrying the model's provenance."""
        prediction = make_prediction(self.kind, self.names, scores, self.spec.threshold)
        prediction.model = self.provenance
        return prediction

    # ------------------------------------------------------------------ public API
    def predict(self, inputs: ImageLike | str | os.PathLike | Sequence[Any], faces: str = "auto",
                **video_options: Any) -> Any:
        """Predict on one input or a list of inputs.

        - an in-memory image (numpy HxWx3 uint8, PIL image, torch (3, H, W) uint8) -> `Prediction`
          (InputError when `faces="detect"` finds no face);
        - a path to an image or video file -> `FileResult` (errors are captured in it, not raised);
        - a path to a folder -> list of `FileResult`, one per image/video file inside (recursive);
        - a list -> a list of the above.

        `video_options` go to `lssat.infer.video.score_video` (frames, aggregate, detect_every).
        Each result's `model` says what the model was trained on (see `provenance`).
        """
        self._warn_once(inputs)
        if isinstance(inputs, (list, tuple)):
            return [self.predict(x, faces, **video_options) for x in inputs]
        if isinstance(inputs, (str, os.PathLike)):
            path = Path(inputs)
            if path.is_dir():
                return [self.predict_file(p, faces, **video_options) for p in expand_inputs([path])[0]]
            return self.predict_file(path, faces, **video_options)
        crops = self._batch_from_images([inputs], faces)
        return self.make_prediction(self.scores(crops)[0])

    def features(self, inputs: ImageLike | str | os.PathLike | Sequence[Any], faces: str = "auto") -> np.ndarray:
        """(N, D) embeddings of in-memory images or image files (one row per input)."""
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return self.embed(self._batch_from_images(items, faces))

    def predict_file(self, path: str | os.PathLike, faces: str = "auto", **video_options: Any) -> FileResult:
        """Score one image or video file; per-file problems go into the result, never raised."""
        from lssat.preprocess.frames import is_video_path

        path = Path(path)
        if is_video_path(path):
            from lssat.infer.video import score_video

            result = score_video(self, path, faces=faces, **video_options)
            result.model = self.provenance
            return result
        result = FileResult(str(path), "image", model=self.provenance)
        try:
            rgb = read_image(path)
        except DataError as err:
            result.error = str(err).removeprefix(f"{path}: ")
            return result
        crop, note = self.face_crops(rgb, faces)
        if crop is None:
            result.frames_no_face = 1
            result.error = f"{note} (faces={faces}; use --faces crop for images that are face crops)"
            return result
        scores = self.scores(crop.unsqueeze(0))
        result.prediction = self.make_prediction(scores[0])
        result.frames_scored = 1
        result.frame_scores = scores
        if note:
            result.notes.append(note)
        return result

    def _batch_from_images(self, items: Iterable[Any], faces: str) -> torch.Tensor:
        crops = []
        for i, item in enumerate(items):
            rgb = read_image(Path(item)) if isinstance(item, (str, os.PathLike)) else as_rgb(item)
            crop, note = self.face_crops(rgb, faces)
            if crop is None:
                raise InputError(f"input {item if isinstance(item, (str, os.PathLike)) else i}: {note}")
            crops.append(crop)
        if not crops:
            return torch.zeros((0, 3, self.img_size, self.img_size), dtype=torch.uint8)
        return torch.stack(crops)


# --------------------------------------------------------------------------- inputs

def _check_mode(faces: str) -> None:
    if faces not in FACE_MODES:
        raise ConfigError(f"faces must be one of {', '.join(FACE_MODES)}, got {faces!r}")


def chw_tensor(rgb: np.ndarray) -> torch.Tensor:
    """An RGB uint8 (H, W, 3) array as a (3, H, W) tensor (copied when the array is read-only)."""
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    return torch.from_numpy(rgb).permute(2, 0, 1)


def as_rgb(image: ImageLike) -> np.ndarray:
    """An in-memory image as a C-contiguous RGB uint8 (H, W, 3) array."""
    from lssat.data.loading import as_chw_uint8

    if isinstance(image, torch.Tensor) and image.is_floating_point():
        image = image.clamp(0, 255).round().to(torch.uint8)
    if isinstance(image, np.ndarray) and not image.flags.writeable:
        image = image.copy()
    try:
        chw = as_chw_uint8(image)
    except DataError as err:
        raise InputError(f"image: {err}") from None
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy())


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); DataError naming the file otherwise."""
    from lssat.data.loading import NOT_AN_IMAGE, ImageDecodeError, decode_image_file

    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        chw = decode_image_file(path)
    except ImageDecodeError as err:
        if err.reason == NOT_AN_IMAGE:
            raise DataError(f"{path}: not an image or video file ({NOT_AN_IMAGE})") from None
        raise
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy())


def is_media_path(path: Path) -> bool:
    """Whether a file name ends like an image or a video."""
    from lssat.preprocess.frames import is_video_path

    return path.suffix.lower() in IMAGE_EXTENSIONS or is_video_path(path)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], int]:
    """Named files as given (whatever their type: each gets a result); folders expanded to the
    image and video files under them, sorted. Returns the files and the number of other files
    skipped inside folders."""
    files: list[Path] = []
    skipped = 0
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if is_media_path(child):
                    files.append(child)
                else:
                    skipped += 1
        else:
            files.append(path)
    return files, skipped


# --------------------------------------------------------------------------- loading

def load(checkpoint: str | os.PathLike, device: str | torch.device | None = "auto", **options: Any) -> Predictor:
    """A Predictor from a run folder or a checkpoint file (see docs/inference.md for the formats).

    `options` go to `Predictor` (detector, detector_options, batch_size, quiet).
    """
    spec, state = read_checkpoint(checkpoint)
    model = build_model(spec, state)
    return Predictor(model, spec, device=device, **options)


def build_model(spec: ModelSpec, state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """Build the LSSATModel a spec describes and load its weights (strictly)."""
    from lssat.errors import LssatError
    from lssat.models import LSSATModel, Recipe, load_recipe

    try:
        recipe = (load_recipe(Recipe(), overrides=spec.recipe) if isinstance(spec.recipe, dict)
                  else load_recipe(spec.recipe))
        model = LSSATModel(spec.backbone, spec.num_outputs, recipe, spec.img_size,
                           backbone_kwargs=spec.backbone_kwargs, head_dropout=spec.head_dropout,
                           norm_mean=spec.norm_mean, norm_std=spec.norm_std)
    except LssatError as err:
        if not spec.source:
            raise
        raise DataError(f"{spec.source}: the model it describes cannot be built ({err})") from None
    if state is not None:
        from lssat.models.weights import first_mismatch

        problem = first_mismatch(state, model.state_dict())
        if problem:
            raise DataError(f"{spec.source}: weights do not fit the model it describes ({problem})")
        model.load_state_dict(state)
    return model.eval()
