"""Export the inference path of a trained model to ONNX or TorchScript, or its backbone for timm.

Only what runs at test time is exported: the unmasked pass and the task head, plus the auxiliary
feature of the fusion branch where the recipe fuses (never the decoder's prediction heads, the
masking or the HMTL heads). Normalisation is inside the graph.

Input contract of the exported model:

- one input ``images``: (B, 3, S, S) RGB, channels first, values in [0, 255] (not normalised),
  dtype uint8 (default) or float32 (`input_dtype`); S is the model's `img_size`, B is dynamic;
- the face must already be aligned and cropped as `lssat predict` does (see docs/inference.md);
- two outputs: ``logits`` (B, K) and ``probabilities`` (B, K): K = 1 (fake probability,
  sigmoid) for deepfake, one sigmoid per attribute, or a softmax over the expression classes.

The model's description (task, names, img_size, the input contract) is stored with the file:
ONNX metadata properties, or the TorchScript archive's extra file ``lssat.json``.

`export_timm` writes the encoder alone (no task head, no auxiliary branches) as timm writes a model
for the Hugging Face hub (`timm.models.save_for_hf`'s layout): a folder with ``config.json``
(architecture, ``model_args``, ``pretrained_cfg`` with the model's own mean, std and input size)
and ``model.safetensors`` with the keys as timm names them. ``timm.create_model("local-dir:DIR",
pretrained=True)`` rebuilds it; its output is the pooled feature lssat's head reads (``num_classes``
0). Its input is the normalised image of the recipe's ``classify_input`` (RGB for every recipe but
the texture-classifying ones); an extra texture stem (``texture_channels: own``) is not part of it.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lssat.errors import ConfigError, InputError, MissingDependencyError
from lssat.fileio import dumps_json

FORMATS = ("onnx", "torchscript")
ALL_FORMATS = (*FORMATS, "timm")
EXPORT_EXTRA_HINT = 'pip install "lssat[export]"'


def require(module: str) -> Any:
    """Import an optional export dependency (onnx, onnxruntime), or a MissingDependencyError naming
    the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"ONNX export needs {module}, which is not installed: {EXPORT_EXTRA_HINT} "
                                     f"(onnx and onnxruntime)") from None
INPUT_DTYPES = {"uint8": torch.uint8, "float32": torch.float32}


class InferenceGraph(nn.Module):
    """model.forward (normalisation, unmasked pass, head, fusion) + the task's probabilities."""

    def __init__(self, model: nn.Module, task_kind: str) -> None:
        super().__init__()
        self.model = model
        self.softmax = task_kind == "expression"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(images.float())
        probs = torch.softmax(logits, dim=-1) if self.softmax else torch.sigmoid(logits)
        return logits, probs


def describe(spec: Any, input_dtype: str) -> dict[str, Any]:
    """The metadata stored with an exported model."""
    return {
        "lssat_export": 1,
        "task": spec.task_kind,
        "names": list(spec.names),
        "threshold": spec.threshold,
        "img_size": spec.img_size,
        "input": f"images: (B, 3, {spec.img_size}, {spec.img_size}) RGB {input_dtype} in [0, 255], "
                 f"aligned face crop (margin {spec.margin}), not normalised",
        "outputs": "logits (B, K), probabilities (B, K)",
        "spec": spec.to_dict(),
    }


def example_input(img_size: int, batch: int = 2, input_dtype: str = "uint8", seed: int = 0) -> torch.Tensor:
    """A random (batch, 3, S, S) image batch in [0, 255] of the given dtype."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, 3, img_size, img_size), generator=g)
    return x.to(INPUT_DTYPES[input_dtype])


def export_model(predictor: Any, output: str | os.PathLike, fmt: str = "onnx", input_dtype: str = "uint8",
                 opset: int = 17) -> Path:
    """Export a loaded `Predictor`'s model to `output` (ONNX or TorchScript); returns the path."""
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if input_dtype not in INPUT_DTYPES:
        raise ConfigError(f"input dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    if fmt == "onnx":
        require("onnx")
    spec = predictor.spec
    graph = InferenceGraph(predictor.model, spec.task_kind).to("cpu").eval()
    example = example_input(spec.img_size, 2, input_dtype)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = describe(spec, input_dtype)
    try:
        if fmt == "onnx":
            _export_onnx(graph, example, output, meta, opset)
        else:
            _export_torchscript(graph, example, output, meta)
    finally:
        predictor.model.to(predictor.device)
    return output


def _quiet():
    """Silence the tracer's warnings about shape checks it freezes (they are shape-only guards)."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Constant folding")
    return ctx


def _export_onnx(graph: nn.Module, example: torch.Tensor, output: Path, meta: dict[str, Any], opset: int) -> None:
    onnx = require("onnx")

    buffer = io.BytesIO()
    ctx = _quiet()
    try:
        # The TorchScript-based exporter: the torch.export one needs onnxscript, not a dependency.
        torch.onnx.export(graph, (example,), buffer, dynamo=False, input_names=["images"],
                          output_names=["logits", "probabilities"], opset_version=opset,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"},
                                        "probabilities": {0: "batch"}})
    except Exception as err:  # noqa: BLE001 - the exporter raises many types for unsupported ops
        raise InputError(f"ONNX export failed: {str(err).splitlines()[0][:200]}") from None
    finally:
        ctx.__exit__(None, None, None)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, dumps_json(value)  # every value JSON-encoded (strict: nan -> null)
    onnx.checker.check_model(model)
    onnx.save(model, str(output))


def _export_torchscript(graph: nn.Module, example: torch.Tensor, output: Path, meta: dict[str, Any]) -> None:
    ctx = _quiet()
    try:
        with torch.no_grad():
            traced = torch.jit.trace(graph, (example,), check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        torch.jit.save(traced, str(output), _extra_files={"lssat.json": dumps_json(meta)})
    except Exception as err:  # noqa: BLE001
        raise InputError(f"TorchScript export failed: {str(err).splitlines()[0][:200]}") from None
    finally:
        ctx.__exit__(None, None, None)


def export_timm(predictor: Any, output: str | os.PathLike) -> Path:
    """Write a loaded `Predictor`'s backbone as a timm-loadable folder (config.json +
    model.safetensors, timm's key names; see the module docstring); returns the folder."""
    from timm.models._hub import save_config_for_hf

    from lssat.fileio import atomic_path
    from lssat.models.weights import save_safetensors

    spec, model = predictor.spec, predictor.model
    backbone = model.backbone.model
    recipe = model.recipe
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder (--format timm writes a folder)")
    folder.mkdir(parents=True, exist_ok=True)
    data_config = {"input_size": (3, spec.img_size, spec.img_size), "mean": model.rgb_mean.flatten().tolist(),
                   "std": model.rgb_std.flatten().tolist(), "crop_pct": float(spec.eval_crop_fraction)}
    lssat_info = {"lssat_export": 1, "classify_input": recipe.classify_input, "recipe": recipe.label,
                  "task": spec.task_kind, "provenance": spec.provenance,
                  "input": f"{recipe.classify_input} image (B, 3, {spec.img_size}, {spec.img_size}), "
                           f"normalised with pretrained_cfg mean/std" if recipe.classify_input == "rgb" else
                           f"{recipe.classify_input} code map scaled to [-1, 1] (see lssat.models.lssat)"}
    with atomic_path(folder / "config.json") as tmp:
        save_config_for_hf(backbone, str(tmp), data_config=data_config,
                           model_config={"pretrained_cfg": {"tag": "lssat"}, "lssat": lssat_info})
    save_safetensors(backbone.state_dict(), folder / "model.safetensors", {"format": "pt"})
    return folder


def timm_features(folder: str | os.PathLike, images: torch.Tensor) -> torch.Tensor:
    """Features of an exported timm folder on normalised `images`, through `timm.create_model`."""
    import timm

    model = timm.create_model(f"local-dir:{Path(folder).resolve()}", pretrained=True).eval()
    with torch.no_grad():
        return model(images)


def run_onnx(path: str | os.PathLike, images: torch.Tensor) -> tuple[Any, Any]:
    """Run an exported ONNX model with ONNX Runtime (CPU): (logits, probabilities) as numpy."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"images": images.cpu().numpy()})
    return logits, probs


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The lssat description stored in an exported ONNX or TorchScript file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return {k: json.loads(v) for k, v in props.items()}
    extra = {"lssat.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["lssat.json"])
