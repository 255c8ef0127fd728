"""Fairness metrics over the subgroups of one attribute (for example skin_tone: light / dark).

For every task kind: per-group accuracy and the largest accuracy gap between groups (the gap is
max - min over the groups where the value is defined). Multi-label accuracy is the mean accuracy
over attributes. Binary tasks (deepfake detection) add per-group AUC and its gap, the
demographic-parity difference (max - min over groups of the rate of positive predictions) and the
equalised-odds difference (the larger of the TPR gap and the FPR gap, as in fairlearn). A sample
without a value for the attribute (None or "") joins the group "unknown", which is reported like any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lssat.errors import InputError
from lssat.metrics.classification import NamedStatesMetric, fraction
from lssat.metrics.deepfake import roc_auc

KINDS = ("binary", "multiclass", "multilabel")
UNKNOWN = "unknown"


def gap(values: Sequence[float]) -> float:
    """max - min of the values that are not nan; nan when fewer than two are defined."""
    kept = [v for v in values if not math.isnan(v)]
    return max(kept) - min(kept) if len(kept) >= 2 else math.nan


class FairnessMetrics(NamedStatesMetric):
    """Per-subgroup performance and disparity for one subgroup attribute."""

    def __init__(self, attribute: str, kind: str = "binary", threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise InputError(f"fairness kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.attribute, self.kind, self.threshold = attribute, kind, threshold
        self.add_cat_state("group", torch.long)
        self.add_cat_state("correct", torch.float32)
        self.add_cat_state("scores", torch.float32)  # binary only
        self.add_cat_state("target", torch.long)  # binary only
        self.add_name_states("group")

    def update(self, preds: Tensor, target: Tensor, groups: Sequence[Any]) -> None:
        """Add a batch.

        preds: binary: (B,) probabilities of the positive class; multiclass: (B, C) scores or (B,)
        class ids; multilabel: (B, A) probabilities. target: (B,) labels, or (B, A) 0/1 for
        multilabel. groups: this attribute's value per sample (None or "" for unknown).
        """
        preds, target = preds.detach(), target.detach()
        b = target.shape[0] if target.ndim else 0
        if len(groups) != b or preds.shape[0] != b:
            raise InputError(f"fairness '{self.attribute}': {preds.shape[0]} predictions, {b} targets "
                             f"and {len(groups)} group values")
        if self.kind == "binary":
            scores = preds.reshape(-1).float()
            correct = ((scores >= self.threshold).long() == target.long()).float()
            self.scores.append(scores)
            self.target.append(target.long().reshape(-1))
        elif self.kind == "multiclass":
            pred = preds.argmax(dim=1) if preds.ndim == 2 else preds.long()
            correct = (pred == target.long()).float()
        else:
            if preds.shape != target.shape or preds.ndim != 2:
                raise InputError(f"fairness '{self.attribute}': multilabel predictions and targets must "
                                 f"both be (B, A), got {tuple(preds.shape)} and {tuple(target.shape)}")
            correct = ((preds >= self.threshold) == target.bool()).float().mean(dim=1)
        names = [UNKNOWN if g in (None, "") else str(g) for g in groups]
        self.group.append(self.remember_names("group", names))
        self.correct.append(correct)

    def compute(self) -> dict[str, Any]:
        group, correct = self.cat("group"), self.cat("correct")
        names = self.names("group")
        keys = sorted(set(group.tolist()), key=lambda k: names.get(k, ""))
        out: dict[str, Any] = {}
        acc = {}
        for key in keys:
            name, chosen = names.get(key, f"group-{key:x}"), group == key
            out[f"n/{name}"] = int(chosen.sum())
            acc[name] = out[f"acc/{name}"] = float(correct[chosen].double().mean())
        out["acc_gap"] = gap(list(acc.values()))
        if self.kind == "binary":
            out.update(self._binary(group, keys, names))
        notes = []
        if not keys:
            notes.append("no samples")
        elif len(keys) < 2:
            notes.append(f"one subgroup only ({names.get(keys[0], '?')}): gaps are undefined (nan)")
        out["notes"] = notes
        return out

    def _binary(self, group: Tensor, keys: list[int], names: dict[int, str]) -> dict[str, Any]:
        scores, target = self.cat("scores"), self.cat("target")
        pred = (scores >= self.threshold).long()
        out: dict[str, Any] = {}
        auc, pos, tpr, fpr = [], [], [], []
        for key in keys:
            name, chosen = names.get(key, f"group-{key:x}"), group == key
            s, t, p = scores[chosen], target[chosen], pred[chosen]
            auc.append(roc_auc(s, t))
            pos.append(fraction(int(p.sum()), p.numel()))
            tpr.append(fraction(int((p & t).sum()), int(t.sum())))
            fpr.append(fraction(int((p & (1 - t)).sum()), int((1 - t).sum())))
            out[f"auc/{name}"], out[f"pos_rate/{name}"] = auc[-1], pos[-1]
            out[f"tpr/{name}"], out[f"fpr/{name}"] = tpr[-1], fpr[-1]
        tpr_gap, fpr_gap = gap(tpr), gap(fpr)
        out["auc_gap"] = gap(auc)
        out["dp_diff"] = gap(pos)
        out["tpr_gap"], out["fpr_gap"] = tpr_gap, fpr_gap
        out["eo_diff"] = max((v for v in (tpr_gap, fpr_gap) if not math.isnan(v)), default=math.nan)
        return out
