"""`lssat export`: write a trained model's inference path as ONNX or TorchScript, or its backbone
as a timm folder."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a trained model's inference path to ONNX or TorchScript, or its backbone for timm",
        description="Export the unmasked pass and the task head (plus the fusion branch where the "
        "recipe fuses), with the input normalisation inside the graph. Input: images (B, 3, S, S) "
        "RGB in [0, 255], uint8 (default) or float32, aligned face crops; outputs: logits and "
        "probabilities (B, K). The model's task, names and input contract are stored in the file. "
        "--format timm writes the backbone alone as a folder timm.create_model('local-dir:DIR', "
        "pretrained=True) loads (config.json + model.safetensors, timm's key names).",
    )
    parser.add_argument("checkpoint", help="a run folder of `lssat train` or a checkpoint file")
    parser.add_argument("--format", choices=("onnx", "torchscript", "timm"), default="onnx",
                        help="onnx (default), torchscript, or timm (the backbone alone, a folder)")
    parser.add_argument("-o", "--output", required=True,
                        help="file to write (e.g. model.onnx, model.pt); a folder for --format timm")
    parser.add_argument("--input-dtype", choices=("uint8", "float32"), default="uint8",
                        help="dtype of the exported model's input (values 0..255 either way; default uint8)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip comparing the exported model's outputs with PyTorch's")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from lssat.errors import InputError
    from lssat.infer.export import example_input, export_model, require, run_onnx
    from lssat.infer.predictor import load

    if args.format == "onnx":  # before loading the model: a missing extra is one line, at once
        require("onnx")
        if not args.no_check:
            require("onnxruntime")
    predictor = load(args.checkpoint, device="cpu")
    if args.format == "timm":
        return _run_timm(predictor, args)
    out = export_model(predictor, args.output, args.format, args.input_dtype, args.opset)
    message = f"wrote {out} ({args.format}, input {args.input_dtype} (B, 3, {predictor.img_size}, {predictor.img_size}))"
    if not args.no_check:
        x = example_input(predictor.img_size, 3, args.input_dtype, seed=1)
        with torch.no_grad():
            ref = predictor.model(x).numpy()
        if args.format == "onnx":
            got = run_onnx(out, x)[0]
        else:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
                got = torch.jit.load(str(out), map_location="cpu")(x)[0].numpy()
        diff = float(np.abs(got - ref).max())
        if not diff <= 1e-4:
            raise InputError(f"{out}: exported logits differ from PyTorch's by {diff:.2e} (> 1e-4)")
        message += f"; logits match PyTorch within {diff:.1e}"
    print(message)
    return 0


def _run_timm(predictor, args: argparse.Namespace) -> int:
    """The backbone as a timm folder, its features checked against lssat's through timm.create_model."""
    import torch

    from lssat.errors import InputError
    from lssat.infer.export import example_input, export_timm, timm_features

    out = export_timm(predictor, args.output)
    model = predictor.model
    message = f"wrote {out} (timm {model.backbone_name}: config.json + model.safetensors)"
    if not args.no_check:
        raw = example_input(predictor.img_size, 3, "float32", seed=1)
        x, stem = model.image_input(model.recipe.classify_input, raw)
        if stem is not None:
            message += "; not checked (the model classifies through its own texture stem, which timm's model lacks)"
        else:
            with torch.no_grad():
                ref = model.backbone(x)
            got = timm_features(out, x)
            diff = float((got - ref).abs().max()) if got.shape == ref.shape else float("inf")
            if not diff <= 1e-5:
                raise InputError(f"{out}: timm's features differ from lssat's by {diff:.2e} (> 1e-5)")
            message += f"; timm.create_model features match lssat's within {diff:.1e}"
    print(message)
    return 0
