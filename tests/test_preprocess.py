"""Video and face preprocessing: frame sampling, alignment, the resumable pipeline, the command."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lssat.cli import main
from lssat.data.index import IndexHeader, Record, read_index, write_index
from lssat.errors import ConfigError, DataError, InputError, MissingDependencyError
from lssat.preprocess import faces as faces_mod
from lssat.preprocess.align import TEMPLATES, align_face, crop_faces, face_matrix, similarity_matrix, warp
from lssat.preprocess.faces import CenterDetector, Face, make_detector
from lssat.preprocess.frames import count_frames, sample_frames, sample_indices, write_video
from lssat.preprocess.pipeline import Settings, jobs_from_index, run_preprocess


def _have_dlib() -> bool:
    try:
        import dlib  # noqa: F401

        faces_mod.five_point_model_path()
    except (ImportError, MissingDependencyError):
        return False
    return True


HAVE_DLIB = _have_dlib()
needs_dlib = pytest.mark.skipif(not HAVE_DLIB, reason="dlib face detector not installed: pip install 'lssat[faces]'")

FACE_FRAMES = 8  # face.mp4: frames 0..7 show the astronaut, 8..11 noise
N_FRAMES = 12
SAMPLE = 6


def _astronaut(side: int) -> np.ndarray:
    import skimage.data

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """face.mp4 (astronaut moving 1 px per frame, then noise), sub/noface.mp4, broken.mp4, index.jsonl."""
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    astro = _astronaut(200)
    frames = []
    for i in range(N_FRAMES):
        frame = np.full((224, 224, 3), 90, np.uint8)
        if i < FACE_FRAMES:
            frame[8 + i:208 + i, 10 + i:210 + i] = astro
        else:
            frame[:] = rng.integers(0, 256, frame.shape, dtype=np.uint8)
        frames.append(frame)
    write_video(root / "face.mp4", frames)
    ramp = np.linspace(0, 255, 224).astype(np.uint8)
    write_video(root / "sub" / "noface.mp4", [np.stack([np.tile(ramp, (224, 1))] * 3, -1)] * 10)
    (root / "broken.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    header = IndexHeader(dataset="toy", task="deepfake", classes=["real", "fake"])
    records = [
        Record(path="face.mp4", split="train", label=1, method="Deepfakes", video_id="face.mp4",
               extra={"compression": "c23"}),
        Record(path="sub/noface.mp4", split="val", label=0, method="real", video_id="sub/noface.mp4"),
        Record(path="broken.mp4", split="test", label=1, method="FaceSwap", video_id="broken.mp4"),
    ]
    write_index(root / "index.jsonl", header, records, data_root=root)
    return root


# ---------------------------------------------------------------- frames

def test_sample_indices_even_and_exact():
    assert sample_indices(12, 6) == [0, 2, 4, 7, 9, 11]
    assert sample_indices(10, 32) == list(range(10))
    assert sample_indices(10, 0) == list(range(10))
    assert sample_indices(5, 1) == [0]
    assert sample_indices(0, 4) == []
    idx = sample_indices(301, 32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 300
    gaps = np.diff(idx)
    assert gaps.min() >= 9 and gaps.max() - gaps.min() <= 1


def test_sample_frames_returns_the_right_frames(tmp_path):
    # Frame i is a flat grey of level 20 i: the decoded level tells which frame came back.
    path = write_video(tmp_path / "levels.mp4", [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(12)])
    assert count_frames(path) == 12
    frames = sample_frames(path, 4)
    assert [i for i, _ in frames] == sample_indices(12, 4) == [0, 4, 7, 11]
    for i, rgb in frames:
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
        assert abs(float(rgb.mean()) - 20 * i) < 3
    assert len(sample_frames(path, 0)) == 12


def test_sample_frames_without_or_with_a_wrong_container_count(tmp_path, monkeypatch):
    from lssat.preprocess import frames as frames_mod

    levels = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(12)]
    mkv = write_video(tmp_path / "levels.mkv", levels)  # Matroska stores no frame count
    assert count_frames(mkv) == 12
    assert [i for i, _ in sample_frames(mkv, 4)] == [0, 4, 7, 11]
    # A header that claims 20 frames: sampling falls back to the 12 that decode, evenly spaced.
    monkeypatch.setattr(frames_mod, "count_frames", lambda path: 20)
    frames = sample_frames(mkv, 4)
    assert [i for i, _ in frames] == [0, 4, 7, 11]
    assert all(abs(float(rgb.mean()) - 20 * i) < 3 for i, rgb in frames)


def test_sample_frames_errors_name_the_file(tmp_path, videos):
    with pytest.raises(DataError, match="broken.mp4: cannot read video"):
        sample_frames(videos / "broken.mp4", 4)
    with pytest.raises(DataError, match="missing.mp4: video file not found"):
        sample_frames(tmp_path / "missing.mp4", 4)


# ---------------------------------------------------------------- alignment

def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty], [0, 0, 1.0]])


def test_landmarks_land_on_the_template():
    size, margin = 128, 1.3
    template = TEMPLATES["dlib5"]
    # Landmarks = the template placed in a frame by a known similarity (rotated 25 degrees).
    placed = _similarity(25, 90, 140, 60)
    landmarks = template @ placed[:2, :2].T + placed[:2, 2]
    face = Face(box=(100, 50, 200, 150), score=1.0, landmarks=landmarks, scheme="dlib5")
    crop = align_face(np.zeros((300, 300, 3), np.uint8), face, margin, size)
    expected = ((template - 0.5) / margin + 0.5) * size - 0.5
    np.testing.assert_allclose(np.array(crop.landmarks), expected, atol=0.01)
    assert crop.image.shape == (size, size, 3) and crop.image.dtype == np.uint8
    # A pure similarity: rotation by -25 degrees, uniform scale.
    m = crop.matrix[:2, :2]
    assert math.degrees(math.atan2(m[1, 0], m[0, 0])) == pytest.approx(-25, abs=1e-6)
    assert m[0, 0] == pytest.approx(m[1, 1]) and m[0, 1] == pytest.approx(-m[1, 0])


def test_similarity_fit_matches_scikit_image():
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(3)
    for _ in range(5):
        src = rng.uniform(0, 300, (5, 2))
        dst = src @ _similarity(rng.uniform(-90, 90), rng.uniform(0.2, 4), 0, 0)[:2, :2].T + rng.normal(0, 5, (5, 2))
        ref = SimilarityTransform.from_estimate(src, dst).params
        np.testing.assert_allclose(similarity_matrix(src, dst), ref, atol=1e-9)
    with pytest.raises(InputError, match="degenerate"):
        similarity_matrix(np.ones((5, 2)), rng.uniform(0, 1, (5, 2)))


def test_warp_puts_a_source_pixel_where_the_matrix_says():
    """Half-pixel conventions: the blob's centroid sits exactly where the matrix maps the pixel."""
    image = np.zeros((200, 200, 3), np.uint8)
    image[117, 63] = 255  # (x, y) = (63, 117)
    for angle, scale in ((-30, 1.7), (40, 3.3)):
        matrix = _similarity(angle, scale, 0, 0)
        matrix[:2, 2] = [41.3, 52.8] - matrix[:2, :2] @ [63, 117]  # lands at (41.3, 52.8)
        out = warp(image, matrix, 96)[..., 0].astype(float)
        ys, xs = np.indices(out.shape)
        weights = out / out.sum()
        assert (xs * weights).sum() == pytest.approx(41.3, abs=0.05)
        assert (ys * weights).sum() == pytest.approx(52.8, abs=0.05)


def test_shrinking_warp_keeps_position_and_mass():
    """The box-reduce path: a block's centroid and total brightness survive a 2-8x shrink."""
    image = np.zeros((400, 400, 3), np.uint8)
    image[114:122, 60:68] = 255  # an 8 x 8 block centred on (63.5, 117.5)
    for angle, scale in ((15, 0.3), (0, 0.25), (-50, 0.45), (20, 0.12)):
        matrix = _similarity(angle, scale, 0, 0)
        matrix[:2, 2] = [21.3, 17.8] - matrix[:2, :2] @ [63.5, 117.5]
        out = warp(image, matrix, 48)[..., 0].astype(float)
        ys, xs = np.indices(out.shape)
        weights = out / out.sum()
        assert (xs * weights).sum() == pytest.approx(21.3, abs=0.06)
        assert (ys * weights).sum() == pytest.approx(17.8, abs=0.06)
        assert out.sum() / 255 == pytest.approx(64 * scale**2, rel=0.05)


def test_box_crop_with_margin_one_is_the_central_square_exactly():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    crops = crop_faces(image, CenterDetector(), margin=1.0, size=48)
    assert len(crops) == 1
    np.testing.assert_array_equal(crops[0].image, image[:, 8:56])
    assert crops[0].box == [0.0, 0.0, 47.0, 47.0] and crops[0].landmarks is None


def test_shrinking_crop_is_not_aliased():
    checker = ((np.indices((400, 400)).sum(0) % 2) * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    face = Face(box=(100, 100, 299, 299), score=1.0)
    out = align_face(image, face, margin=1.0, size=50).image  # 4x smaller
    assert abs(float(out.mean()) - 127.5) < 2 and float(out.std()) < 2


def test_alignment_undoes_rotation():
    """The crop of a rotated frame matches the crop of the upright frame."""
    astro = _astronaut(256)
    template = TEMPLATES["dlib5"]
    placed = _similarity(0, 100, 78, 40)
    landmarks = template @ placed[:2, :2].T + placed[:2, 2]
    upright = align_face(astro, Face((60, 30, 200, 170), 1.0, landmarks, "dlib5"), 1.3, 96).image
    angle, centre = 20.0, np.array([127.5, 127.5])  # PIL rotates counter-clockwise about the centre
    rotated = np.asarray(Image.fromarray(astro).rotate(angle, resample=Image.Resampling.BILINEAR))
    a = math.radians(angle)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    moved = (landmarks - centre) @ rot.T + centre
    turned = align_face(rotated, Face((60, 30, 200, 170), 1.0, moved, "dlib5"), 1.3, 96).image
    inner = (slice(12, 84), slice(12, 84))
    diff = np.abs(turned[inner].astype(int) - upright[inner].astype(int)).mean()
    unaligned = np.abs(rotated[40:136, 78:174][inner].astype(int) - astro[40:136, 78:174][inner].astype(int)).mean()
    assert diff < 6 and unaligned > 4 * diff


def test_bad_settings_and_inputs_raise_clear_errors():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="margin"):
        crop_faces(image, CenterDetector(), margin=0, size=32)
    with pytest.raises(ConfigError, match="size"):
        crop_faces(image, CenterDetector(), margin=1.3, size=4)
    with pytest.raises(InputError, match="RGB uint8"):
        crop_faces(image.astype(np.float32), CenterDetector())
    with pytest.raises(ConfigError, match="unknown face detector 'mtcnn'"):
        make_detector("mtcnn")
    face = Face((0, 0, 10, 10), 1.0, np.zeros((3, 2)), "dlib5")
    with pytest.raises(InputError, match="5 points"):
        face_matrix(face, 1.3, 32)


# ---------------------------------------------------------------- missing extra

def test_without_dlib_the_command_says_what_to_install(monkeypatch, videos, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'lssat\[faces\]'"):
        make_detector("dlib")
    status = main(["preprocess", str(videos / "index.jsonl"), "-o", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and "pip install 'lssat[faces]'" in err
    assert not (tmp_path / "out").exists()


def test_missing_landmark_model_package_is_named(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(faces_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="face-recognition-models"):
        faces_mod.five_point_model_path()


# ---------------------------------------------------------------- pipeline with the center detector

def test_pipeline_keeps_labels_and_counts_with_center_detector(videos, tmp_path):
    index = read_index(videos / "index.jsonl")
    jobs = [j for j in jobs_from_index(index) if j.video_id != "broken.mp4"]
    settings = Settings(frames=4, size=64, margin=1.0, detector="center")
    summary = run_preprocess(jobs, index.header, tmp_path / "out", settings, progress=False)
    out = read_index(summary.index_path)
    assert out.header.task == "deepfake" and out.header.dataset == "toy"
    assert out.header.info["preprocess"]["frames"] == 4 and out.header.info["records"] == "frames"
    assert len(out.records) == 8  # the centre "face" is found in every frame
    by_video = {}
    for r in out.records:
        by_video.setdefault(r.video_id, []).append(r)
        assert Image.open(out.resolve(r)).size == (64, 64)
    assert [r.frame for r in by_video["face.mp4"]] == sample_indices(12, 4)
    assert [r.frame for r in by_video["sub/noface.mp4"]] == sample_indices(10, 4)
    first = by_video["face.mp4"][0]
    assert (first.split, first.label, first.method) == ("train", 1, "Deepfakes")
    assert first.extra["compression"] == "c23"  # the source record's extras survive
    assert by_video["sub/noface.mp4"][0].label == 0

    # A rerun on a relabelled index redoes nothing but takes the new labels.
    for job in jobs:
        job.source.split = "val"
    again = run_preprocess(jobs, index.header, tmp_path / "out", settings, progress=False)
    assert {r.status for r in again.results} == {"already_done"}
    relabelled = read_index(again.index_path).records
    assert [r.split for r in relabelled] == ["val"] * 8
    assert [r.box for r in relabelled] == [r.box for r in out.records]


def test_parallel_workers_give_the_same_index(videos, tmp_path):
    index = read_index(videos / "index.jsonl")
    settings = Settings(frames=3, size=32, margin=1.0, detector="center")
    one = run_preprocess(jobs_from_index(index), index.header, tmp_path / "a", settings, progress=False)
    two = run_preprocess(jobs_from_index(index), index.header, tmp_path / "b", settings, workers=2, progress=False)
    assert one.index_path.read_text().splitlines()[1:] == two.index_path.read_text().splitlines()[1:]
    assert [r.video_id for r in two.failed] == ["broken.mp4"]


class TwoBoxes:
    """A plug-in detector: two boxes, no landmarks, the smaller one first."""

    name = "two-boxes"

    def detect(self, rgb):
        return [Face(box=(0, 0, 15, 15), score=0.5), Face(box=(20, 20, 59, 59), score=0.9)]


def test_a_plugged_in_detector_and_several_faces_per_frame(videos, tmp_path, monkeypatch):
    monkeypatch.setitem(faces_mod.DETECTORS, "two-boxes", TwoBoxes)
    index = read_index(videos / "index.jsonl")
    jobs = [j for j in jobs_from_index(index) if j.video_id == "face.mp4"]
    settings = Settings(frames=2, size=40, margin=1.0, detector="two-boxes", max_faces=2)
    summary = run_preprocess(jobs, index.header, tmp_path / "out", settings, progress=False)
    records = read_index(summary.index_path).records
    assert [(Path(r.path).name, r.extra["face"], r.extra["source_box"]) for r in records] == [
        ("000000_0.png", 0, [20, 20, 59, 59]), ("000000_1.png", 1, [0, 0, 15, 15]),
        ("000011_0.png", 0, [20, 20, 59, 59]), ("000011_1.png", 1, [0, 0, 15, 15])]
    assert records[0].box == [0.0, 0.0, 39.0, 39.0]  # margin 1: the box fills the crop
    rgb = sample_frames(videos / "face.mp4", 2)[0][1]
    crop = np.asarray(Image.open(summary.out / records[0].path)).astype(int)
    assert np.abs(crop - rgb[20:60, 20:60].astype(int)).max() == 0


def test_index_of_images_or_of_absent_videos_is_refused(videos, tmp_path, capsys):
    header = IndexHeader(dataset="x", task="deepfake", classes=["real", "fake"])
    write_index(tmp_path / "i.jsonl", header, [Record(path="a.jpg", split="train", label=0)], data_root=tmp_path)
    status = main(["preprocess", str(tmp_path / "i.jsonl"), "-o", str(tmp_path / "o"), "--detector", "center"])
    assert status == 2 and "1 records are not videos (e.g. 'a.jpg')" in capsys.readouterr().err
    status = main(["preprocess", str(videos / "index.jsonl"), "-o", str(tmp_path / "o"), "--detector", "center",
                   "--data-root", str(tmp_path / "elsewhere")])
    assert status == 2 and "none of the 3 videos exists" in capsys.readouterr().err


def test_folder_input_needs_a_label(videos, tmp_path, capsys):
    status = main(["preprocess", str(videos), "-o", str(tmp_path / "o"), "--detector", "center"])
    assert status == 2 and "--label real|fake" in capsys.readouterr().err
    status = main(["preprocess", str(videos), "-o", str(tmp_path / "o"), "--detector", "center",
                   "--label", "real", "--frames", "2", "--size", "32", "--no-progress"])
    assert status == 1  # broken.mp4 could not be read
    out = read_index(tmp_path / "o" / "index.jsonl")
    assert {(r.video_id, r.label, r.method, r.split) for r in out.records} == {
        ("face.mp4", 0, "real", "test"), ("sub/noface.mp4", 0, "real", "test")}


# ---------------------------------------------------------------- with dlib

@needs_dlib
def test_dlib_finds_the_astronaut_and_matches_dlib_face_chip():
    import dlib

    image = _astronaut(512)
    detector = make_detector("dlib", upsample=0)
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert abs((x0 + x1) / 2 - 220) < 12 and abs((y0 + y1) / 2 - 121) < 12
    assert face.landmarks.shape == (5, 2) and face.scheme == "dlib5"
    assert np.all((face.landmarks >= [x0, y0]) & (face.landmarks <= [x1, y1]))
    # Parity: our alignment is dlib's get_face_chip with padding = (margin - 1) / 2.
    shape = dlib.full_object_detection(dlib.rectangle(*[int(round(v)) for v in face.box]),
                                       [dlib.point(int(x), int(y)) for x, y in face.landmarks])
    for margin, size in ((1.3, 256), (1.5, 150)):
        ours = align_face(image, face, margin, size).image.astype(int)
        ref = dlib.get_face_chip(image, shape, size=size, padding=(margin - 1) / 2).astype(int)
        assert np.abs(ours - ref).mean() < 3.5
        assert abs(float((ours - ref).mean())) < 1.5  # PIL rounds down: about half a level darker


@needs_dlib
def test_preprocess_command_counts_reports_and_resumes(videos, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["preprocess", str(videos / "index.jsonl"), "-o", str(out), "--frames", str(SAMPLE), "--no-progress"]
    assert main(argv) == 1  # broken.mp4 is unreadable; the others are done
    printed = capsys.readouterr().out
    assert "broken.mp4: cannot read video" in printed and "no face in any frame (1): sub/noface.mp4" in printed

    sampled = sample_indices(N_FRAMES, SAMPLE)
    with_face = [i for i in sampled if i < FACE_FRAMES]
    report = json.loads((out / "report.json").read_text())
    videos_ = {v["video_id"]: v for v in report["videos"]}
    assert videos_["face.mp4"]["frames_with_face"] == len(with_face) == 4
    assert videos_["face.mp4"]["no_face_frames"] == [i for i in sampled if i >= FACE_FRAMES]
    assert videos_["sub/noface.mp4"]["frames_without_face"] == len(sample_indices(10, SAMPLE))
    assert report["no_face_videos"] == ["sub/noface.mp4"]
    assert [(f["video_id"], Path(f["path"]).name) for f in report["failed"]] == [("broken.mp4", "broken.mp4")]
    assert report["totals"]["crops"] == len(with_face)

    index = read_index(out / "index.jsonl")
    assert len(index.records) == len(with_face)
    assert [r.frame for r in index.records] == with_face
    expected = ((TEMPLATES["dlib5"] - 0.5) / 1.3 + 0.5) * 256 - 0.5
    for r in index.records:
        assert (r.video_id, r.split, r.label, r.method) == ("face.mp4", "train", 1, "Deepfakes")
        assert np.asarray(Image.open(index.resolve(r))).shape == (256, 256, 3)
        # The fit is least squares over 5 points, so each lands near, not on, its template spot.
        assert np.abs(np.array(r.landmarks) - expected).max() < 12
        assert len(r.box) == 4 and len(r.extra["source_landmarks"]) == 5

    # Second run: nothing redone, crops untouched.
    crops = sorted((out / "crops").rglob("*.png"))
    stamps = [p.stat().st_mtime_ns for p in crops]
    assert main(argv) == 1
    totals = json.loads((out / "report.json").read_text())["totals"]
    assert (totals["processed"], totals["already_done"], totals["failed"]) == (0, 2, 1)
    assert [p.stat().st_mtime_ns for p in crops] == stamps
    assert read_index(out / "index.jsonl").records == index.records

    # Remove one video's outputs: only it is redone.
    for p in (out / "crops" / "face.mp4").iterdir():
        p.unlink()
    assert main(argv) == 1
    report = json.loads((out / "report.json").read_text())
    status = {v["video_id"]: v["status"] for v in report["videos"]}
    assert status == {"face.mp4": "processed", "sub/noface.mp4": "already_done", "broken.mp4": "failed"}
    assert read_index(out / "index.jsonl").records == index.records

    # Other settings in the same folder are refused, naming what differs.
    capsys.readouterr()
    assert main(argv[:-1] + ["--size", "128", "--no-progress"]) == 2
    assert "size" in capsys.readouterr().err
