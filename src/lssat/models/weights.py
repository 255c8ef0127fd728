"""Checks on a state dict before it is loaded: that it fits the model, and that every weight is finite.

`load_state_dict` reports a misfit as a many-line RuntimeError (or, with ``strict=False``, not at
all), and happily loads nan weights that then predict nan. These helpers name the first problem
in a few words, for a one-line error that also names the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def first_mismatch(state: Mapping[str, Any], target: Mapping[str, torch.Tensor]) -> str | None:
    """The first difference between a state dict and the model's own (`model.state_dict()`), in
    words: an unexpected key, a missing key, or a shape that differs; None when it fits."""
    for key, value in state.items():
        if key not in target:
            return f"unexpected key {key!r}{_more(state, target)}"
    for key, value in target.items():
        if key not in state:
            return f"missing key {key!r}{_more(target, state)}"
    for key, value in state.items():
        shape = tuple(getattr(value, "shape", ()))
        if shape != tuple(target[key].shape):
            return f"{key!r} has shape {list(shape)}, the model's is {list(target[key].shape)}"
    return None


def _more(have: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    extra = sum(1 for key in have if key not in other) - 1
    return f" (and {extra} more)" if extra > 0 else ""


def first_non_finite(state: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor holding a nan or an infinity, or None."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            if not bool(torch.isfinite(value).all()):
                return key
    return None


def unreadable(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` could not read a file, in a few words: it holds pickled
    Python objects (refused: unpickling them could run code), or it is truncated or no checkpoint."""
    import pickle

    chain = [e for e in (err, err.__cause__, err.__context__) if e is not None]
    text = " ".join(str(e) for e in chain)
    if "Unsupported global" in text or "GLOBAL " in text:
        return "refused: it holds Python objects besides tensors and plain data (unpickling them could run code)"
    if (any(isinstance(e, (EOFError, pickle.UnpicklingError)) for e in chain)
            or "zip archive" in text or "central directory" in text):
        return "truncated, or not a checkpoint file"
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
