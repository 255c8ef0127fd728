"""lssat: self-supervised auxiliary learning with texture descriptors for face analysis."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
