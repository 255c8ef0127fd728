"""`lssat show`: draw what a trained model sees, masks, reconstructs and attends to for one image.

It prints what the model was trained on, and warns on stderr (unless --quiet) when a model trained
on the built-in synthetic faces is shown another image."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "show",
        help="draw an image's masked input, texture target, reconstruction and saliency",
        description="Draw, for one image: the face crop, the masked input, each reconstruction "
        "target (RGB or texture code map) and the model's reconstruction, and a saliency map of the "
        "primary prediction (attention rollout for ViTs, gradient x input otherwise).",
    )
    parser.add_argument("checkpoint", help="a run folder of `lssat train` or a checkpoint file")
    parser.add_argument("image", help="an image file, or skimage:NAME for an image shipped with scikit-image")
    parser.add_argument("-o", "--output", default="show.png", help="picture to write (default show.png)")
    parser.add_argument("--faces", choices=("auto", "detect", "crop"), default="auto",
                        help="as in lssat predict (default auto)")
    parser.add_argument("--saliency", choices=("auto", "rollout", "gradxinput"), default="auto",
                        help="auto (default): attention rollout for ViTs, gradient x input otherwise")
    parser.add_argument("--target", default=None,
                        help="class or attribute whose logit the gradient saliency explains "
                        "(default: the predicted class / most likely attribute)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn mask (default 0)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda:0, ...")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no warning on stderr when a model trained on the synthetic faces is shown "
                        "another image")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import sys

    from lssat.infer.predictor import load
    from lssat.infer.provenance import provenance_line, synthetic_warning
    from lssat.infer.show import show_picture
    from lssat.paths import check_output_file

    check_output_file(args.output, "picture (-o)")
    image = args.image
    paths = None if image.startswith("skimage:") else [image]
    if image.startswith("skimage:"):
        from lssat.texture.picture import load_image

        image = load_image(image)[0]
    predictor = load(args.checkpoint, device=args.device, quiet=True)
    warning = None if args.quiet else synthetic_warning(predictor.spec, paths, args.checkpoint)
    if warning:
        print(f"lssat show: warning: {warning}", file=sys.stderr)
    out = show_picture(predictor, image, args.output, faces=args.faces, seed=args.seed,
                       saliency=args.saliency, target=args.target)
    print(provenance_line(predictor.provenance))
    print(f"wrote {out}")
    return 0
