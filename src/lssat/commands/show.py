"""`lssat show`: draw what a trained model sees, masks, reconstructs and attends to for one image."""

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
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from lssat.infer.predictor import load
    from lssat.infer.show import show_picture
    from lssat.paths import check_output_file

    check_output_file(args.output, "picture (-o)")
    image = args.image
    if image.startswith("skimage:"):
        from lssat.texture.picture import load_image

        image = load_image(image)[0]
    predictor = load(args.checkpoint, device=args.device)
    out = show_picture(predictor, image, args.output, faces=args.faces, seed=args.seed,
                       saliency=args.saliency, target=args.target)
    print(f"wrote {out}")
    return 0
