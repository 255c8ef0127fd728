"""When to run a texture kernel eagerly and when through `torch.compile`.

Compiling fuses a descriptor's few dozen tensor passes into one loop (5-10x faster on CPU), but
costs seconds to tens of seconds up front. So, in the default "auto" mode, a kernel is compiled
only once the eager time already spent on the same input shape exceeds `compile_after` seconds
(the ski-rental rule: compiling then at most doubles what the user has spent, and every later
call is faster). A one-off `lssat texture` call never compiles; a training loop compiles after a
few hundred batches. "auto" compiles on CPU only: on a GPU the eager kernels are already
memory-bound and short. `True` compiles at the first call on any device; `False` never does.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Hashable
from typing import Literal, Union

import torch

CompileMode = Union[bool, Literal["auto"]]

_DEFAULT_COMPILE_AFTER = float(os.environ.get("LSSAT_TEXTURE_COMPILE_AFTER", "20"))


class KernelRunner:
    """Runs one pure tensor function per key, switching to a compiled version when it pays."""

    def __init__(self, name: str, compile_after: float = _DEFAULT_COMPILE_AFTER) -> None:
        self.name = name
        self.compile_after = compile_after
        self._eager_seconds: dict[Hashable, float] = {}
        self._compiled: dict[Hashable, Callable] = {}
        self._proven: set[Hashable] = set()
        self._failed = False

    def __call__(self, key: Hashable, make: Callable[[], Callable], args: tuple,
                 eager: Callable, mode: CompileMode, device: torch.device):
        """Run `eager(*args)`, or the compiled `make()` kernel once `mode` says it pays."""
        compiled = self._compiled.get(key)
        if compiled is None and self._should_compile(key, mode, device):
            compiled = self._compile(key, make)
        if compiled is not None:
            if key in self._proven:
                with self._limit():
                    return compiled(*args)
            try:  # torch.compile compiles lazily: a missing C++ compiler shows up here
                with self._limit():
                    out = compiled(*args)
            except Exception as err:  # noqa: BLE001 - any backend failure means: stay eager
                self._failed = True
                self._compiled.pop(key, None)
                warnings.warn(f"lssat.texture: cannot compile the {self.name} kernel ({err}); staying eager",
                              stacklevel=3)
            else:
                self._proven.add(key)
                return out
        start = time.perf_counter()
        out = eager(*args)
        self._eager_seconds[key] = self._eager_seconds.get(key, 0.0) + time.perf_counter() - start
        return out

    def _limit(self):
        # Every key compiles the same Python function, and dynamo caches per code object: without
        # a higher limit, the ninth shape or setting would silently run uncompiled.
        return torch._dynamo.config.patch(recompile_limit=max(64, 2 * len(self._compiled)))

    def _should_compile(self, key: Hashable, mode: CompileMode, device: torch.device) -> bool:
        if mode is False or self._failed:
            return False
        if mode is True:
            return True
        return device.type == "cpu" and self._eager_seconds.get(key, 0.0) >= self.compile_after

    def _compile(self, key: Hashable, make: Callable[[], Callable]) -> Callable:
        kernel = torch.compile(make(), dynamic=False, fullgraph=True)
        self._compiled[key] = kernel
        return kernel

    def is_compiled(self, key: Hashable) -> bool:
        """Whether calls with this key now run the compiled kernel."""
        return key in self._proven
