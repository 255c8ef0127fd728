"""Speed of video scoring with `lssat predict`: decode + detect + align + model, split by stage.

Builds a 640x480 H.264 video of scikit-image's astronaut photo drifting over a grey frame, a
randomly initialised ViT (default vit_small_patch16_224 at 224x224; no weights are downloaded)
saved as a checkpoint, and scores every frame through the real pipeline
(`Predictor.predict(video, frames=0)`) with the detector run on every frame and on every K-th
frame (the face box reused in between, its 5 landmarks re-fitted). Prints seconds per stage, the
share of each stage and the frames per second; the model stage alone is also timed at several
batch sizes. Compares the tracked runs' frame scores with those of detecting on every frame.

Run:  .venv/bin/python benchmarks/predict.py [--model vit_small_patch16_224] [--frames 96]
      [--detect-every 1 5 10] [--batch 16] [--threads N]
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
import torch


def make_video(path: Path, n_frames: int, width: int = 640, height: int = 480) -> Path:
    """The astronaut photo (440 px: her face about 80 px) drifting over a grey frame."""
    import skimage.data
    from PIL import Image

    from lssat.preprocess.frames import write_video

    side = 440
    astro = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.BILINEAR))
    frames = []
    for i in range(n_frames):
        frame = np.full((height, width, 3), 90, np.uint8)
        dx = 100 + int(round(40 * np.sin(i / 15)))
        dy = 20 + int(round(15 * np.cos(i / 11)))
        frame[dy:dy + side, dx:dx + side] = astro
        frames.append(frame)
    return write_video(path, frames)


def make_checkpoint(path: Path, backbone: str, size: int) -> Path:
    from lssat.infer.checkpoint import ModelSpec, save_checkpoint
    from lssat.models import LSSATModel

    torch.manual_seed(0)
    spec = ModelSpec(backbone, 1, "deepfake", ["real", "fake"], img_size=size, recipe="lssat-ldp")
    return save_checkpoint(path, LSSATModel(backbone, 1, "lssat-ldp", size), spec)


def model_only(predictor, batch_sizes: list[int], n: int = 48) -> dict[int, float]:
    """Images per second of the model stage alone (uint8 batch -> probabilities)."""
    x = torch.randint(0, 256, (n, 3, predictor.img_size, predictor.img_size), dtype=torch.uint8)
    out = {}
    for b in batch_sizes:
        predictor.batch_size = b
        predictor.scores(x[:b])  # warm-up
        start = time.perf_counter()
        predictor.scores(x)
        out[b] = n / (time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=96, help="frames in the test video (all are scored)")
    parser.add_argument("--detect-every", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--upsample", type=int, nargs="+", default=[1, 0],
                        help="dlib upsampling steps to compare (1: the default, 0: detect at frame size)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lssat.infer.predictor import load
    from lssat.infer.video import StageTimer

    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"machine {platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(tmp / "astronaut.mp4", args.frames)
        predictor = load(make_checkpoint(tmp / "model.pt", args.model, args.size), device="cpu",
                         batch_size=args.batch)
        print(f"model {args.model} at {args.size}x{args.size}; video 640x480, {args.frames} frames, every frame scored")
        speeds = model_only(predictor, sorted({1, 8, args.batch}))
        print("model stage alone: " + ", ".join(f"batch {b}: {v:.1f} img/s" for b, v in speeds.items()))
        predictor.batch_size = args.batch
        predictor.predict(video, frames=8)  # warm-up: detector and landmark model loaded

        reference = None
        print(f"\n{'upsample':>8} {'detect every':>12} {'decode':>8} {'detect':>8} {'track':>8} {'align':>8} {'model':>8} "
              f"{'total s':>8} {'frames/s':>9} {'slowest':>8}  score diff vs every frame")
        runs = [(u, k) for u in args.upsample for k in args.detect_every]
        for upsample, k in runs:
            predictor.detector.upsample = upsample
            timer = StageTimer()
            start = time.perf_counter()
            result = _score(predictor, video, k, timer)
            wall = time.perf_counter() - start
            if not result.ok:
                print(f"{upsample:>8} {k:>12} failed: {result.error}")
                continue
            s = timer.seconds
            stages = ["decode", "detect", "track", "align", "model"]
            slowest = max(stages, key=lambda name: s.get(name, 0.0))
            diff = ""
            if reference is None and k == 1 and upsample == args.upsample[0]:
                reference = result
            elif reference is not None and result.frames_scored == reference.frames_scored:
                frame_diff = np.abs(result.frame_scores - reference.frame_scores).max()
                video_diff = abs(result.prediction.fake_probability - reference.prediction.fake_probability)
                diff = f"frame max {frame_diff:.4f}, video {video_diff:.5f}"
            cells = " ".join(f"{s.get(name, 0.0):8.2f}" for name in stages)
            print(f"{upsample:>8} {k:>12} {cells} {wall:8.2f} {result.frames_scored / wall:9.1f} {slowest:>8}  {diff}")
            if result.frames_no_face:
                print(f"{'':>21} ({result.frames_no_face} frames without a face)")
    print("\nstage seconds are summed over the video; 'track' = reusing the face box and re-fitting its "
          "landmarks on frames where the detector does not run")
    return 0


def _score(predictor, video: Path, detect_every: int, timer):
    from lssat.infer.video import score_video

    return score_video(predictor, video, faces="detect", frames=0, detect_every=detect_every, timer=timer)


if __name__ == "__main__":
    sys.exit(main())
