"""Speed of video preprocessing: decode, detect, align, and the whole per-video pipeline.

Builds a synthetic video (scikit-image's astronaut photo moving over a grey frame, H.264) at each
width, then times each stage on the frames `lssat preprocess` would sample, best of --repeats runs:

    decode     sample_frames (decodes every frame up to the last sampled one, converts the sampled)
    detect     the dlib HOG detector + 5-point landmarks per frame
    align      align_face per face; baseline: dlib.get_face_chip on the same face (ratio = ours / dlib)
    total      process_video end to end (decode, detect, align, PNG write, manifest)

Run:  .venv/bin/python benchmarks/preprocess.py [--widths 224 480] [--frames 32] [--repeats 3]
Needs the faces extra (pip install 'lssat[faces]').
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_video(path: Path, width: int, n_frames: int) -> Path:
    """A square video whose frames show the astronaut (90% of the side), drifting a few pixels."""
    import skimage.data
    from PIL import Image

    from lssat.preprocess.frames import write_video

    side = int(width * 0.9) // 2 * 2
    astro = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.BILINEAR))
    frames = []
    for i in range(n_frames):
        frame = np.full((width, width, 3), 90, np.uint8)
        dx = int(round(4 * np.sin(i / 5))) + (width - side) // 2
        dy = int(round(4 * np.cos(i / 7))) + (width - side) // 2
        frame[dy:dy + side, dx:dx + side] = astro
        frames.append(frame)
    return write_video(path, frames)


def best(fn, repeats: int) -> tuple[float, object]:
    """Shortest wall time of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench_width(width: int, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    import dlib

    from lssat.data.index import Record
    from lssat.preprocess.align import align_face
    from lssat.preprocess.faces import make_detector
    from lssat.preprocess.frames import sample_frames
    from lssat.preprocess.pipeline import Settings, VideoJob, process_video

    video = synthetic_video(tmp / f"astro_{width}.mp4", width, args.video_frames)
    detector = make_detector("dlib", upsample=args.upsample)
    n = args.frames

    t_decode, frames = best(lambda: sample_frames(video, n), args.repeats)
    t_detect, found = best(lambda: [detector.detect(rgb) for _, rgb in frames], args.repeats)
    pairs = [(rgb, faces[0]) for (_, rgb), faces in zip(frames, found) if faces]
    if not pairs:
        raise SystemExit(f"width {width}: no face detected; try --upsample 2")
    t_align, _ = best(lambda: [align_face(rgb, f, args.margin, args.size) for rgb, f in pairs], args.repeats)
    shapes = [dlib.full_object_detection(dlib.rectangle(*[int(round(v)) for v in f.box]),
                                         [dlib.point(int(x), int(y)) for x, y in f.landmarks]) for _, f in pairs]
    padding = (args.margin - 1) / 2
    t_dlib, _ = best(lambda: [dlib.get_face_chip(rgb, s, size=args.size, padding=padding)
                              for (rgb, _), s in zip(pairs, shapes)], args.repeats)
    settings = Settings(frames=n, margin=args.margin, size=args.size,
                        detector_options={"upsample": args.upsample})
    job = VideoJob(video_id=video.name, path=video, source=Record(path=video.name, split="test", label=0))
    outs = iter(range(args.repeats))
    t_total, result = best(lambda: process_video(job, detector, settings, tmp / f"out_{width}_{next(outs)}"),
                           args.repeats)
    return {"width": width, "frames": len(frames), "faces": len(pairs),
            "decode": len(frames) / t_decode, "detect": len(frames) / t_detect,
            "align": len(pairs) / t_align, "dlib_chip": len(pairs) / t_dlib,
            "total": result.frames / t_total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[224, 480])
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    parser.add_argument("--video-frames", type=int, default=64, help="frames in the synthetic video (default 64)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--margin", type=float, default=1.3)
    parser.add_argument("--upsample", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import dlib  # noqa: F401
    except ImportError:
        print("benchmarks/preprocess.py needs the faces extra: pip install 'lssat[faces]'", file=sys.stderr)
        return 2
    print(f"# video preprocessing speed, frames (or crops) per second, best of {args.repeats}; "
          f"{args.frames} of {args.video_frames} frames sampled, crops {args.size}px, margin {args.margin}, "
          f"dlib upsample {args.upsample}; {platform.processor() or platform.machine()}")
    print(f"{'width':>6} {'frames':>6} {'faces':>5} {'decode':>8} {'detect':>8} {'align':>8} "
          f"{'dlib chip':>9} {'align/dlib':>10} {'total':>8}")
    with tempfile.TemporaryDirectory(prefix="lssat-bench-") as tmp:
        for width in args.widths:
            r = bench_width(width, args, Path(tmp))
            print(f"{r['width']:>6} {r['frames']:>6} {r['faces']:>5} {r['decode']:>8.1f} {r['detect']:>8.1f} "
                  f"{r['align']:>8.1f} {r['dlib_chip']:>9.1f} {r['align'] / r['dlib_chip']:>10.2f} {r['total']:>8.1f}")
    print("# decode counts sampled frames (all frames up to the last sampled one are decoded); "
          "align/dlib > 1 means our alignment is faster than dlib.get_face_chip; "
          "total includes the PNG writes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
