"""`lssat preprocess`: sample frames of videos, detect and align faces, write crops and their index."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "video -> sampled frames -> aligned face crops + an index of the crops (resumable)"

DESCRIPTION = """\
Decode each video, take N evenly spaced frames, detect the face in each, align it on the eye
corners and nose with a similarity transform, and write fixed-size crops under OUT with an index
of them (OUT/index.jsonl) and a report (OUT/report.json). Frames without a face are counted per
video; videos without any face and unreadable videos are listed. Rerunning with the same settings
skips finished videos.

INDEX_OR_ROOT is an lssat index of video records (from `lssat index`), whose labels, splits and
video ids the crops keep; or a folder of videos, which then all get one class: --label real|fake
is required (and --split, default test).
"""

LABELS = {"real": 0, "fake": 1, "0": 0, "1": 1}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `preprocess` subcommand."""
    p = subparsers.add_parser("preprocess", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="INDEX_OR_ROOT", help="an index of video records, or a folder of videos")
    p.add_argument("-o", "--output", dest="out", required=True, metavar="OUT",
                   help="output folder (crops, index.jsonl, report.json); --out is the old spelling")
    p.add_argument("--frames", type=int, default=32, help="frames per video, evenly spaced (0 = every frame; default 32)")
    p.add_argument("--margin", type=float, default=1.3,
                   help="crop side as a multiple of the aligned face square (default 1.3)")
    p.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    p.add_argument("--detector", default="dlib", choices=("dlib", "center"),
                   help="dlib: HOG detector + 5-point landmarks (needs lssat[faces]); "
                        "center: the central square, for already-cropped videos (default dlib)")
    p.add_argument("--upsample", type=int, default=1,
                   help="dlib: times to double the frame before detection (default 1)")
    p.add_argument("--min-score", type=float, default=0.0,
                   help="dlib: drop detections scoring below this (default 0)")
    p.add_argument("--detect-max-side", type=int, default=640,
                   help="dlib: shrink larger frames to this longer side for detection only (0 = never; default 640)")
    p.add_argument("--max-faces", type=int, default=1, help="faces kept per frame, largest first (default 1)")
    p.add_argument("--image-format", dest="image_format", default="png", choices=("png", "jpg"),
                   help="crop image format (default png, lossless; jpg is quality 95, 4:4:4)")
    # the old spelling; --format means an output format in predict and export
    p.add_argument("--format", dest="image_format", choices=("png", "jpg"), help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help="processes working on videos in parallel (default 1)")
    p.add_argument("--data-root", default=None, help="index input: where its record paths are relative to "
                                                      "(overrides the index's root)")
    folder = p.add_argument_group("folder input")
    folder.add_argument("--label", default=None, choices=sorted(LABELS),
                        help="class of every video in the folder (required for a folder)")
    folder.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split of every video in the folder (default test)")
    folder.add_argument("--method", default=None, help="method name for the records (default real / fake)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=handle)
    return p


def _load(args: argparse.Namespace):
    from lssat.data.index import read_index
    from lssat.errors import ConfigError, InputError
    from lssat.preprocess.pipeline import jobs_from_folder, jobs_from_index

    source = Path(args.source)
    if source.is_dir():
        if args.data_root:
            raise ConfigError("--data-root applies to an index input, not a folder of videos")
        if args.label is None:
            raise InputError(f"{source}: is a folder of videos; give --label real|fake (and --split) to crop it as "
                             "one class, or preprocess an index made by `lssat index`")
        return jobs_from_folder(source, LABELS[args.label], args.split, args.method)
    if not source.exists():
        raise InputError(f"{source}: no such index file or folder")
    if args.label is not None or args.method is not None:
        raise ConfigError("--label and --method apply to a folder of videos; an index brings its own labels")
    index = read_index(source, data_root=args.data_root)
    return index.header, jobs_from_index(index, str(source))


def _listing(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def handle(args: argparse.Namespace) -> int:
    """Run the preprocessing and print a summary; exit 1 when some videos could not be read."""
    from lssat.preprocess.pipeline import Settings, run_preprocess

    settings = Settings(
        frames=args.frames, margin=args.margin, size=args.size, detector=args.detector,
        detector_options=({"upsample": args.upsample, "min_score": args.min_score,
                           "max_side": args.detect_max_side} if args.detector == "dlib" else {}),
        max_faces=args.max_faces, image_format=args.image_format)
    settings.validate()
    header, jobs = _load(args)
    summary = run_preprocess(jobs, header, args.out, settings, workers=args.workers,
                             progress=not args.no_progress, source=str(args.source))
    t = summary.report["totals"]
    print(f"{t['videos']} videos: {t['processed']} processed, {t['already_done']} already done, {t['failed']} failed")
    print(f"frames: {t['frames']} sampled, {t['frames_with_face']} with a face, "
          f"{t['frames_without_face']} without; crops: {t['crops']}")
    faceless = sorted((r for r in summary.results if r.status != "failed" and r.frames_without_face),
                      key=lambda r: -r.frames_without_face)
    if faceless:
        print(f"videos with faceless frames ({len(faceless)}): "
              + _listing([f"{r.video_id} {r.frames_without_face}/{r.frames}" for r in faceless]))
    if summary.no_face_videos:
        print(f"no face in any frame ({len(summary.no_face_videos)}): "
              + _listing([r.video_id for r in summary.no_face_videos]))
    for r in summary.failed[:10]:
        print(f"unreadable: {r.error}")
    if len(summary.failed) > 10:
        print(f"unreadable: ... and {len(summary.failed) - 10} more")
    print(f"index: {summary.index_path} ({t['crops']} records); report: {summary.report_path}")
    return 1 if summary.failed else 0
