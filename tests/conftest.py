"""Test-wide set-up: nothing may reach a model hub or write to the user's home."""

from __future__ import annotations

import os
import tempfile

_SANDBOX = tempfile.mkdtemp(prefix="lssat-tests-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HOME"] = _SANDBOX
os.environ["XDG_CACHE_HOME"] = os.path.join(_SANDBOX, ".cache")
os.environ["TORCH_HOME"] = os.path.join(_SANDBOX, ".cache", "torch")
os.environ["MPLCONFIGDIR"] = os.path.join(_SANDBOX, ".config", "matplotlib")
os.environ.setdefault("MPLBACKEND", "Agg")
