"""The three task kinds: head size, loss, metrics and label decoding from a batch.

- ``deepfake`` (binary): one logit, BCE-with-logits; the probability of "fake" is its sigmoid.
- ``attributes`` (multi-label): one logit per attribute, BCE-with-logits.
- ``expression`` (multi-class): one logit per class, cross-entropy with label smoothing (0.1 by
  default, METHOD.md section 2) and optional class weights (`inverse_frequency_weights`).

A batch is the data module's dict (`lssat.data.datamodule`): "label" (B,) long for deepfake and
expression, "attributes" (B, A) 0/1 for attributes, and optionally "video_id" and "method" (lists
of strings, deepfake) and "subgroup" (a dict of per-sample lists, or a list of per-sample dicts).
An empty string or None in video_id, method or a subgroup value means "absent". A batch may be
empty (B = 0, all its images unreadable): its loss is 0 and it adds nothing to the metrics. `Task.metrics()` returns a `TaskMetrics` module whose `compute()` gives a flat
dict over the whole split (all DDP ranks): the task's metrics plus ``fair/<attribute>/...`` items
for each subgroup attribute.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from lssat.data.index import Index, IndexHeader
from lssat.errors import ConfigError, InputError
from lssat.metrics.classification import MulticlassMetrics, MultilabelMetrics
from lssat.metrics.deepfake import DeepfakeMetrics
from lssat.metrics.fairness import FairnessMetrics

TASK_KINDS = ("deepfake", "attributes", "expression")


def inverse_frequency_weights(counts: Sequence[int] | Tensor) -> Tensor:
    """Class weights n / (C * n_c) (scikit-learn's "balanced"); 0 for a class with no samples."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.ndim != 1 or counts.numel() < 2 or bool((counts < 0).any()):
        raise ConfigError(f"class counts must be a list of at least 2 non-negative numbers, got {counts.tolist()}")
    present = counts > 0
    weights = torch.zeros_like(counts)
    weights[present] = counts.sum() / (counts.numel() * counts[present])
    return weights.float()


def subgroup_values(batch: Mapping[str, Any], key: str, size: int) -> list[Any]:
    """The value of subgroup attribute `key` for each sample of a batch (None where absent or "")."""
    raw = batch.get("subgroup")
    if raw is None:
        return [None] * size
    if isinstance(raw, Mapping):
        values = raw.get(key)
        if values is None:
            return [None] * size
        values = values.tolist() if isinstance(values, Tensor) else list(values)
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        values = [item.get(key) if isinstance(item, Mapping) else None for item in raw]
    else:
        raise InputError(f"batch field 'subgroup' must be a list of dicts or a dict of lists, "
                         f"got {type(raw).__name__}")
    if len(values) != size:
        raise InputError(f"batch field 'subgroup' has {len(values)} values for '{key}', expected {size}")
    return [None if v == "" else v for v in values]


def _strings(batch: Mapping[str, Any], key: str, size: int) -> list[str | None] | None:
    values = batch.get(key)
    if values is None:
        return None
    if isinstance(values, str) or len(values) != size:
        raise InputError(f"batch field '{key}' must be a list of {size} strings")
    return [None if v is None or v == "" else str(v) for v in values]


def _field(batch: Mapping[str, Any], key: str, kind: str) -> Tensor:
    if key not in batch:
        raise InputError(f"a {kind} batch needs the field '{key}'; it has {', '.join(sorted(batch))}")
    value = batch[key]
    return value if isinstance(value, Tensor) else torch.as_tensor(value)


class TaskMetrics(nn.Module):
    """A task's metric plus one fairness metric per subgroup attribute, updated from logits and batch."""

    def __init__(self, task: Task, main: Metric, fairness: Mapping[str, FairnessMetrics]) -> None:
        super().__init__()
        self.task = task
        self.main = main
        self.fairness = nn.ModuleDict(dict(fairness))

    def update(self, logits: Tensor, batch: Mapping[str, Any]) -> None:
        """Add one batch: the head's logits and the batch dict they were computed from."""
        logits = logits.detach()
        target = self.task.target(batch)
        probs = self.task.probabilities(logits)
        self.task.update_main(self.main, probs, target, batch)
        for key, metric in self.fairness.items():
            metric.update(probs, target, subgroup_values(batch, key, target.shape[0]))

    def compute(self) -> dict[str, Any]:
        """The flat result over everything added since the last reset, on every rank alike."""
        out = dict(self.main.compute())
        notes = list(out.pop("notes", []))
        for key, metric in self.fairness.items():
            for name, value in metric.compute().items():
                if name == "notes":
                    notes += [f"fairness {key}: {note}" for note in value]
                else:
                    out[f"fair/{key}/{name}"] = value
        out["notes"] = notes
        return out

    def reset(self) -> None:
        """Forget all batches (call after compute at the end of each epoch)."""
        self.main.reset()
        for metric in self.fairness.values():
            metric.reset()


class Task(ABC):
    """One task kind: what the head outputs, how it is trained and how it is scored."""

    kind: ClassVar[str]
    fairness_kind: ClassVar[str]
    headlines: ClassVar[dict[str, bool]]  # metric name -> higher is better
    default_headline: ClassVar[str]

    def __init__(self, names: Sequence[str], subgroups: Sequence[str] = (), headline: str | None = None,
                 label_smoothing: float = 0.0, threshold: float = 0.5) -> None:
        self.names = [str(n) for n in names]
        self.subgroups = list(subgroups)
        self.headline = headline or self.default_headline
        if self.headline not in self.headlines:
            raise ConfigError(f"{self.kind} task: headline metric must be one of {', '.join(self.headlines)}, "
                              f"got {self.headline!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"{self.kind} task: label_smoothing must lie in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.threshold = float(threshold)

    @property
    @abstractmethod
    def num_outputs(self) -> int:
        """Width of the classification head."""

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger headline value is a better checkpoint."""
        return self.headlines[self.headline]

    def is_better(self, value: float, best: float | None) -> bool:
        """Whether `value` beats `best` on the headline metric (nan never wins; no best yet always loses)."""
        if value is None or math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        return value > best if self.higher_is_better else value < best

    @abstractmethod
    def target(self, batch: Mapping[str, Any]) -> Tensor:
        """The batch's labels, checked against the task."""

    @abstractmethod
    def loss(self, logits: Tensor, batch: Mapping[str, Any]) -> Tensor:
        """The scalar task loss of a batch."""

    @abstractmethod
    def probabilities(self, logits: Tensor) -> Tensor:
        """Head logits to probabilities: (B,) of fake, (B, A) per attribute or (B, C) per class."""

    @abstractmethod
    def predict(self, logits: Tensor) -> Tensor:
        """Head logits to decisions: (B,) 0/1, (B, A) 0/1 or (B,) class ids."""

    @abstractmethod
    def main_metric(self) -> Metric:
        """A fresh metric for the task itself."""

    def update_main(self, metric: Metric, probs: Tensor, target: Tensor, batch: Mapping[str, Any]) -> None:
        """Feed one batch to the task's metric."""
        metric.update(probs, target)

    def metrics(self) -> TaskMetrics:
        """A fresh metric module (one per split; move it to the device with the model)."""
        fairness = {key: FairnessMetrics(key, self.fairness_kind, self.threshold) for key in self.subgroups}
        return TaskMetrics(self, self.main_metric(), fairness)

    def describe(self) -> dict[str, Any]:
        """The task as plain data, for a run record."""
        return {"kind": self.kind, "names": self.names, "num_outputs": self.num_outputs,
                "headline": self.headline, "higher_is_better": self.higher_is_better,
                "label_smoothing": self.label_smoothing, "subgroups": self.subgroups}

    @staticmethod
    def _empty_loss(logits: Tensor) -> Tensor | None:
        # torch's mean over no samples is nan; an empty batch should leave the weights alone
        return logits.sum() * 0.0 if logits.shape[0] == 0 else None

    def _binary_loss(self, logits: Tensor, target: Tensor, pos_weight: Tensor | None) -> Tensor:
        """BCE with logits against 0/1 targets smoothed toward 0.5 (deepfake and attribute tasks)."""
        target = target.to(logits.device, logits.dtype)
        if (empty := self._empty_loss(logits)) is not None:
            return empty
        target = target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        pos_weight = None if pos_weight is None else pos_weight.to(logits.device, logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)

    def _check_logits(self, logits: Tensor) -> Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_outputs:
            raise InputError(f"{self.kind} task: head output must be (B, {self.num_outputs}), "
                             f"got {tuple(logits.shape)}")
        return logits


class DeepfakeTask(Task):
    """Binary real (0) / fake (1) with a single logit."""

    kind = "deepfake"
    fairness_kind = "binary"
    headlines = {"frame_auc": True, "video_auc": True, "acc": True, "video_acc": True, "ap": True, "eer": False}
    default_headline = "frame_auc"

    def __init__(self, names: Sequence[str] = ("real", "fake"), pos_weight: float | None = None,
                 **options: Any) -> None:
        super().__init__(names, **options)
        if len(self.names) != 2:
            raise ConfigError(f"deepfake task: needs 2 class names (real, fake), got {self.names}")
        self.pos_weight = None if pos_weight is None else torch.tensor(float(pos_weight))

    @property
    def num_outputs(self) -> int:
        return 1

    def _logit(self, logits: Tensor) -> Tensor:
        if logits.ndim == 1:
            return logits
        return self._check_logits(logits)[:, 0]

    def target(self, batch: Mapping[str, Any]) -> Tensor:
        label = _field(batch, "label", self.kind).long().reshape(-1)
        if label.numel() and not bool(((label == 0) | (label == 1)).all()):
            raise InputError("deepfake task: batch 'label' must hold 0 (real) or 1 (fake)")
        return label

    def loss(self, logits: Tensor, batch: Mapping[str, Any]) -> Tensor:
        logit = self._logit(logits)
        return self._binary_loss(logit, self.target(batch), self.pos_weight)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(self._logit(logits).float())

    def predict(self, logits: Tensor) -> Tensor:
        return (self.probabilities(logits) >= self.threshold).long()

    def main_metric(self) -> Metric:
        return DeepfakeMetrics(threshold=self.threshold)

    def update_main(self, metric: Metric, probs: Tensor, target: Tensor, batch: Mapping[str, Any]) -> None:
        size = target.shape[0]
        if getattr(batch.get("image"), "ndim", 4) == 5:  # clips (B, T, 3, H, W): a video = mean of its clips
            metric.clips = True
        metric.update(probs, target, _strings(batch, "video_id", size), _strings(batch, "method", size))


class AttributesTask(Task):
    """Multi-label: one logit per attribute."""

    kind = "attributes"
    fairness_kind = "multilabel"
    headlines = {"mean_acc": True, "balanced_acc": True}
    default_headline = "mean_acc"

    def __init__(self, names: Sequence[str], pos_weight: Sequence[float] | Tensor | None = None,
                 **options: Any) -> None:
        super().__init__(names, **options)
        if not self.names:
            raise ConfigError("attributes task: needs at least one attribute name")
        self.pos_weight = None
        if pos_weight is not None:
            self.pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32).reshape(-1)
            if self.pos_weight.numel() != len(self.names):
                raise ConfigError(f"attributes task: pos_weight has {self.pos_weight.numel()} values "
                                  f"for {len(self.names)} attributes")

    @property
    def num_outputs(self) -> int:
        return len(self.names)

    def target(self, batch: Mapping[str, Any]) -> Tensor:
        attrs = _field(batch, "attributes", self.kind)
        if attrs.ndim != 2 or attrs.shape[1] != len(self.names):
            raise InputError(f"attributes task: batch 'attributes' must be (B, {len(self.names)}), "
                             f"got {tuple(attrs.shape)}")
        if attrs.numel() and not bool(((attrs == 0) | (attrs == 1)).all()):
            raise InputError("attributes task: batch 'attributes' must hold 0 or 1")
        return attrs.long()

    def loss(self, logits: Tensor, batch: Mapping[str, Any]) -> Tensor:
        logits = self._check_logits(logits)
        return self._binary_loss(logits, self.target(batch), self.pos_weight)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(self._check_logits(logits).float())

    def predict(self, logits: Tensor) -> Tensor:
        return (self.probabilities(logits) >= self.threshold).long()

    def main_metric(self) -> Metric:
        return MultilabelMetrics(self.names, threshold=self.threshold)


class ExpressionTask(Task):
    """Multi-class: one logit per class, in the order of the index header's classes."""

    kind = "expression"
    fairness_kind = "multiclass"
    headlines = {"acc": True, "macro_f1": True, "balanced_acc": True}
    default_headline = "acc"

    def __init__(self, names: Sequence[str], class_weights: Sequence[float] | Tensor | None = None,
                 label_smoothing: float = 0.1, **options: Any) -> None:
        super().__init__(names, label_smoothing=label_smoothing, **options)
        if len(self.names) < 2:
            raise ConfigError(f"expression task: needs at least 2 classes, got {self.names}")
        self.class_weights = None
        if class_weights is not None:
            self.class_weights = torch.as_tensor(class_weights, dtype=torch.float32).reshape(-1)
            if self.class_weights.numel() != len(self.names):
                raise ConfigError(f"expression task: class_weights has {self.class_weights.numel()} values "
                                  f"for {len(self.names)} classes")

    @property
    def num_outputs(self) -> int:
        return len(self.names)

    def target(self, batch: Mapping[str, Any]) -> Tensor:
        label = _field(batch, "label", self.kind).long().reshape(-1)
        if label.numel() and (label.min() < 0 or label.max() >= len(self.names)):
            raise InputError(f"expression task: batch 'label' must hold class ids 0..{len(self.names) - 1}, "
                             f"got {label.min().item()}..{label.max().item()}")
        return label

    def loss(self, logits: Tensor, batch: Mapping[str, Any]) -> Tensor:
        logits = self._check_logits(logits)
        target = self.target(batch).to(logits.device)
        if (empty := self._empty_loss(logits)) is not None:
            return empty
        weight = None if self.class_weights is None else self.class_weights.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.softmax(self._check_logits(logits).float(), dim=1)

    def predict(self, logits: Tensor) -> Tensor:
        return self._check_logits(logits).argmax(dim=1)

    def main_metric(self) -> Metric:
        return MulticlassMetrics(self.names)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["class_weights"] = None if self.class_weights is None else self.class_weights.tolist()
        return out


_TASKS: dict[str, type[Task]] = {"deepfake": DeepfakeTask, "attributes": AttributesTask, "expression": ExpressionTask}


def build_task(kind: str, names: Sequence[str] | None = None, **options: Any) -> Task:
    """A task by kind. `names`: class names (expression), attribute names (attributes), or
    nothing for deepfake. `options` go to the task class (subgroups, headline, label_smoothing,
    threshold, pos_weight, class_weights)."""
    if kind not in _TASKS:
        raise ConfigError(f"unknown task kind {kind!r}; choose one of: {', '.join(TASK_KINDS)}")
    if kind == "deepfake":
        return DeepfakeTask(**options) if names is None else DeepfakeTask(names, **options)
    if not names:
        raise ConfigError(f"a {kind} task needs its {'class' if kind == 'expression' else 'attribute'} names")
    return _TASKS[kind](names, **options)


def task_from_header(header: IndexHeader, **options: Any) -> Task:
    """The task an index describes: its kind, label names and subgroup attributes."""
    options.setdefault("subgroups", header.subgroups or ())
    if header.task == "deepfake":
        return build_task("deepfake", header.classes, **options)
    names = header.classes if header.task == "expression" else header.attribute_names
    return build_task(header.task, names, **options)


def class_counts(index: Index, split: str = "train") -> list[int]:
    """Samples per class in one split of an expression index (for `inverse_frequency_weights`)."""
    if index.header.task != "expression":
        raise ConfigError(f"class counts need an expression index, this one is {index.header.task!r}")
    counts = [0] * len(index.header.classes or [])
    for record in index.split(split):
        counts[record.label] += 1
    return counts
