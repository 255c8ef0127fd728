"""Classification metrics that accumulate over batches and DDP ranks, plus their shared machinery.

Every metric here is a `torchmetrics.Metric`: `update()` per batch, `compute()` once per epoch on
every rank, which gathers the states of all ranks first, so the result is over the whole split and
identical on every rank. `compute()` returns a flat dict ready for a JSON run record: python floats
and ints, plus a few non-scalar items under clear keys (``confusion_matrix`` as nested lists,
``notes`` as a list of strings). A value that is undefined on the data (for example a recall of a
class absent from the targets) is ``nan`` and ``notes`` says why; nothing raises for it.

Strings (video ids, manipulation methods, subgroup values) cannot travel through the DDP gather, so
they are keyed by `stable_hash`, a 63-bit hash that is the same in every process; the names behind
the keys travel as fixed-width UTF-8 byte rows in a state of their own (`NamedStatesMetric`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lssat.errors import InputError

NAME_BYTES = 96  # names longer than this are shown truncated; their keys hash the full string


def stable_hash(text: str) -> int:
    """A non-negative 63-bit integer for a string, the same in every process and python run."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def hash_strings(texts: Sequence[str], device: torch.device | str | None = None) -> Tensor:
    """`stable_hash` of each string, as a long tensor."""
    return torch.tensor([stable_hash(t) for t in texts], dtype=torch.long, device=device)


def _name_rows(names: Sequence[str]) -> Tensor:
    rows = torch.zeros(len(names), NAME_BYTES, dtype=torch.uint8)
    for i, name in enumerate(names):
        data = name.encode("utf-8")[:NAME_BYTES]
        rows[i, : len(data)] = torch.tensor(list(data), dtype=torch.uint8)
    return rows


def _row_name(row: Tensor) -> str:
    return bytes(row.tolist()).rstrip(b"\0").decode("utf-8", errors="ignore")


def to_float64(t: Tensor) -> Tensor:
    """A float64 copy for exact-enough final arithmetic (on the CPU where the device lacks float64)."""
    if t.device.type == "mps":
        t = t.cpu()
    return t.double()


def fraction(num: float, den: float) -> float:
    """num / den, or nan when den is 0."""
    return float(num) / float(den) if den else math.nan


def nan_mean(values: Sequence[float]) -> float:
    """The mean of the values that are not nan; nan when there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def scalar_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Only the scalar items of a `compute()` result (for loggers that take numbers only)."""
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def json_ready(value: Any) -> Any:
    """A copy of a result with every nan float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


class NamedStatesMetric(Metric):
    """A Metric base with list ("cat") states that survive ranks without data, and string names.

    torchmetrics replaces an empty list state by an empty float vector before the gather, which
    breaks states of another dtype or shape; `sync` fills empty list states with empty tensors of
    the right dtype and shape instead, so a rank that saw no batch takes part correctly.
    """

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cat_specs: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {}

    def add_cat_state(self, name: str, dtype: torch.dtype, tail: tuple[int, ...] = ()) -> None:
        """A state that concatenates tensors of `dtype` and shape (N, *tail) along dim 0."""
        self.add_state(name, default=[], dist_reduce_fx="cat")
        self._cat_specs[name] = (dtype, tail)

    def add_name_states(self, prefix: str) -> None:
        """States that remember the names behind string keys (`remember_names`, `names`)."""
        self.add_cat_state(f"{prefix}_name_keys", torch.long)
        self.add_cat_state(f"{prefix}_name_rows", torch.uint8, (NAME_BYTES,))

    def remember_names(self, prefix: str, names: Sequence[str]) -> Tensor:
        """Record the distinct names of a batch; returns the key of every name, on this device."""
        distinct = sorted(set(names))
        getattr(self, f"{prefix}_name_keys").append(hash_strings(distinct, self.device))
        getattr(self, f"{prefix}_name_rows").append(_name_rows(distinct).to(self.device))
        return hash_strings(names, self.device)

    def names(self, prefix: str) -> dict[int, str]:
        """key -> name for every name remembered on any rank (call inside compute)."""
        keys = self.cat(f"{prefix}_name_keys").tolist()
        rows = self.cat(f"{prefix}_name_rows").cpu()
        return {k: _row_name(rows[i]) for i, k in enumerate(keys)}

    def _empty(self, name: str) -> Tensor:
        dtype, tail = self._cat_specs[name]
        return torch.zeros((0, *tail), dtype=dtype, device=self.device)

    def cat(self, name: str) -> Tensor:
        """A list state as one tensor (empty with the right shape when nothing was added)."""
        value = getattr(self, name)
        if isinstance(value, Tensor):  # already reduced by a sync
            return value
        return torch.cat(value, dim=0) if value else self._empty(name)

    def sync(self, dist_sync_fn: Callable | None = None, process_group: Any | None = None,
             should_sync: bool = True, distributed_available: Callable | None = None) -> None:
        available = distributed_available or self.distributed_available_fn
        if should_sync and callable(available) and available() and not self._is_synced:
            for name in self._cat_specs:
                state = getattr(self, name)
                if isinstance(state, list) and not state:
                    state.append(self._empty(name))
        super().sync(dist_sync_fn=dist_sync_fn, process_group=process_group,
                     should_sync=should_sync, distributed_available=distributed_available)


def _class_ids(preds: Tensor, num_classes: int) -> Tensor:
    if preds.ndim == 2:
        if preds.shape[1] != num_classes:
            raise InputError(f"predictions have {preds.shape[1]} columns, expected {num_classes} classes")
        return preds.argmax(dim=1)
    if preds.ndim == 1 and not preds.is_floating_point():
        return preds.long()
    raise InputError(f"predictions must be (B, {num_classes}) scores or (B,) class ids, "
                     f"got shape {tuple(preds.shape)}")


class MulticlassMetrics(NamedStatesMetric):
    """Accuracy, macro-F1, balanced accuracy, per-class recall and the confusion matrix.

    All come from one summed confusion matrix (rows: true class, columns: predicted class), so
    accumulation over batches and ranks is exact. Definitions follow scikit-learn: macro-F1 averages
    the F1 of the classes present in the targets or predictions; balanced accuracy averages the
    recall of the classes present in the targets.
    """

    def __init__(self, class_names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(class_names) < 2:
            raise InputError(f"a multi-class metric needs at least 2 class names, got {list(class_names)}")
        self.class_names = list(class_names)
        c = len(self.class_names)
        self.add_state("confmat", default=torch.zeros(c, c, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """preds: (B, C) scores or probabilities, or (B,) class ids; target: (B,) class ids."""
        c = len(self.class_names)
        pred = _class_ids(preds, c)
        target = target.long().reshape(-1)
        if pred.shape != target.shape:
            raise InputError(f"{pred.numel()} predictions but {target.numel()} targets")
        if target.numel() and (target.min() < 0 or target.max() >= c or pred.min() < 0 or pred.max() >= c):
            raise InputError(f"class ids must lie in 0..{c - 1}")
        self.confmat += torch.bincount(target * c + pred, minlength=c * c).reshape(c, c)

    def compute(self) -> dict[str, Any]:
        cm = self.confmat.cpu().double()
        n = float(cm.sum())
        tp, support, predicted = cm.diag(), cm.sum(dim=1), cm.sum(dim=0)
        recall = [fraction(tp[i], support[i]) for i in range(len(self.class_names))]
        present = [i for i in range(len(self.class_names)) if support[i] + predicted[i] > 0]
        f1 = [2 * float(tp[i]) / float(support[i] + predicted[i]) for i in present]
        notes = []
        if n == 0:
            notes.append("no samples")
        missing = [self.class_names[i] for i in range(len(recall)) if support[i] == 0]
        if n and missing:
            notes.append("classes absent from the targets (recall nan, left out of balanced_acc): "
                         + ", ".join(missing))
        out: dict[str, Any] = {
            "acc": fraction(float(tp.sum()), n),
            "macro_f1": sum(f1) / len(f1) if f1 else math.nan,
            "balanced_acc": nan_mean(recall),
            "n": int(n),
        }
        out.update({f"recall/{name}": r for name, r in zip(self.class_names, recall)})
        out["confusion_matrix"] = self.confmat.cpu().tolist()
        out["notes"] = notes
        return out


class MultilabelMetrics(NamedStatesMetric):
    """Mean accuracy over attributes, per-attribute accuracy and balanced accuracy.

    The balanced accuracy of an attribute is (TPR + TNR) / 2; when the targets hold one value only,
    it is the one rate that is defined (as scikit-learn's balanced_accuracy_score does) and
    ``notes`` names the attribute. ``balanced_acc`` is the mean over attributes.
    """

    def __init__(self, attribute_names: Sequence[str], threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not attribute_names:
            raise InputError("a multi-label metric needs at least one attribute name")
        self.attribute_names = list(attribute_names)
        self.threshold = threshold
        a = len(self.attribute_names)
        for name in ("tp", "fp", "tn", "fn"):
            self.add_state(name, default=torch.zeros(a, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        """probs: (B, A) probabilities (positive at >= threshold) or 0/1 predictions; target: (B, A) 0/1."""
        a = len(self.attribute_names)
        if probs.ndim != 2 or probs.shape[1] != a or target.shape != probs.shape:
            raise InputError(f"predictions and targets must both be (B, {a}), got {tuple(probs.shape)} "
                             f"and {tuple(target.shape)}")
        pred = probs >= self.threshold
        truth = target.bool()
        self.tp += (pred & truth).sum(dim=0)
        self.fp += (pred & ~truth).sum(dim=0)
        self.tn += (~pred & ~truth).sum(dim=0)
        self.fn += (~pred & truth).sum(dim=0)

    def compute(self) -> dict[str, Any]:
        tp, fp, tn, fn = (getattr(self, k).cpu().tolist() for k in ("tp", "fp", "tn", "fn"))
        acc, bal, single = [], [], []
        for i, name in enumerate(self.attribute_names):
            n = tp[i] + fp[i] + tn[i] + fn[i]
            acc.append(fraction(tp[i] + tn[i], n))
            tpr, tnr = fraction(tp[i], tp[i] + fn[i]), fraction(tn[i], tn[i] + fp[i])
            bal.append(nan_mean([tpr, tnr]))
            if n and (math.isnan(tpr) or math.isnan(tnr)):
                single.append(name)
        notes = []
        if not any(tp[i] + fp[i] + tn[i] + fn[i] for i in range(len(tp))):
            notes.append("no samples")
        if single:
            notes.append(f"attributes with one target value (balanced accuracy from one rate): {', '.join(single)}")
        out: dict[str, Any] = {
            "mean_acc": nan_mean(acc),
            "balanced_acc": nan_mean(bal),
            "n": int(tp[0] + fp[0] + tn[0] + fn[0]),
        }
        out.update({f"acc/{name}": v for name, v in zip(self.attribute_names, acc)})
        out.update({f"balanced_acc/{name}": v for name, v in zip(self.attribute_names, bal)})
        out["notes"] = notes
        return out
