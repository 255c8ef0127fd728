"""State dicts on disk: checks before one is loaded (it fits the model, every weight is finite),
and the one safetensors writer.

`load_state_dict` reports a misfit as a many-line RuntimeError (or, with ``strict=False``, not at
all), and happily loads nan weights that then predict nan. These helpers name the first problem
in a few words, for a one-line error that also names the file.
"""

from __future__ import annotations

import os
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


def require_finite(state: Mapping[str, Any], path: str | os.PathLike, error: type[Exception]) -> None:
    """`error` naming the file and the first tensor of `state` that holds a nan or an infinity."""
    bad = first_non_finite(state)
    if bad is not None:
        raise error(f"{path}: weight {bad!r} is not finite (nan or inf); refusing weights that would predict nan")


def save_safetensors(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: dict[str, str] | None = None) -> None:
    """Write a state dict as safetensors (CPU, contiguous copies), atomically and with the user's
    umask rather than the 0600 safetensors gives its files."""
    from safetensors.torch import save_file

    from lssat.fileio import atomic_path

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


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
