"""`lssat texture`: draw an image beside its LBP and LDP code maps."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_IMAGE = "skimage:astronaut"


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "texture",
        help="draw an image and its texture code maps (LBP, LDP) side by side",
        description="Compute LBP and/or LDP code maps of one image and write a picture of them "
        "beside the input, with the code histograms.",
    )
    parser.add_argument("image", nargs="?", default=DEFAULT_IMAGE,
                        help="an image file, or skimage:NAME for an image shipped with scikit-image "
                        f"(default: {DEFAULT_IMAGE})")
    parser.add_argument("--descriptor", choices=("lbp", "ldp", "both"), default="both")
    parser.add_argument("--P", type=int, default=8, help="LBP: number of neighbours (default 8)")
    parser.add_argument("--R", type=float, default=1.0, help="LBP: radius in pixels (default 1)")
    parser.add_argument("--method", default="uniform",
                        help="LBP: default, ror, uniform, nri_uniform or var (default uniform)")
    parser.add_argument("--k", type=int, default=3, help="LDP: number of strongest directions (default 3)")
    parser.add_argument("-o", "--output", default="texture.png", help="picture to write (default texture.png)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import time

    from lssat.paths import check_output_file
    from lssat.texture.picture import load_image, texture_picture

    check_output_file(args.output, "picture (-o)")
    image, label = load_image(args.image)
    start = time.perf_counter()
    out = texture_picture(image, label, Path(args.output), descriptor=args.descriptor,
                          P=args.P, R=args.R, method=args.method, k=args.k)
    print(f"wrote {out} ({image.shape[1]}x{image.shape[0]} image, {time.perf_counter() - start:.1f} s)")
    return 0
