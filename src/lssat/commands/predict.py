"""`lssat predict`: score images, folders of images and videos with a trained model.

Every result says what the model was trained on (JSON "model", the CSV trained_on* columns, a
first line in the table); a model trained on the built-in synthetic faces used on other images
gets a one-line warning on stderr (--quiet silences it).

Exit status: 0 every file was scored, 1 some files failed (each has a message in the output),
2 usage error (bad option, unreadable checkpoint, no input files).
"""

from __future__ import annotations

import argparse
import sys

SOME_FAILED = 1


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="score face images, folders and videos with a trained model",
        description="Score images, folders (searched recursively for images and videos) and videos "
        "with a trained model. Videos: faces are detected and aligned as for training in N evenly "
        "spaced frames, and the frame scores aggregated to one video score. Exit status: 0 all files "
        "scored, 1 some files failed (see their messages), 2 usage error.",
    )
    parser.add_argument("checkpoint", help="a run folder of `lssat train` or a checkpoint file")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, video files or folders")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output format (default table; json = one JSON object per line)")
    parser.add_argument("-o", "--output", default=None, help="write the results to this file instead of stdout")
    parser.add_argument("--faces", choices=("auto", "detect", "crop"), default="auto",
                        help="detect: find and align the face; crop: inputs are already face crops "
                        "(only resized); auto (default): detect, and score an image with no detected "
                        "face whole (noted in the output); videos are always detected in auto")
    parser.add_argument("--frames", type=int, default=32,
                        help="videos: evenly spaced frames to score (default 32; 0 = every frame)")
    parser.add_argument("--aggregate", default="mean",
                        help="videos: mean (default), median, max or topk:K (mean of the K largest)")
    parser.add_argument("--detect-every", type=int, default=1, metavar="K",
                        help="videos: run the detector on every K-th scored frame and track the face "
                        "in between (default 1: detect on every frame)")
    parser.add_argument("--detector", default=None,
                        help="face detector: dlib or center (default: the checkpoint's, normally dlib)")
    parser.add_argument("--upsample", type=int, default=None,
                        help="dlib: times each frame is doubled before detection (default 1: finds faces "
                        "down to about 40 px; 0 is about 4x faster and finds faces from about 80 px)")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda:0, ...")
    parser.add_argument("--batch-size", type=int, default=32, help="faces per model call (default 32)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no warning on stderr when a model trained on the synthetic faces scores other "
                        "images (the results still say what the model was trained on)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lssat.progress import progress_bar as tqdm  # whole lines every 30 s when stderr is a log file

    from lssat.errors import InputError
    from lssat.infer.predictor import expand_inputs, load
    from lssat.infer.provenance import synthetic_warning
    from lssat.infer.results import FORMATTERS
    from lssat.infer.video import check_aggregate
    from lssat.paths import check_output_file

    check_aggregate(args.aggregate)
    if args.frames < 0:
        raise InputError(f"--frames must be >= 0 (0 = every frame), got {args.frames}")
    if args.detect_every < 1:
        raise InputError(f"--detect-every must be >= 1, got {args.detect_every}")
    if args.output:
        check_output_file(args.output, "results file (-o)")
    files, skipped = expand_inputs(args.inputs)
    if not files:
        raise InputError(f"no image or video files in {', '.join(args.inputs)}")
    options = {} if args.upsample is None else {"upsample": args.upsample}
    predictor = load(args.checkpoint, device=args.device, detector=args.detector, detector_options=options,
                     batch_size=args.batch_size, quiet=True)
    warning = None if args.quiet else synthetic_warning(predictor.spec, files, args.checkpoint)
    if warning:
        print(f"lssat predict: warning: {warning}", file=sys.stderr)

    results = []
    for path in tqdm(files, desc="predict", unit="file", disable=len(files) < 2, file=sys.stderr):
        results.append(predictor.predict_file(path, faces=args.faces, frames=args.frames,
                                              aggregate=args.aggregate, detect_every=args.detect_every))
    text = FORMATTERS[args.format](results)
    if args.output:
        output = Path(args.output)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as err:
            sys.stdout.write(text)  # the results are not lost
            raise InputError(f"{output}: cannot write the results ({err.strerror or err}); "
                             "they were printed to stdout instead") from None
    else:
        sys.stdout.write(text)
    failed = [r for r in results if not r.ok]
    no_face = sum(r.frames_no_face for r in results)
    summary = f"{len(results) - len(failed)} of {len(results)} files scored"
    if failed:
        summary += f", {len(failed)} failed"
    if no_face:
        summary += f"; {no_face} frames without a face"
    if skipped:
        summary += f"; {skipped} files in the folders are not images or videos and were skipped"
    if args.output:
        summary += f"; results in {args.output}"
    print(summary, file=sys.stderr)
    return SOME_FAILED if failed else 0
