"""`lssat export`: write a trained model's inference path as ONNX or TorchScript."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a trained model's inference path to ONNX or TorchScript",
        description="Export the unmasked pass and the task head (plus the fusion branch where the "
        "recipe fuses), with the input normalisation inside the graph. Input: images (B, 3, S, S) "
        "RGB in [0, 255], uint8 (default) or float32, aligned face crops; outputs: logits and "
        "probabilities (B, K). The model's task, names and input contract are stored in the file.",
    )
    parser.add_argument("checkpoint", help="a run folder of `lssat train` or a checkpoint file")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="default onnx")
    parser.add_argument("-o", "--output", required=True, help="file to write (e.g. model.onnx, model.pt)")
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
