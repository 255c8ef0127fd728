"""Training recipes: what is masked, reconstructed and classified, and with which auxiliaries.

A recipe is data (METHOD.md section 3, the M / R / C grammar): presets are YAML files shipped in
`lssat/configs/recipes/`, loaded with `load_recipe(name_or_path, overrides)`. Every combination is
validated here, before any model is built, and a bad one raises a ConfigError naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from lssat import presets
from lssat.confkit import check_keys, field_names, set_dotted, unknown_key_error
from lssat.errors import ConfigError

IMAGE_KINDS = ("rgb", "ldp", "lbp")
TEXTURE_KINDS = ("ldp", "lbp")
AUX_KINDS = ("mae", "puzzle", "inpaint")
ENCODINGS = ("scaled", "index", "histogram")
TEXTURE_CHANNELS = ("replicate", "own")
LBP_METHODS = ("default", "ror", "uniform", "nri_uniform")  # "var" is not a code: no target for it


@dataclass
class DecoderSettings:
    """MAE decoder size; None = chosen by encoder width (see `decoder.default_decoder_size`)."""

    width: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0


@dataclass
class TextureSettings:
    """Descriptor parameters (METHOD.md section 4)."""

    lbp_P: int = 8
    lbp_R: float = 1.0
    lbp_method: str = "uniform"
    ldp_k: int = 3


@dataclass
class PuzzleSettings:
    """HMTL puzzling: grid x grid tiles; the task head sees the shuffled image when task_on_shuffled.

    reduction: "sum" (HMTL: each tile head's cross-entropy with weight 1) or "mean" over tiles.
    dropout: before the tile heads (HMTL 0.2); task_dropout: before the task head in a puzzle
    recipe (HMTL 0.3; replaces model.head_dropout; null keeps model.head_dropout).
    """

    grid: int = 3
    task_on_shuffled: bool = True
    reduction: str = "sum"
    dropout: float = 0.2
    task_dropout: float | None = 0.3


@dataclass
class InpaintSettings:
    """HMTL in-painting: one random rectangle per image, sides a fraction of the image side.

    perceptual_weights: optional local file with VGG16 `features` weights (torchvision layout);
    with it the loss adds `perceptual_weight` x the VGG16 relu3_3 feature L1; without it, L1 only.
    """

    min_frac: float = 0.25
    max_frac: float = 0.5
    perceptual_weights: str | None = None
    perceptual_weight: float = 1.0


@dataclass
class Recipe:
    """One training configuration. See docs/models.md for every field."""

    name: str = "custom"
    mask_input: str = "rgb"
    targets: list[str] = field(default_factory=lambda: ["rgb"])
    classify_input: str = "rgb"
    lambda_: float = 0.1
    mask_ratio: float = 0.75
    target_encoding: str = "scaled"
    texture_channels: str = "replicate"
    norm_pix: bool = False
    fusion: bool = False
    aux: list[str] = field(default_factory=lambda: ["mae"])
    decoder: DecoderSettings = field(default_factory=DecoderSettings)
    texture: TextureSettings = field(default_factory=TextureSettings)
    puzzle: PuzzleSettings = field(default_factory=PuzzleSettings)
    inpaint: InpaintSettings = field(default_factory=InpaintSettings)
    hmtl_weights: dict[str, float] = field(
        default_factory=lambda: {"task": 1.0, "puzzle": 1.0, "inpaint": 1.0}
    )

    def __post_init__(self) -> None:
        self.validate()

    @property
    def uses_mae(self) -> bool:
        """True when the masked-autoencoder branch is part of the step."""
        return "mae" in self.aux

    @property
    def label(self) -> str:
        """The M/R/C name of the configuration, e.g. `MRGB/RLDP/CRGB` (or the aux list)."""
        if not self.uses_mae:
            extra = "+".join(a for a in self.aux) or "supervised"
            return f"C{self.classify_input.upper()}/{extra}"
        rec = self.targets[0].upper() if len(self.targets) == 1 else "{" + ",".join(
            t.upper() for t in self.targets) + "}"
        text = f"M{self.mask_input.upper()}/R{rec}/C{self.classify_input.upper()}"
        return text + ("/fusion" if self.fusion else "")

    def validate(self) -> None:
        """Raise ConfigError for any invalid value or combination."""
        _choice("mask_input", self.mask_input, IMAGE_KINDS)
        _choice("classify_input", self.classify_input, IMAGE_KINDS)
        _choice("target_encoding", self.target_encoding, ENCODINGS)
        _choice("texture_channels", self.texture_channels, TEXTURE_CHANNELS)
        _choice("texture.lbp_method", self.texture.lbp_method, LBP_METHODS)
        for key, names, allowed in (("targets", self.targets, IMAGE_KINDS), ("aux", self.aux, AUX_KINDS)):
            if not isinstance(names, list):
                raise ConfigError(f"recipe {self.name}: {key} must be a list, got {names!r}")
            for item in names:
                _choice(key, item, allowed)
            if len(set(names)) != len(names):
                raise ConfigError(f"recipe {self.name}: {key} lists a name twice: {names}")
        if self.uses_mae and not self.targets:
            raise ConfigError(f"recipe {self.name}: aux 'mae' needs at least one reconstruction target")
        if not self.uses_mae and self.targets:
            raise ConfigError(
                f"recipe {self.name}: targets {self.targets} given but aux has no 'mae' to reconstruct them"
            )
        if self.fusion and not self.uses_mae:
            raise ConfigError(f"recipe {self.name}: fusion needs the 'mae' auxiliary branch to fuse")
        if self.norm_pix and not self._has_pixel_target():
            raise ConfigError(
                f"recipe {self.name}: norm_pix applies to rgb or 'scaled' texture targets; there are none"
            )
        _number("lambda_", self.lambda_, 0.0, 1.0, closed=True)
        _number("mask_ratio", self.mask_ratio, 0.0, 1.0, closed=False)
        _integer("texture.lbp_P", self.texture.lbp_P, 1, 16)
        _number("texture.lbp_R", self.texture.lbp_R, 0.0, float("inf"), closed=False)
        _integer("texture.ldp_k", self.texture.ldp_k, 1, 7)
        if self.puzzle.grid not in (2, 3):
            raise ConfigError(f"recipe {self.name}: puzzle.grid must be 2 or 3, got {self.puzzle.grid!r}")
        _choice("puzzle.reduction", self.puzzle.reduction, ("sum", "mean"))
        for key in ("dropout", "task_dropout"):
            value = getattr(self.puzzle, key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not 0 <= value < 1):
                raise ConfigError(f"recipe field puzzle.{key}: expected a number in [0, 1), got {value!r}")
        _number("inpaint.min_frac", self.inpaint.min_frac, 0.0, 1.0, closed=False)
        _number("inpaint.max_frac", self.inpaint.max_frac, 0.0, 1.0, closed=False)
        if self.inpaint.min_frac > self.inpaint.max_frac:
            raise ConfigError(f"recipe {self.name}: inpaint.min_frac is above inpaint.max_frac")
        _number("inpaint.perceptual_weight", self.inpaint.perceptual_weight, 0.0, float("inf"), closed=True)
        if "inpaint" in self.aux and self.inpaint.perceptual_weights is not None:
            path = Path(self.inpaint.perceptual_weights).expanduser()
            if not path.is_file():
                raise ConfigError(f"inpaint.perceptual_weights {str(path)!r}: file not found")
        for key, value in (("width", self.decoder.width), ("depth", self.decoder.depth),
                           ("num_heads", self.decoder.num_heads)):
            if value is not None:
                _integer(f"decoder.{key}", value, 1, 1 << 16)
        if self.decoder.width and self.decoder.num_heads and self.decoder.width % self.decoder.num_heads:
            raise ConfigError(f"recipe {self.name}: decoder.width must be a multiple of decoder.num_heads")
        check_keys(self.hmtl_weights, ("task", "puzzle", "inpaint"), "hmtl_weights", noun="field",
                   label=f"recipe {self.name}")
        for key, value in self.hmtl_weights.items():
            _number(f"hmtl_weights.{key}", value, 0.0, float("inf"), closed=True)

    def _has_pixel_target(self) -> bool:
        return "rgb" in self.targets or (
            self.target_encoding == "scaled" and any(t in TEXTURE_KINDS for t in self.targets)
        )

    def textures_needed(self) -> set[str]:
        """Texture descriptors this recipe computes in the step (inputs and targets)."""
        kinds = {self.classify_input}
        if self.uses_mae:
            kinds |= {self.mask_input, *self.targets}
        return kinds & set(TEXTURE_KINDS)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON ready) of every field."""
        return dataclasses.asdict(self)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"recipe field {key}: {value!r} is not one of {', '.join(allowed)}")


def _number(key: str, value: Any, low: float, high: float, *, closed: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"recipe field {key}: expected a number, got {value!r}")
    inside = low <= value <= high if closed else low < value < high
    if not inside:
        bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ConfigError(f"recipe field {key}: {value} is outside {bounds}")


def _integer(key: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"recipe field {key}: expected an integer in [{low}, {high}], got {value!r}")


# --------------------------------------------------------------------------- loading

_SECTIONS = {"decoder": DecoderSettings, "texture": TextureSettings, "puzzle": PuzzleSettings,
             "inpaint": InpaintSettings}
_ALIASES = {"lambda": "lambda_"}


def preset_names() -> list[str]:
    """Names of the recipe presets shipped with lssat."""
    return presets.preset_names("recipes")


def _read_yaml(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    data, name, folder = presets.read_preset_or_file(name_or_path, "recipes", "recipe")
    return data, (Path(name).stem if folder is not None else name)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Strings from a command line become YAML scalars/lists when the field is not a string."""
    if isinstance(value, str) and not isinstance(default, str) and key not in ("perceptual_weights",):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"recipe field {key}: cannot parse {value!r}") from err
    return value


def _build(data: dict[str, Any], name: str) -> Recipe:
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    kwargs: dict[str, Any] = {"name": name}
    defaults = Recipe.__new__(Recipe)  # field defaults without validation
    for f in dataclasses.fields(Recipe):
        setattr(defaults, f.name, f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
    for raw_key, value in data.items():
        key = _ALIASES.get(raw_key, raw_key)
        if key not in fields:
            raise unknown_key_error("", str(raw_key), list(fields), noun="field", label=f"recipe {name}")
        if key in _SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"recipe {name}: {key} must be a mapping, got {value!r}")
            section = _SECTIONS[key]
            check_keys(value, field_names(section), key, noun="field", label=f"recipe {name}")
            base = getattr(defaults, key)
            kwargs[key] = section(**{k: _coerce(k, v, getattr(base, k)) for k, v in value.items()})
        elif key == "hmtl_weights":
            if not isinstance(value, dict):
                raise ConfigError(f"recipe {name}: hmtl_weights must be a mapping, got {value!r}")
            kwargs[key] = {**defaults.hmtl_weights, **{k: _coerce(k, v, 1.0) for k, v in value.items()}}
        else:
            value = _coerce(key, value, getattr(defaults, key))
            if key in ("targets", "aux") and isinstance(value, str):
                value = [value]
            if key in ("targets", "aux") and value is None:
                value = []
            kwargs[key] = value
    return Recipe(**kwargs)


def load_recipe(name_or_path: str | Path | Recipe = "ssat", overrides: Mapping[str, Any] | None = None) -> Recipe:
    """Load a preset by name (see `preset_names()`) or a YAML file, then apply overrides.

    Overrides are a mapping of field names to values; nested sections take dotted keys
    (`{"texture.lbp_P": 16}`) or mappings (`{"texture": {"lbp_P": 16}}`). String values are parsed
    as YAML for non-string fields, so command-line text such as "0.5" or "[ldp, rgb]" works.
    """
    if isinstance(name_or_path, Recipe):
        data, name = name_or_path.to_dict(), name_or_path.name
    else:
        data, name = _read_yaml(name_or_path)
    data = {_ALIASES.get(k, k): v for k, v in data.items()}
    name = str(data.pop("name", name))
    for key, value in (overrides or {}).items():
        key = _ALIASES.get(key, key)
        if key == "name":
            name = str(value)
        elif isinstance(value, dict) and key in _SECTIONS:
            for sub, sub_value in value.items():
                set_dotted(data, [key, sub], sub_value, where="recipe override")
        else:
            set_dotted(data, key, value, where="recipe override")
    return _build(data, name)
