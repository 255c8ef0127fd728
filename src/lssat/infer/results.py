"""Typed prediction results and their table / JSON / CSV renderings.

One `Prediction` per scored face (or per video, after aggregating its frames):

- `DeepfakePrediction`: the probability that the face is fake, and the decision at the threshold;
- `AttributesPrediction`: one probability per attribute name, and the attributes above threshold;
- `ExpressionPrediction`: one probability per class name, and the most likely class.

A `FileResult` wraps what `lssat predict` says about one input file: its prediction (None when the
file failed), how many frames were scored, how many had no face, and the error message if any.

Both carry `model`: what the model that made them was trained on (`lssat.infer.provenance.describe`),
None when made by hand; JSON rows hold it as "model", CSV rows as the trained_on* columns, and the
table starts with its one-line summary.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass
class Prediction:
    """Base class: what the model says about one face (or one aggregated video)."""

    kind: ClassVar[str] = ""
    # provenance of the model that made it (lssat.infer.provenance.describe); not in to_dict
    model: dict[str, Any] | None = field(default=None, kw_only=True, repr=False, compare=False)

    @property
    def scores(self) -> np.ndarray:
        """The probabilities as a vector (fake: one value; attributes/expression: one per name)."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """A short human-readable decision."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        raise NotImplementedError


@dataclass
class DeepfakePrediction(Prediction):
    """Binary real / fake: `fake_probability` in [0, 1]."""

    kind: ClassVar[str] = "deepfake"
    fake_probability: float
    threshold: float = 0.5
    names: tuple[str, str] = ("real", "fake")

    @property
    def is_fake(self) -> bool:
        return self.fake_probability >= self.threshold

    @property
    def scores(self) -> np.ndarray:
        return np.array([self.fake_probability], dtype=np.float64)

    @property
    def label(self) -> str:
        return self.names[1] if self.is_fake else self.names[0]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.kind, "label": self.label, "fake_probability": round(self.fake_probability, 6)}


@dataclass
class AttributesPrediction(Prediction):
    """Multi-label: one probability per attribute name."""

    kind: ClassVar[str] = "attributes"
    probabilities: dict[str, float]
    threshold: float = 0.5

    @property
    def present(self) -> list[str]:
        """Attributes at or above the threshold, in the model's order."""
        return [name for name, p in self.probabilities.items() if p >= self.threshold]

    @property
    def scores(self) -> np.ndarray:
        return np.array(list(self.probabilities.values()), dtype=np.float64)

    @property
    def label(self) -> str:
        return ",".join(self.present) or "-"

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.kind, "label": self.label,
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}


@dataclass
class ExpressionPrediction(Prediction):
    """Multi-class: one probability per class name (they sum to 1)."""

    kind: ClassVar[str] = "expression"
    probabilities: dict[str, float]

    @property
    def scores(self) -> np.ndarray:
        return np.array(list(self.probabilities.values()), dtype=np.float64)

    @property
    def label(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def confidence(self) -> float:
        """Probability of the predicted class."""
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.kind, "label": self.label,
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}


def make_prediction(kind: str, names: Sequence[str], scores: np.ndarray, threshold: float = 0.5) -> Prediction:
    """Build the task's Prediction from a vector of probabilities (1 value for deepfake)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if kind == "deepfake":
        return DeepfakePrediction(float(scores[0]), threshold, (str(names[0]), str(names[1])))
    probs = {str(n): float(s) for n, s in zip(names, scores)}
    if kind == "attributes":
        return AttributesPrediction(probs, threshold)
    return ExpressionPrediction(probs)


@dataclass
class FileResult:
    """What `predict` says about one input file (image or video)."""

    path: str
    kind: str  # "image" or "video"
    prediction: Prediction | None = None
    frames_scored: int = 0
    frames_no_face: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)
    frame_scores: np.ndarray | None = None  # (frames_scored, K) per-frame probabilities
    model: dict[str, Any] | None = None  # provenance of the model (lssat.infer.provenance.describe)

    @property
    def ok(self) -> bool:
        return self.error is None and self.prediction is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind, "ok": self.ok,
                               "frames_scored": self.frames_scored, "frames_no_face": self.frames_no_face}
        if self.prediction is not None:
            out.update(self.prediction.to_dict())
        if self.error:
            out["error"] = self.error
        if self.notes:
            out["notes"] = list(self.notes)
        if self.model is not None:
            out["model"] = self.model
        return out


# --------------------------------------------------------------------------- renderings

def _score_columns(results: Sequence[FileResult]) -> list[str]:
    for r in results:
        if r.prediction is not None:
            p = r.prediction
            return ["fake_probability"] if p.kind == "deepfake" else list(p.probabilities)  # type: ignore[attr-defined]
    return []


def _score_values(result: FileResult, columns: list[str]) -> list[str]:
    p = result.prediction
    if p is None:
        return [""] * len(columns)
    return [f"{v:.4f}" for v in p.scores]


def to_json(results: Sequence[FileResult]) -> str:
    """One JSON object per line (JSON Lines), strict JSON (a nan or infinite score is null)."""
    from lssat.fileio import dumps_json

    return "".join(dumps_json(r.to_dict()) + "\n" for r in results)


def _model_of(results: Sequence[FileResult]) -> dict[str, Any] | None:
    return next((r.model for r in results if r.model is not None), None)


MODEL_COLUMNS = ("trained_on", "trained_on_synthetic", "model_run_id", "model_lssat_version")


def _model_values(model: dict[str, Any] | None) -> list[str]:
    if model is None:
        return [""] * len(MODEL_COLUMNS)
    return [model.get("dataset") or "", "true" if model.get("synthetic") else "false", model.get("run_id") or "",
            model.get("lssat_version") or ""]


def to_csv(results: Sequence[FileResult]) -> str:
    """CSV with a header: path, kind, status, label, frames, no-face frames, one column per score, error,
    and, when the results carry the model's provenance, the MODEL_COLUMNS."""
    columns = _score_columns(results)
    with_model = _model_of(results) is not None
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "kind", "status", "label", "frames_scored", "frames_no_face", *columns, "error",
                     *(MODEL_COLUMNS if with_model else ())])
    for r in results:
        writer.writerow([r.path, r.kind, "ok" if r.ok else "failed", r.prediction.label if r.prediction else "",
                         r.frames_scored, r.frames_no_face, *_score_values(r, columns), r.error or "",
                         *(_model_values(r.model) if with_model else ())])
    return buf.getvalue()


def to_table(results: Sequence[FileResult], max_scores: int = 8) -> str:
    """A fixed-width text table for the terminal (at most `max_scores` score columns), after a line
    saying what the model was trained on when the results carry it."""
    columns = _score_columns(results)[:max_scores]
    header = ["file", "label", *columns, "frames", "no face", "status"]
    rows = []
    for r in results:
        values = _score_values(r, columns)[: len(columns)] if r.prediction else [""] * len(columns)
        status = "ok" if r.ok else f"FAILED: {r.error}"
        if r.ok and r.notes:
            status = "ok (" + "; ".join(r.notes) + ")"
        rows.append([r.path, r.prediction.label if r.prediction else "-", *values,
                     str(r.frames_scored), str(r.frames_no_face), status])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # the last column is free text: no padding
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    model = _model_of(results)
    if model is not None:
        from lssat.infer.provenance import provenance_line

        lines.insert(0, provenance_line(model))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines) + "\n"


FORMATTERS = {"table": to_table, "json": to_json, "csv": to_csv}
