"""The built-in synthetic face benchmark: determinism, labels, visibility, locality, files."""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pytest
import torch

from lssat.data.formats import get_format
from lssat.data.index import read_index, write_index
from lssat.data.synthetic import (ATTRIBUTE_NAMES, EXPRESSIONS, METHODS, SyntheticFaces, generate,
                                  make_header, render_items, write_clip_video, write_synthetic)
from lssat.data.synthetic.camera import decode_jpeg, expose
from lssat.data.synthetic.deepfakes import manipulate
from lssat.data.synthetic.faces import draw_uniforms, sample_faces
from lssat.data.synthetic.generator import SyntheticSpec, is_dark
from lssat.data.synthetic.render import render
from lssat.errors import ConfigError, InputError

SIZE = 48
TASKS = ("expression", "attributes", "deepfake")


def _faces(n: int, seed: int = 7, **kwargs) -> dict:
    u = draw_uniforms([(seed, i) for i in range(n)])
    return sample_faces(u, np.zeros(n, bool), **kwargs)


def _face_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Mean absolute difference over the image, and the number of pixels changed by > 20 levels."""
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).max(axis=-3)  # planar: max over channels
    return float(d.mean()), int((d > 20).sum())


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_data_other_seed_other_data(task):
    a = generate(task, 10, size=SIZE, seed=3)
    b = generate(task, 10, size=SIZE, seed=3)
    c = generate(task, 10, size=SIZE, seed=4)
    assert a.images.shape == (10, SIZE, SIZE, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.records == b.records and a.jpeg == b.jpeg
    assert np.abs(a.images.astype(int) - c.images.astype(int)).mean() > 10


@pytest.mark.parametrize("task", TASKS)
def test_an_item_does_not_depend_on_its_batch(task):
    whole = generate(task, 12, size=SIZE, seed=1, batch_size=5)
    spec = SyntheticSpec(task, SIZE, 1, "train")
    picked = render_items(spec, [11, 2, 7])
    for j, i in enumerate([11, 2, 7]):
        assert np.array_equal(picked.images[j], whole.images[i])
        assert picked.records[j] == whole.records[i]
    tail = generate(task, 4, size=SIZE, seed=1, start=8)
    assert np.array_equal(tail.images, whole.images[8:])


def test_splits_share_no_image():
    digests = {}
    for split in ("train", "val", "test"):
        g = generate("expression", 40, size=32, seed=0, split=split)
        digests[split] = {hashlib.sha1(img.tobytes()).hexdigest() for img in g.images}
        assert len(digests[split]) == 40
    assert not digests["train"] & digests["val"] and not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]
    first = [generate("attributes", 1, size=32, split=s).images[0].astype(int) for s in ("train", "test")]
    assert np.abs(first[0] - first[1]).mean() > 10


def test_expression_labels_follow_affectnet_codes():
    assert EXPRESSIONS == ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
    g = generate("expression", 160, size=32, seed=0)
    labels = [r.label for r in g.records]
    assert all(isinstance(x, int) for x in labels)
    counts = np.bincount(labels, minlength=8)
    assert len(counts) == 8 and counts.min() >= 8  # all 8 classes, roughly uniform
    assert all(r.attributes is None and r.method is None for r in g.records)
    intensity = np.array([r.extra["intensity"] for r in g.records])
    assert np.all(intensity[np.array(labels) == 0] == 0)
    assert intensity[np.array(labels) > 0].min() >= 0.35 and intensity.max() <= 1.0
    assert make_header(SyntheticSpec("expression")).classes == list(EXPRESSIONS)


def test_attribute_labels_are_ten_bits_with_correlations():
    assert len(ATTRIBUTE_NAMES) == 10
    p = _faces(4000)
    a = p["attributes"]
    assert a.shape == (4000, 10) and set(np.unique(a)) <= {0, 1}
    col = {n: a[:, i].astype(bool) for i, n in enumerate(ATTRIBUTE_NAMES)}
    for name, share in ((n, col[n].mean()) for n in ATTRIBUTE_NAMES):
        assert 0.04 < share < 0.6, (name, share)
    both = (col["Beard"] & col["Heavy_Makeup"]).mean()
    assert both < 0.2 * col["Beard"].mean() * col["Heavy_Makeup"].mean()  # far below independence
    assert col["Mustache"][col["Beard"]].mean() > 3 * col["Mustache"][~col["Beard"]].mean()
    assert np.array_equal(col["Smiling"], p["expression"] == 1)
    g = generate("attributes", 8, size=32)
    assert all(len(r.attributes) == 10 and r.label is None for r in g.records)


def test_deepfake_clips_pairs_and_video_ids():
    g = generate("deepfake", 70, size=32, clip_len=4)
    recs = g.records
    assert [r.frame for r in recs[:8]] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert all(r.label == (r.method != "real") for r in recs)
    assert {r.method for r in recs} == {"real", *METHODS}
    videos: dict[str, list[int]] = {}
    for r in recs:
        videos.setdefault(r.video_id, []).append(r.frame)
        assert r.video_id.endswith(".mp4") and r.video_id.startswith("deepfake/videos/train/")
    assert len(videos) == 18 and all(f == [0, 1, 2, 3] for f in list(videos.values())[:-1])
    assert videos[recs[-1].video_id] == [0, 1]  # the last clip is cut at n
    same_name = [v for v in videos if v.endswith("/0001.mp4")]
    assert len(same_name) == 2 and len(set(same_name)) == 2  # real and fake of one source differ by path
    assert make_header(SyntheticSpec("deepfake")).classes == ["real", "fake"]


def test_each_attribute_visibly_changes_the_face():
    base = _faces(6, seed=11, difficulty="hard")["attributes"]
    for k, name in enumerate(ATTRIBUTE_NAMES):
        on, off = base.copy(), base.copy()
        on[:, k], off[:, k] = 1, 0
        a = render(_faces(6, seed=11, attributes=on, difficulty="hard"), 64)
        b = render(_faces(6, seed=11, attributes=off, difficulty="hard"), 64)
        for i in range(6):
            mean, changed = _face_diff(a[i], b[i])
            assert mean > 0.1 and changed >= 10, (name, i, mean, changed)


def test_attributes_stay_visible_at_the_default_difficulty():
    """Exaggerated default expressions can cover an attribute (a big smile over a moustache): rare."""
    n = 60
    base = _faces(n, seed=11)["attributes"]
    for k, name in enumerate(ATTRIBUTE_NAMES):
        on, off = base.copy(), base.copy()
        on[:, k], off[:, k] = 1, 0
        a, b = render(_faces(n, seed=11, attributes=on), 64), render(_faces(n, seed=11, attributes=off), 64)
        hidden = sum(_face_diff(a[i], b[i])[1] < 10 for i in range(n))
        assert hidden <= 0.1 * n, (name, hidden)


def test_detail_knob_strengthens_only_the_small_attributes():
    """`detail` darkens make-up, wrinkles, the hat's band and tints lenses; a face without those
    attributes renders the same at every detail, a face with them changes in their regions."""
    n = 8
    small = [ATTRIBUTE_NAMES.index(a) for a in ("Bangs", "Eyeglasses", "Heavy_Makeup", "Wearing_Hat", "Wrinkles")]
    forced = np.full((n, len(ATTRIBUTE_NAMES)), -1)
    forced[:, small] = 0
    plain = {k: render(_faces(n, seed=3, attributes=forced, difficulty={"preset": "hard", "detail": k}), 48)
             for k in (1.0, 4.0)}
    np.testing.assert_array_equal(plain[1.0], plain[4.0])
    forced[:, small] = 1
    marked = {k: render(_faces(n, seed=3, attributes=forced, difficulty={"preset": "hard", "detail": k}), 48)
              for k in (1.0, 4.0)}
    for i in range(n):
        assert _face_diff(marked[1.0][i], marked[4.0][i])[1] >= 10, i


def test_each_expression_visibly_changes_the_face():
    n = 6
    neutral = render(_faces(n, seed=5, expression=np.zeros(n, int)), 64)
    for c in range(1, 8):
        other = render(_faces(n, seed=5, expression=np.full(n, c), intensity=np.full(n, 0.7)), 64)
        for i in range(n):
            mean, changed = _face_diff(other[i], neutral[i])
            assert changed >= 6, (EXPRESSIONS[c], i, changed)


def test_manipulations_change_the_face_not_the_rest():
    size, clip_len = 64, 2
    g = generate("deepfake", 8 * clip_len * 2, size=size, clip_len=clip_len, seed=2)
    by_path = {r.path: img.astype(np.float32) for r, img in zip(g.records, g.images)}
    ring = np.ones((size, size), bool)
    ring[6:-6, 6:-6] = False
    centre = np.zeros((size, size), bool)
    centre[16:-10, 16:-16] = True
    seen = set()
    for r in g.records:
        if r.method == "real":
            continue
        real = by_path[r.path.replace(f"fake/{r.method}", "real")]
        diff = np.abs(by_path[r.path] - real).max(axis=-1)
        seen.add(r.method)
        assert diff[centre].mean() > 3 * diff[ring].mean() + 1, r.path
        assert (diff[ring] > 12).mean() < 0.03, r.path  # JPEG spreads a change over its 16 px blocks
        assert (diff > 12).sum() >= 20, r.path
    assert seen == set(METHODS)


def test_manipulations_leave_pixels_outside_their_mask_untouched():
    n, size = 4, 64
    p = _faces(n, seed=3)
    p["frame"] = np.zeros(n, np.int64)
    donor = _faces(n, seed=4)
    real = expose(render(p, size), p)
    fake = manipulate(real.copy(), p, donor, np.arange(4), draw_uniforms([(9, i) for i in range(n)], 12))
    changed = np.abs(fake - real).max(axis=1) > 0  # (n, H, W)
    assert not changed[:, :6].any() and not changed[:, :, :6].any() and not changed[:, :, -6:].any()
    for m, name in enumerate(METHODS):
        assert 0.01 < changed[m].mean() < 0.35, name
    mouth_only = changed[[1, 3]]  # Face2Face and NeuralTextures touch the lower face only
    assert not mouth_only[:, : size // 2].any()


def test_colour_statistics_do_not_separate_real_from_fake():
    g = generate("deepfake", 256, size=32, seed=5)
    x = g.images.reshape(len(g.images), -1, 3).astype(np.float32)
    feats = np.concatenate([x.mean(1), x.std(1)], 1)
    y = np.array([r.label for r in g.records])
    # the best single threshold on any colour statistic stays far from separating the classes
    for j in range(feats.shape[1]):
        ranks = np.argsort(np.argsort(feats[:, j]))  # rank-sum (Mann-Whitney) AUC of this statistic
        auc = (ranks[y == 1].mean() - (y.sum() - 1) / 2) / (len(y) - y.sum())
        assert 0.3 < auc < 0.7, (j, auc)


def test_subgroup_imbalance_is_honoured():
    for fraction in (0.1, 0.25, 0.5):
        spec = SyntheticSpec("attributes", dark_fraction=fraction)
        dark = is_dark(spec, np.arange(5000))
        assert abs(dark.sum() - 5000 * fraction) <= 2
        assert abs(is_dark(spec, np.arange(100)).sum() - 100 * fraction) <= 2
    g = generate("attributes", 60, size=32, dark_fraction=0.2)
    groups = [r.subgroup["skin_tone"] for r in g.records]
    assert set(groups) <= {"light", "dark"} and abs(groups.count("dark") - 12) <= 2
    centre = g.images[:, 14:20, 12:20].reshape(60, -1).mean(1)
    is_d = np.array(groups) == "dark"
    assert centre[is_d].mean() < centre[~is_d].mean() - 30
    assert make_header(SyntheticSpec("attributes")).subgroups == ["skin_tone"]


def test_write_synthetic_index_validates_and_files_match(tmp_path):
    root = tmp_path / "data"
    result = write_synthetic(root, "deepfake", {"train": 12, "val": 5, "test": 0}, size=32, clip_len=4,
                             videos=True, index_path=tmp_path / "index.jsonl", progress=False)
    index = read_index(tmp_path / "index.jsonl")
    assert index.header.dataset == "synthetic" and index.header.task == "deepfake"
    assert len(index.split("train")) == 12 and len(index.split("val")) == 5 and not index.split("test")
    assert [r.path for r in index.records] == [r.path for r in result.records]
    ref = generate("deepfake", 12, size=32, clip_len=4)
    for r, img in zip(index.split("train"), ref.images):
        assert np.array_equal(decode_jpeg(index.resolve(r).read_bytes()), img)
    videos = {r.video_id for r in index.records}
    assert len(videos) == 5 and all((root / v).is_file() for v in videos)
    only = write_synthetic(tmp_path / "v", "deepfake", {"test": 10}, size=32, clip_len=4, video_records=True,
                           progress=False)
    assert [(r.path, r.frame, r.method) for r in only.records] == [
        ("deepfake/videos/test/real/0000.mp4", None, "real"),
        ("deepfake/videos/test/fake/Deepfakes/0000.mp4", None, "Deepfakes"),
        ("deepfake/videos/test/real/0001.mp4", None, "real")]
    assert all((tmp_path / "v" / r.path).is_file() for r in only.records)
    assert not list((tmp_path / "v").rglob("*.jpg"))


@pytest.mark.parametrize("task", ["expression", "attributes"])
def test_importer_builds_a_valid_index(tmp_path, task):
    fmt = get_format("synthetic")
    parser = argparse.ArgumentParser()
    fmt.add_arguments(parser)
    options = parser.parse_args(["--task", task, "--train", "6", "--val", "3", "--test", "2", "--size", "32",
                                 "--subgroup-imbalance", "0.5"])
    options.progress = False
    result = fmt.build_index(tmp_path / "root", options)
    n = write_index(tmp_path / "i.jsonl", result.header, result.records, data_root=tmp_path / "root")
    index = read_index(tmp_path / "i.jsonl")
    assert n == 11
    assert {s: len(index.split(s)) for s in ("train", "val", "test")} == {"train": 6, "val": 3, "test": 2}
    assert all(index.resolve(r).is_file() for r in index.records) and not result.skipped
    with pytest.raises(ConfigError, match="--task"):
        fmt.build_index(tmp_path, parser.parse_args([]))


def test_write_clip_video_roundtrip(tmp_path):
    import av

    frames = generate("deepfake", 6, size=64, clip_len=6).images
    codec = write_clip_video(tmp_path / "clip.mp4", frames, fps=25)
    assert codec in ("libx264", "mpeg4")
    with av.open(str(tmp_path / "clip.mp4")) as container:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6
    with pytest.raises(InputError, match="even"):
        write_clip_video(tmp_path / "odd.mp4", np.zeros((2, 33, 32, 3), np.uint8))


def test_dataset_items_and_batched_loading():
    ds = SyntheticFaces("expression", split="val", n=10, size=32, seed=2)
    img, rec = ds[3]
    assert isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    ref = generate("expression", 10, size=32, seed=2, split="val")
    assert np.array_equal(img.permute(1, 2, 0).numpy(), ref.images[3]) and rec == ref.records[3]
    assert np.array_equal(ds[-1][0].numpy(), ds[9][0].numpy())
    with pytest.raises(IndexError):
        ds[10]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=SyntheticFaces.collate)
    images, records = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and [r.path for r in records] == [r.path for r in ref.records[:4]]
    assert ds.header.classes == list(EXPRESSIONS)
    assert ds.records() == ref.records  # listed without drawing
    clips = SyntheticFaces("deepfake", n=10, size=32, clip_len=3)
    assert clips.records() == [clips[i][1] for i in range(10)]


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="task"):
        generate("faces", 2)
    with pytest.raises(ConfigError, match="size"):
        generate("expression", 2, size=8)
    assert generate("deepfake", 4, size=16, clip_len=1).images.shape == (4, 16, 16, 3)  # the smallest
    with pytest.raises(ConfigError, match="0..1"):
        generate("expression", 2, dark_fraction=1.5)
    with pytest.raises(ConfigError, match="methods"):
        generate("deepfake", 2, methods=["FaceShifter"])
    with pytest.raises(ConfigError, match="split"):
        SyntheticFaces("expression", split="dev")


# ---------------------------------------------------------------- difficulty
@pytest.mark.parametrize("task", TASKS)
def test_difficulty_changes_pixels_not_labels(task):
    """The same seed gives the same people and labels at every difficulty; only the pixels change."""
    got = {d: generate(task, 16, size=32, seed=5, split="val", difficulty=d) for d in ("easy", "default", "hard")}
    def labels(g):
        return [(r.path, r.label, r.attributes, r.method, r.video_id, r.subgroup) for r in g.records]

    assert labels(got["easy"]) == labels(got["default"]) == labels(got["hard"])
    assert not np.array_equal(got["easy"].images, got["hard"].images)


def test_difficulty_knobs_scale_the_nuisance():
    from lssat.data.synthetic.difficulty import resolve_difficulty
    from lssat.data.synthetic.faces import N_UNIFORMS, draw_uniforms, sample_faces

    u = draw_uniforms([(0, i) for i in range(200)], N_UNIFORMS)
    dark = np.zeros(200, bool)
    hard = sample_faces(u, dark, difficulty="hard")
    calm = sample_faces(u, dark, difficulty={"preset": "hard", "pose": 0.0, "noise": 0.5, "zoom": 1.2,
                                             "intensity_min": 0.9})
    assert np.abs(calm["yaw"]).max() == 0 and np.abs(hard["yaw"]).max() > 0.3
    np.testing.assert_allclose(calm["noise"], hard["noise"] * 0.5, rtol=1e-6)
    np.testing.assert_allclose(calm["scale"], 1.05 * 1.2, rtol=1e-6)
    shown = calm["expression"] != 0
    assert calm["intensity"][shown].min() >= 0.9 - 1e-6
    assert resolve_difficulty({"pose": 0.5}).expression == resolve_difficulty("default").expression


@pytest.mark.parametrize("bad", ["medium", {"pose": -1}, {"posture": 1}, {"noise": "x"}, 3])
def test_bad_difficulty_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="difficulty"):
        generate("expression", 2, size=32, difficulty=bad)


def test_index_header_records_the_difficulty(tmp_path):
    result = write_synthetic(tmp_path, "expression", {"train": 2, "val": 0, "test": 0}, size=32,
                             difficulty="easy", progress=False)
    assert result.header.info["difficulty"] == "easy"
    from lssat.data.synthetic.difficulty import PRESETS

    assert result.header.info["difficulty_knobs"] == PRESETS["easy"].to_dict()
