"""Typed data settings: `DataConfig` (``data`` in a config) and `SyntheticConfig` (``data.synthetic``).

Both validate on construction and raise ConfigError naming the setting (as its dotted config path)
and the problem; `from_dict` builds them from parsed YAML and rejects unknown keys by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from lssat.confkit import check_keys, field_names
from lssat.data.clips import ClipConfig
from lssat.data.index import TASKS
from lssat.data.sampling import FRAME_MODES
from lssat.data.sbi import SBIConfig
from lssat.data.transforms import AugmentConfig
from lssat.errors import ConfigError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any, name: str, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if not _is_int(value) or value < minimum:
        extra = "null or " if allow_none else ""
        raise ConfigError(f"{name} must be {extra}an integer >= {minimum}, got {value!r}")


@dataclass
class SyntheticConfig:
    """The built-in synthetic faces as the data source (``data.synthetic``).

    Images per split, render size (None: the DataModule's image_size), seed, and extra keyword
    options passed to `lssat.data.synthetic.SyntheticFaces` (dark_fraction, clip_len, methods).
    """

    task: str = "expression"
    train: int = 1000
    val: int = 200
    test: int = 200
    size: int | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"data.synthetic.task must be one of {', '.join(TASKS)}, got {self.task!r}")
        _positive_int(self.train, "data.synthetic.train")
        _positive_int(self.val, "data.synthetic.val", minimum=0)
        _positive_int(self.test, "data.synthetic.test", minimum=0)
        _positive_int(self.size, "data.synthetic.size", allow_none=True, minimum=8)
        if not _is_int(self.seed):
            raise ConfigError(f"data.synthetic.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"data.synthetic.options must be a mapping, got {self.options!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyntheticConfig:
        """Build from a config mapping; an unknown key is a ConfigError naming it."""
        check_keys(data, field_names(cls), "data.synthetic")
        return cls(**data)


@dataclass
class DataConfig:
    """Typed data settings (``data`` in a config); validated on construction.

    Exactly one source: `index` (path of an index file, with an optional `data_root` override) or
    `synthetic`. `num_workers` None means min(2, CPU count).

    `in_memory`: "auto" (default), true or false; decode each split's images once and cut batches
    from memory, augmenting whole training batches at once (`lssat.data.memory`). "auto" turns it
    on when image_size <= 128 and the decoded images of all splits fit in `in_memory_budget_mb`
    MiB, except for the train split when RandAugment or random erasing is on (no batched form).
    The in-memory loaders run in the main process (num_workers does not apply to them).

    `sbi`: self-blended training fakes for the deepfake task (`lssat.data.sbi.SBIConfig`: enabled,
    probability, real_only).
    """

    index: str | None = None
    data_root: str | None = None
    synthetic: SyntheticConfig | None = None
    image_size: int = 224
    batch_size: int = 64
    validation_batch_size: int | None = None  # evaluation batches (timm's name); default: batch_size
    num_workers: int | None = None
    train_fraction: float = 1.0
    balance: bool = False
    frames_per_video: int | None = None
    frame_sampling: str = "even"
    eval_frames_per_video: int | None = None
    strict: bool = False
    drop_last: bool = False
    seed: int = 0
    in_memory: bool | str = "auto"
    in_memory_budget_mb: int = 1024
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    clip: ClipConfig | None = None  # clips of T frames per video for clip models (lssat.data.clips)
    sbi: SBIConfig = field(default_factory=SBIConfig)  # self-blended training fakes (deepfake task)

    def __post_init__(self) -> None:
        if isinstance(self.synthetic, Mapping):
            self.synthetic = SyntheticConfig.from_dict(self.synthetic)
        self.clip = ClipConfig.from_value(self.clip)
        if isinstance(self.augment, Mapping):
            self.augment = AugmentConfig.from_dict(self.augment)
        if self.sbi is None or isinstance(self.sbi, Mapping):
            self.sbi = SBIConfig.from_dict(self.sbi)
        if (self.index is None) == (self.synthetic is None):
            raise ConfigError("data: give exactly one source, either data.index (an index file) or data.synthetic")
        for name in ("index", "data_root"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise ConfigError(f"data.{name} must be a path, got {value!r}")
            if value is not None:
                setattr(self, name, os.fspath(value))  # plain strings, so to_dict() stays YAML-friendly
        _positive_int(self.image_size, "data.image_size", minimum=8)
        _positive_int(self.batch_size, "data.batch_size")
        if self.validation_batch_size is not None:
            _positive_int(self.validation_batch_size, "data.validation_batch_size")
        _positive_int(self.num_workers, "data.num_workers", allow_none=True, minimum=0)
        tf = self.train_fraction
        if not isinstance(tf, (int, float)) or isinstance(tf, bool) or not 0 < tf <= 1:
            raise ConfigError(f"data.train_fraction must be a number in (0, 1], got {tf!r}")
        _positive_int(self.frames_per_video, "data.frames_per_video", allow_none=True)
        _positive_int(self.eval_frames_per_video, "data.eval_frames_per_video", allow_none=True)
        if self.frame_sampling not in FRAME_MODES:
            raise ConfigError(f"data.frame_sampling must be one of {', '.join(FRAME_MODES)}, "
                              f"got {self.frame_sampling!r}")
        for name in ("balance", "strict", "drop_last"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"data.{name} must be true or false, got {getattr(self, name)!r}")
        if not _is_int(self.seed):
            raise ConfigError(f"data.seed must be an integer, got {self.seed!r}")
        if not (isinstance(self.in_memory, bool) or self.in_memory == "auto"):
            raise ConfigError(f"data.in_memory must be auto, true or false, got {self.in_memory!r}")
        _positive_int(self.in_memory_budget_mb, "data.in_memory_budget_mb")
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"data.augment must be a mapping of augmentation settings, got {self.augment!r}")
        if not isinstance(self.sbi, SBIConfig):
            raise ConfigError(f"data.sbi must be a mapping (enabled, probability, real_only), got {self.sbi!r}")
        if self.sbi.enabled and self.synthetic is not None and self.synthetic.task != "deepfake":
            raise ConfigError(f"data.sbi: self-blended images are fakes for the deepfake task, not for "
                              f"data.synthetic.task {self.synthetic.task!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """Build from a config mapping (e.g. parsed YAML); unknown keys are a ConfigError naming them."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"data must be a mapping of settings, got {data!r}")
        check_keys(data, field_names(cls), "data")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping (for run records and YAML)."""
        return asdict(self)

    @property
    def workers(self) -> int:
        """The number of loader worker processes to use."""
        if self.num_workers is not None:
            return self.num_workers
        return min(2, os.cpu_count() or 1)
