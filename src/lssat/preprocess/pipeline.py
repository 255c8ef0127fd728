"""Videos -> sampled frames -> aligned face crops on disk + an index of the crops, resumably.

Output folder layout::

    OUT/index.jsonl                       the crops' index (header copied from the input)
    OUT/report.json                       per-video counts, videos without a face, failures
    OUT/settings.json                     the settings the crops were made with
    OUT/crops/<video_id>/<frame>.png      one crop per frame with a face (<frame>_<k> with --max-faces > 1)
    OUT/done/<video_id>.json              per-video manifest, written atomically after its crops

A video counts as done when its manifest exists, was made with the same settings and all its
crops are on disk; a rerun skips it. A video that cannot be read is reported and retried on the
next run. Frames without a face are counted per video, never dropped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lssat.data.index import Index, IndexHeader, Record, write_index
from lssat.errors import ConfigError, DataError, InputError, LssatError
from lssat.fileio import atomic_write_text, dumps_json
from lssat.preprocess.align import check_crop_settings, crop_faces
from lssat.preprocess.faces import DETECTORS, FaceDetector, make_detector
from lssat.preprocess.frames import VIDEO_EXTENSIONS, is_video_path, sample_frames

IMAGE_FORMATS = {"png": ".png", "jpg": ".jpg"}


@dataclass
class Settings:
    """Everything that decides what the crops look like; a rerun must use the same."""

    frames: int = 32
    margin: float = 1.3
    size: int = 256
    detector: str = "dlib"
    detector_options: dict[str, Any] = field(default_factory=dict)
    max_faces: int = 1
    image_format: str = "png"

    def validate(self) -> None:
        """Raise ConfigError for a value out of range."""
        if not isinstance(self.frames, int) or self.frames < 0:
            raise ConfigError(f"--frames must be >= 0 (0 = every frame), got {self.frames!r}")
        check_crop_settings(self.margin, self.size)
        if self.detector not in DETECTORS:
            raise ConfigError(f"unknown face detector {self.detector!r}; choose one of: {', '.join(DETECTORS)}")
        if not isinstance(self.max_faces, int) or self.max_faces < 1:
            raise ConfigError(f"--max-faces must be >= 1, got {self.max_faces!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {self.image_format!r}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # normalise tuples etc. as JSON would


@dataclass
class VideoJob:
    """One video to process and the record whose labels its crops inherit."""

    video_id: str
    path: Path
    source: Record


@dataclass
class VideoResult:
    """What became of one video."""

    video_id: str
    path: str
    status: str  # "processed" (this run), "already_done" (an earlier run), "failed"
    frames: int = 0
    frames_with_face: int = 0
    no_face_frames: list[int] = field(default_factory=list)
    crops: int = 0
    error: str | None = None
    records: list[Record] = field(default_factory=list)
    crop_geometry: list[dict[str, Any]] = field(default_factory=list)  # what the manifest keeps per crop

    @property
    def frames_without_face(self) -> int:
        return len(self.no_face_frames)

    def summary(self) -> dict[str, Any]:
        """The report entry: counts, without the records."""
        out = {"video_id": self.video_id, "path": self.path, "status": self.status, "frames": self.frames,
               "frames_with_face": self.frames_with_face, "frames_without_face": self.frames_without_face,
               "no_face_frames": self.no_face_frames, "crops": self.crops}
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class RunSummary:
    """The outcome of `run_preprocess`."""

    out: Path
    results: list[VideoResult]
    index_path: Path
    report_path: Path
    report: dict[str, Any]

    @property
    def failed(self) -> list[VideoResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def no_face_videos(self) -> list[VideoResult]:
        return [r for r in self.results if r.status != "failed" and r.frames_with_face == 0]


# ---------------------------------------------------------------- inputs

def video_dir(video_id: str) -> PurePosixPath:
    """A safe relative folder for a video's outputs: its id with '..' and leading '/' defused."""
    parts = [p for p in PurePosixPath(video_id.replace("\\", "/")).parts if p not in ("/", "", ".")]
    parts = ["__" if p == ".." else p for p in parts]
    if not parts:
        raise DataError(f"video id {video_id!r} names no file")
    return PurePosixPath(*parts)


def jobs_from_index(index: Index, where: str = "index") -> list[VideoJob]:
    """One job per video record of an index; DataError for image records or repeated videos."""
    images = [r.path for r in index.records if not is_video_path(r.path)]
    if images:
        raise DataError(f"{where}: {len(images)} records are not videos (e.g. {images[0]!r}); "
                        f"preprocess takes an index of video records ({', '.join(VIDEO_EXTENSIONS[:4])}, ...)")
    jobs, seen = [], {}
    for n, record in enumerate(index.records, start=1):
        video_id = record.video_id or record.path
        key = str(video_dir(video_id))
        if key in seen:
            raise DataError(f"{where}: records {seen[key]} and {n} name the same video {video_id!r}; "
                            "preprocess takes one record per video")
        seen[key] = n
        jobs.append(VideoJob(video_id=video_id, path=index.resolve(record), source=record))
    return jobs


def jobs_from_folder(root: Path, label: int, split: str = "test", method: str | None = None
                     ) -> tuple[IndexHeader, list[VideoJob]]:
    """A deepfake header and one job per video file under `root` (recursive, sorted), all one class."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_video_path(p.name))
    if not paths:
        raise DataError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)}) found")
    method = method or ("real" if label == 0 else "fake")
    header = IndexHeader(dataset=root.resolve().name or "folder", task="deepfake", root=str(root.resolve()),
                         classes=["real", "fake"], info={"source": "folder"})
    jobs = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        record = Record(path=rel, split=split, label=label, method=method, video_id=rel)
        jobs.append(VideoJob(video_id=rel, path=path, source=record))
    return header, jobs


# ---------------------------------------------------------------- one video

def _atomic_json(path: Path, data: Any) -> None:
    atomic_write_text(path, dumps_json(data, indent=1))


def _manifest_path(out: Path, video_id: str) -> Path:
    return out / "done" / f"{video_dir(video_id)}.json"


def _save(image, path: Path, image_format: str) -> None:
    from PIL import Image

    picture = Image.fromarray(image)
    if image_format == "jpg":
        picture.save(path, quality=95, subsampling=0)
    else:
        picture.save(path, compress_level=1)


_SOURCE_ONLY = ("path", "frame", "box", "landmarks")


def crop_record(source: Record, video_id: str, geometry: dict[str, Any]) -> Record:
    """A crop's index record: labels from the source record, place and geometry from the crop.

    Labels are never stored in the manifests, so a relabelled input index needs no redo.
    The source-frame box, landmarks and detector score go to `extra`.
    """
    extra = {**source.extra, **{k: v for k, v in geometry.items() if k not in _SOURCE_ONLY}}
    return Record(path=geometry["path"], split=source.split, label=source.label, attributes=source.attributes,
                  method=source.method, video_id=video_id, frame=geometry["frame"], box=geometry["box"],
                  landmarks=geometry["landmarks"], subgroup=source.subgroup, extra=extra)


def process_video(job: VideoJob, detector: FaceDetector, settings: Settings, out: Path) -> VideoResult:
    """Sample, detect, align and save the crops of one video, then write its manifest.

    A video that cannot be read gives status "failed" with the reason; nothing is written for it.
    """
    result = VideoResult(video_id=job.video_id, path=str(job.path), status="processed")
    try:
        frames = sample_frames(job.path, settings.frames)
    except LssatError as err:
        result.status, result.error = "failed", str(err)
        return result
    rel_dir = PurePosixPath("crops") / video_dir(job.video_id)
    ext = IMAGE_FORMATS[settings.image_format]
    src = job.source
    for frame_index, rgb in frames:
        result.frames += 1
        try:
            crops = crop_faces(rgb, detector, settings.margin, settings.size, settings.max_faces)
        except InputError as err:
            result.status, result.error = "failed", f"{job.path}: frame {frame_index}: {err}"
            return result
        if not crops:
            result.no_face_frames.append(frame_index)
            continue
        result.frames_with_face += 1
        (out / rel_dir).mkdir(parents=True, exist_ok=True)
        for k, crop in enumerate(crops):
            name = f"{frame_index:06d}" + (f"_{k}" if settings.max_faces > 1 else "") + ext
            _save(crop.image, out / rel_dir / name, settings.image_format)
            geometry = {"path": str(rel_dir / name), "frame": frame_index, "box": crop.box,
                        "landmarks": crop.landmarks, "source_box": [round(float(v), 2) for v in crop.face.box],
                        "score": round(float(crop.face.score), 4)}
            if crop.face.landmarks is not None:
                geometry["source_landmarks"] = [[round(float(x), 2), round(float(y), 2)]
                                                for x, y in crop.face.landmarks]
            if settings.max_faces > 1:
                geometry["face"] = k
            result.crop_geometry.append(geometry)
            result.records.append(crop_record(src, job.video_id, geometry))
            result.crops += 1
    manifest = {**result.summary(), "settings": settings.to_dict(), "crop_geometry": result.crop_geometry}
    manifest.pop("status")
    _atomic_json(_manifest_path(out, job.video_id), manifest)
    return result


def load_done(job: VideoJob, settings: Settings, out: Path) -> VideoResult | None:
    """The earlier result of a video, if its manifest matches `settings` and its crops exist."""
    path = _manifest_path(out, job.video_id)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("video_id") != job.video_id or data.get("settings") != settings.to_dict():
            return None
        geometry = list(data["crop_geometry"])
        records = [crop_record(job.source, job.video_id, g) for g in geometry]
        result = VideoResult(video_id=job.video_id, path=str(job.path), status="already_done",
                             frames=int(data["frames"]), frames_with_face=int(data["frames_with_face"]),
                             no_face_frames=[int(i) for i in data["no_face_frames"]], crops=len(records))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable manifest: redo the video
    if not all((out / r.path).is_file() for r in records):
        return None
    result.records, result.crop_geometry = records, geometry
    return result


# ---------------------------------------------------------------- the run

_WORKER: dict[str, Any] = {}


def _init_worker(settings: Settings) -> None:
    _WORKER["detector"] = make_detector(settings.detector, **settings.detector_options)
    _WORKER["settings"] = settings


def _work(job: VideoJob, out: str) -> VideoResult:
    return process_video(job, _WORKER["detector"], _WORKER["settings"], Path(out))


def _check_settings_file(out: Path, settings: Settings) -> None:
    path = out / "settings.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old != settings.to_dict():
            new = settings.to_dict()
            changed = [k for k in new if not isinstance(old, dict) or old.get(k) != new[k]]
            raise ConfigError(f"{out}: holds crops made with other settings ({', '.join(changed) or 'unreadable'}"
                              f" differ, see {path}); use another output folder or remove it")
    else:
        _atomic_json(path, settings.to_dict())


def run_preprocess(jobs: Sequence[VideoJob], header: IndexHeader, out: str | os.PathLike, settings: Settings,
                   workers: int = 1, progress: bool = True, source: str | None = None) -> RunSummary:
    """Process every video not done yet, then write OUT/index.jsonl and OUT/report.json.

    `header` is the input's header; the output index keeps its dataset, task and vocabulary.
    The detector is built before any work, so a missing optional extra fails at once.
    """
    from lssat.progress import progress_bar as tqdm  # whole lines every 30 s when stderr is a log file

    settings.validate()
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    if jobs and not any(job.path.is_file() for job in jobs):
        raise DataError(f"none of the {len(jobs)} videos exists (e.g. {jobs[0].path}); "
                        "is the data root right? (--data-root)")
    detector = make_detector(settings.detector, **settings.detector_options)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings_file(out, settings)

    results: list[VideoResult | None] = [load_done(job, settings, out) for job in jobs]
    pending = [i for i, r in enumerate(results) if r is None]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), unit="video", desc="preprocess",
               disable=not progress, dynamic_ncols=True)
    failed = no_face = 0

    def finished(i: int, result: VideoResult) -> None:
        nonlocal failed, no_face
        results[i] = result
        failed += result.status == "failed"
        no_face += result.frames_without_face
        bar.set_postfix(failed=failed, faceless_frames=no_face, refresh=False)
        bar.update()

    try:
        if workers == 1 or len(pending) <= 1:
            for i in pending:
                finished(i, process_video(jobs[i], detector, settings, out))
        else:
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(settings,)) as pool:
                futures = {pool.submit(_work, jobs[i], str(out)): i for i in pending}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
    finally:
        bar.close()

    done = [r for r in results if r is not None]
    records = [rec for r in done for rec in r.records]
    info = dict(header.info)
    info["records"] = "frames"  # the input may say "videos"; these are face crops of frames
    info["preprocess"] = {**settings.to_dict(), "source": source}
    out_header = IndexHeader(dataset=header.dataset, task=header.task, classes=header.classes,
                             attribute_names=header.attribute_names, subgroups=header.subgroups, info=info)
    index_path = out / "index.jsonl"
    write_index(index_path, out_header, records, data_root=out)
    report = build_report(done, settings, source)
    report_path = out / "report.json"
    _atomic_json(report_path, report)
    return RunSummary(out=out, results=done, index_path=index_path, report_path=report_path, report=report)


def build_report(results: Sequence[VideoResult], settings: Settings, source: str | None) -> dict[str, Any]:
    """Totals, per-video counts, videos without any face, and failures."""
    ok = [r for r in results if r.status != "failed"]
    totals = {
        "videos": len(results),
        "processed": sum(r.status == "processed" for r in results),
        "already_done": sum(r.status == "already_done" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "frames": sum(r.frames for r in ok),
        "frames_with_face": sum(r.frames_with_face for r in ok),
        "frames_without_face": sum(r.frames_without_face for r in ok),
        "crops": sum(r.crops for r in ok),
        "videos_without_face": sum(r.frames_with_face == 0 for r in ok),
    }
    return {
        "source": source,
        "settings": settings.to_dict(),
        "totals": totals,
        "no_face_videos": [r.video_id for r in ok if r.frames_with_face == 0],
        "failed": [{"video_id": r.video_id, "path": r.path, "error": r.error} for r in results
                   if r.status == "failed"],
        "videos": [r.summary() for r in results],
    }
