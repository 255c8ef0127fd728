"""lssat: self-supervised auxiliary learning with texture descriptors for face analysis."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(checkpoint, **options):
    """A predictor for a trained model: `lssat.load("runs/<id>").predict("face.jpg")`.

    `checkpoint`: a run folder of `lssat train` or a checkpoint file. See
    `lssat.infer.predictor.load` (imported here lazily, so `import lssat` stays light).
    """
    from lssat.infer.predictor import load as _load

    return _load(checkpoint, **options)
