"""Importers on tiny fixtures laid out like the real datasets, and the `lssat index` command."""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lssat.cli import main
from lssat.data.formats import available_formats, get_format
from lssat.data.formats._common import group_split, stratified_split
from lssat.data.index import read_index
from lssat.errors import ConfigError, DataError

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def jpeg(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path, "JPEG")
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def build(fmt: str, root: Path, *argv: str):
    """Run an importer with its parser's defaults, as `lssat index` would."""
    module = get_format(fmt)
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.build_index(root, parser.parse_args(list(argv)))


def split_counts(records) -> dict[str, int]:
    return dict(Counter(r.split for r in records))


def test_all_formats_are_discovered():
    assert {"celeba", "affectnet", "ffpp", "deepfakebench", "folder"} <= set(available_formats())
    with pytest.raises(ConfigError, match="unknown dataset format 'nope'"):
        get_format("nope")


# --------------------------------------------------------------------------- CelebA


def attr_row(name: str, values: list[int]) -> str:
    # CelebA pads with a second space before positive values: "-1  1  1 -1"
    return name + "".join(f" {v}" if v < 0 else f"  {v}" for v in values)


def make_celeba(root: Path, official_layout: bool = False) -> dict[str, list[int]]:
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in range(1, 8)]
    values = {n: [int(v) for v in rng.choice([-1, 1], size=40)] for n in names}
    values[names[0]] = [1] * 20 + [-1] * 20  # Male (index 20) is -1, Young (39) is -1
    img_dir = root / ("Img/img_align_celeba" if official_layout else "img_align_celeba")
    anno = root / ("Anno" if official_layout else "")
    evald = root / ("Eval" if official_layout else "")
    for n in names[:6]:  # the 7th image is missing from the folder
        jpeg(img_dir / n)
    anno.mkdir(parents=True, exist_ok=True)
    evald.mkdir(parents=True, exist_ok=True)
    lines = [str(len(names)), " ".join(CELEBA_ATTRS) + " "] + [attr_row(n, values[n]) for n in names]
    (anno / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = {0: "0", 1: "0", 2: "0", 3: "1", 4: "2", 5: "2", 6: "2"}
    (evald / "list_eval_partition.txt").write_text("".join(f"{names[i]} {p}\n" for i, p in parts.items()))
    return {n: [1 if v == 1 else 0 for v in vals] for n, vals in values.items()}


@pytest.mark.parametrize("official_layout", [False, True])
def test_celeba_counts_attributes_and_skips(tmp_path, official_layout):
    expected = make_celeba(tmp_path, official_layout)
    res = build("celeba", tmp_path)
    assert res.header.task == "attributes"
    assert res.header.attribute_names == CELEBA_ATTRS
    assert split_counts(res.records) == {"train": 3, "val": 1, "test": 2}
    assert res.skipped == Counter({"image file missing": 1})
    prefix = "Img/img_align_celeba/" if official_layout else "img_align_celeba/"
    by_path = {r.path: r for r in res.records}
    for name, values in expected.items():
        if name == "000007.jpg":
            assert prefix + name not in by_path
            continue
        assert by_path[prefix + name].attributes == values  # -1 -> 0, multiple spaces handled
    first = by_path[prefix + "000001.jpg"]
    assert first.attributes == [1] * 20 + [0] * 20
    assert first.subgroup == {"Male": 0, "Young": 0}
    assert res.header.subgroups == ["Male", "Young"]
    assert Path(res.header.root) == tmp_path.resolve()


def test_celeba_check_images_skips_undecodable(tmp_path):
    make_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    assert len(build("celeba", tmp_path).records) == 6
    res = build("celeba", tmp_path, "--check-images")
    assert len(res.records) == 5
    assert res.skipped == Counter({"image file missing": 1, "image cannot be decoded": 1})


def test_celeba_bad_lines_name_file_and_line(tmp_path):
    make_celeba(tmp_path)
    attr = tmp_path / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    lines[3] = lines[3].replace(" -1", "  0", 1)
    attr.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:4: attribute values must be -1 or 1, got '0'"):
        build("celeba", tmp_path)
    lines[3] = "000002.jpg 1 1"
    attr.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:4: expected a file name and 40 values, got 3"):
        build("celeba", tmp_path)


# --------------------------------------------------------------------------- AffectNet

AFFECT_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                 "expression,valence,arousal")


def affect_row(path: str, code: int, k: int) -> str:
    landmarks = ";".join(f"{k + i}.5" for i in range(136))
    return f"{path},{10 + k},{20 + k},{30},{40},{landmarks},{code},0.25,-0.5"


def make_affectnet_legacy(root: Path, images: str = "Manually_Annotated_Images") -> None:
    # training: 4 images of each code 0..10; validation: 1 of each code 0..10
    train, val = [AFFECT_HEADER], [AFFECT_HEADER]
    k = 0
    for code in range(11):
        for j in range(4):
            rel = f"{code}/tr_{code}_{j}.jpg"
            jpeg(root / images / rel)
            train.append(affect_row(rel, code, k))
            k += 1
        rel = f"{100 + code}/va_{code}.jpg"
        jpeg(root / images / rel)
        val.append(affect_row(rel, code, k))
        k += 1
    train.append(affect_row("0/missing.jpg", 1, k))  # listed, not on disk
    (root / "training.csv").write_text("\n".join(train) + "\n")
    (root / "validation.csv").write_text("\n".join(val) + "\n")


def test_affectnet_legacy_code_order_drops_and_splits(tmp_path):
    make_affectnet_legacy(tmp_path)
    res = build("affectnet", tmp_path, "--val-fraction", "0.25")
    assert res.header.classes == ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]
    assert res.skipped == Counter({"expression 8 (None)": 5, "expression 9 (Uncertain)": 5,
                                   "expression 10 (No-Face)": 5, "image file missing": 1})
    # validation.csv is the test split; 1 of the 4 training images per class goes to val
    assert split_counts(res.records) == {"train": 24, "val": 8, "test": 8}
    per_class = defaultdict(Counter)
    for r in res.records:
        per_class[r.label][r.split] += 1
        assert r.path.split("/")[2].startswith(("tr_", "va_"))
        assert r.path.split("/")[2].split(".")[0].split("_")[1] == str(r.label)  # label == AffectNet code
    assert all(c == Counter({"train": 3, "val": 1, "test": 1}) for c in per_class.values())
    r = next(r for r in res.records if r.path == "Manually_Annotated_Images/2/tr_2_0.jpg")
    assert r.box == [20.0, 30.0, 50.0, 70.0]  # x, y, x + w, y + h with k = 10
    assert len(r.landmarks) == 68 and r.landmarks[0] == [10.5, 11.5] and r.landmarks[67] == [144.5, 145.5]
    assert r.extra == {"valence": 0.25, "arousal": -0.5}


def test_affectnet_seven_classes_and_image_option(tmp_path):
    make_affectnet_legacy(tmp_path, images="imgs")
    with pytest.raises(DataError, match="Manually_Annotated_Images"):
        build("affectnet", tmp_path)
    res = build("affectnet", tmp_path, "--classes", "7", "--images", "imgs")
    assert res.header.classes[-1] == "Anger" and len(res.header.classes) == 7
    assert res.skipped["expression 7 (Contempt) dropped by --classes 7"] == 5
    assert {r.label for r in res.records} == set(range(7))
    assert all(r.path.startswith("imgs/") for r in res.records)
    # the same seed gives the same val split; another seed another one
    again = build("affectnet", tmp_path, "--classes", "7", "--images", "imgs")
    other = build("affectnet", tmp_path, "--classes", "7", "--images", "imgs", "--seed", "3",
                  "--val-fraction", "0.5")
    assert [r.split for r in again.records] == [r.split for r in res.records]
    assert [r.split for r in other.records] != [r.split for r in res.records]


def test_affectnet_bad_code_names_line(tmp_path):
    make_affectnet_legacy(tmp_path)
    p = tmp_path / "validation.csv"
    lines = p.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 3)[0] + ",x,0.1,0.1"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"validation.csv:3: column 'expression' must be a code 0..10, got 'x'"):
        build("affectnet", tmp_path)


def make_affectnet_per_image(root: Path) -> None:
    for folder, codes in (("train_set", [0, 1, 1, 7, 3, 3, 3, 3]), ("val_set", [0, 1, 2, 7])):
        for i, code in enumerate(codes):
            jpeg(root / folder / "images" / f"{i}.jpg")
            ann = root / folder / "annotations"
            ann.mkdir(parents=True, exist_ok=True)
            np.save(ann / f"{i}_exp.npy", np.array(str(code)))
            np.save(ann / f"{i}_val.npy", np.array("0.5"))
            np.save(ann / f"{i}_aro.npy", np.array("-0.25"))
            np.save(ann / f"{i}_lnd.npy", np.arange(136, dtype=float).astype(str))
    np.save(root / "train_set" / "annotations" / "99_exp.npy", np.array("2"))  # no image


def test_affectnet_per_image_layout(tmp_path):
    make_affectnet_per_image(tmp_path)
    res = build("affectnet", tmp_path, "--classes", "7", "--val-fraction", "0.5")
    assert res.header.info["layout"] == "per-image"
    assert res.skipped == Counter({"expression 7 (Contempt) dropped by --classes 7": 2,
                                   "annotation without image file": 1})
    assert split_counts(res.records) == {"train": 3, "val": 4, "test": 3}
    labels = {r.path: r.label for r in res.records}
    assert labels["val_set/images/2.jpg"] == 2 and labels["train_set/images/4.jpg"] == 3
    r = next(r for r in res.records if r.path == "val_set/images/0.jpg")
    assert r.split == "test" and r.extra == {"valence": 0.5, "arousal": -0.25}
    assert r.landmarks[1] == [2.0, 3.0] and len(r.landmarks) == 68


def test_affectnet_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="not an AffectNet folder"):
        build("affectnet", tmp_path)


# --------------------------------------------------------------------------- FaceForensics++

FF_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


def make_ffpp(root: Path, n_pairs: int, c: str = "c23", methods=FF_METHODS) -> list[list[str]]:
    pairs = [[f"{2 * i:03d}", f"{2 * i + 1:03d}"] for i in range(n_pairs)]
    for a, b in pairs:
        touch(root / "original_sequences/youtube" / c / "videos" / f"{a}.mp4")
        touch(root / "original_sequences/youtube" / c / "videos" / f"{b}.mp4")
        for m in methods:
            touch(root / "manipulated_sequences" / m / c / "videos" / f"{a}_{b}.mp4")
            touch(root / "manipulated_sequences" / m / c / "videos" / f"{b}_{a}.mp4")
    return pairs


def write_splits(folder: Path, lists: dict[str, list[list[str]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in lists.items():
        (folder / f"{split}.json").write_text(json.dumps(pairs))
    return folder


def identities_by_split(records) -> dict[str, set[str]]:
    out = defaultdict(set)
    for r in records:
        out[r.split].update(r.extra["identities"])
    return out


def assert_identity_disjoint(records):
    ids = identities_by_split(records)
    splits = list(ids)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not ids[a] & ids[b], (a, b, ids[a] & ids[b])


def test_ffpp_official_splits(tmp_path):
    data = tmp_path / "ff"
    pairs = make_ffpp(data, 5)
    make_ffpp(data, 5, c="c40")  # another quality level beside it
    touch(data / "original_sequences/youtube/c23/videos/998.mp4")  # identity in no list
    touch(data / "manipulated_sequences/Deepfakes/c23/videos/000_009.mp4")  # train id with a test id
    touch(data / "manipulated_sequences/Deepfakes/c23/videos/bad-name.mp4")
    splits = write_splits(tmp_path / "splits", {"train": pairs[:3], "val": pairs[3:4], "test": pairs[4:]})
    res = build("ffpp", data, "--splits", str(splits))
    assert res.header.task == "deepfake" and res.header.classes == ["real", "fake"]
    assert res.header.info["methods"] == list(FF_METHODS)
    # per split: 2 reals per pair, 2 fakes per pair and method
    counts = Counter((r.split, r.method) for r in res.records)
    for split, n_pairs in (("train", 3), ("val", 1), ("test", 1)):
        assert counts[(split, "real")] == 2 * n_pairs
        for m in FF_METHODS:
            assert counts[(split, m)] == 2 * n_pairs
    assert res.skipped == Counter({"identity not in the official split lists": 1,
                                   "identities of a fake fall in different splits": 1,
                                   "Deepfakes file name not <target>_<source>.mp4": 1})
    # video records; ids are full relative paths, unique although the methods reuse file names
    assert all(r.frame is None and r.video_id == r.path for r in res.records)
    assert all("/c23/videos/" in r.path for r in res.records)
    assert len({r.video_id for r in res.records}) == len(res.records)
    same_name = [r.video_id for r in res.records if r.path.endswith("/000_001.mp4")]
    assert len(same_name) == 4 and len(set(same_name)) == 4
    assert all((data / r.path).is_file() for r in res.records)
    assert {r.label for r in res.records if r.method == "real"} == {0}
    assert {r.label for r in res.records if r.method != "real"} == {1}
    assert_identity_disjoint(res.records)


def test_ffpp_seeded_identity_split(tmp_path):
    make_ffpp(tmp_path, 25)
    res = build("ffpp", tmp_path, "--compression", "c23")
    assert not res.skipped  # pairs stay together, nothing straddles
    assert len(res.records) == 50 + 4 * 50
    assert_identity_disjoint(res.records)
    n_ids = {s: len(v) for s, v in identities_by_split(res.records).items()}
    assert n_ids == {"train": 36, "val": 8, "test": 6}  # 0.72 / 0.14 / 0.14 of 50 identities, in pairs
    again = build("ffpp", tmp_path)
    other = build("ffpp", tmp_path, "--seed", "1")
    assert [r.split for r in again.records] == [r.split for r in res.records]
    assert [r.split for r in other.records] != [r.split for r in res.records]


def test_ffpp_optional_methods_and_dfd(tmp_path):
    pairs = make_ffpp(tmp_path, 25, methods=FF_METHODS + ("FaceShifter",))
    (tmp_path / "manipulated_sequences/Face2Face/c40").mkdir()
    (tmp_path / "manipulated_sequences/Weird").mkdir()
    actors = [f"{i:02d}" for i in range(1, 11)]
    for a in actors:
        touch(tmp_path / f"original_sequences/actors/c23/videos/{a}__walking_outside.mp4")
        for b in actors:
            if a != b:
                touch(tmp_path / f"manipulated_sequences/DeepFakeDetection/c23/videos/{a}_{b}__walking__X1Y2.mp4")
    splits = write_splits(tmp_path / "lists", {"train": pairs[:18], "val": pairs[18:21], "test": pairs[21:]})
    res = build("ffpp", tmp_path, "--splits", str(splits))
    assert res.header.info["methods"] == list(FF_METHODS) + ["FaceShifter", "DeepFakeDetection"]
    assert res.skipped["method folder 'Weird' not indexed by default (name it in --methods)"] == 1
    methods = Counter(r.method for r in res.records)
    assert methods["FaceShifter"] == 50
    dfd = [r for r in res.records if r.method == "DeepFakeDetection"]
    actor_reals = [r for r in res.records if "/actors/" in r.path]
    assert len(actor_reals) == 10
    dropped = res.skipped["identities of a fake fall in different splits"]
    assert dropped > 0 and len(dfd) + dropped == 90  # straddling DFD fakes dropped and counted
    assert_identity_disjoint([r for r in res.records if "/actors/" in r.path or r in dfd])
    assert {r.split for r in actor_reals} == {"train", "val", "test"}

    only = build("ffpp", tmp_path, "--methods", "Deepfakes", "--splits", str(splits))
    assert set(Counter(r.method for r in only.records)) == {"real", "Deepfakes"}
    assert not any("/actors/" in r.path for r in only.records)
    with pytest.raises(DataError, match="no videos for method 'Weird'"):
        build("ffpp", tmp_path, "--methods", "Weird")


def test_ffpp_layout_errors(tmp_path):
    with pytest.raises(DataError, match=r"not a FaceForensics\+\+ folder"):
        build("ffpp", tmp_path)
    make_ffpp(tmp_path, 2)
    write_splits(tmp_path / "s", {"train": [["000", "001"]], "val": [["000", "003"]]})
    with pytest.raises(DataError, match=r"val.json: id '000' is also in train.json"):
        build("ffpp", tmp_path, "--splits", str(tmp_path / "s"))
    (tmp_path / "s" / "val.json").write_text('[["002"]]')
    with pytest.raises(DataError, match=r"val.json: entry 0 must be a pair of id strings"):
        build("ffpp", tmp_path, "--splits", str(tmp_path / "s"))


# --------------------------------------------------------------------------- DeepfakeBench


def make_dfb_ff(root: Path) -> Path:
    """An FF-DF-style JSON (with the quality level) over frames with Windows separators."""
    def frames(rel_video: str, numbers) -> list[str]:
        out = []
        for n in numbers:
            rel = f"{rel_video}/{n:03d}.png"
            jpeg(root / rel)
            out.append(rel.replace("/", "\\"))
        return out

    real = "FaceForensics++/original_sequences/youtube/c23/frames"
    df = "FaceForensics++/manipulated_sequences/Deepfakes/c23/frames"
    f2f = "FaceForensics++/manipulated_sequences/Face2Face/c23/frames"
    data = {"FaceForensics++": {
        "FF-real": {
            "train": {"c23": {"000": {"label": "FF-real", "frames": frames(f"{real}/000", [0, 15, 30])}},
                      "c40": {"000": {"label": "FF-real", "frames": ["elsewhere\\000.png"]}}},
            "val": {"c23": {}}, "test": {"c23": {"003": {"label": "FF-real", "frames": frames(f"{real}/003", [5, 10])}}},
        },
        "FF-DF": {
            "train": {"c23": {"000_003": {"label": "FF-DF", "frames": frames(f"{df}/000_003", [0, 1]),
                                          "masks": []}}},
            "val": {"c23": {}}, "test": {"c23": {}},
        },
        "FF-F2F": {
            "train": {"c23": {"000_003": {"label": "FF-F2F",
                                          "frames": frames(f"{f2f}/000_003", [0, 1]) + [f"{f2f}\\000_003\\002.png"]}}},
            "val": {"c23": {}}, "test": {"c23": {}},
        },
    }}
    path = root / "dataset_json" / "FF-DF.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def test_deepfakebench_ff_json(tmp_path):
    make_dfb_ff(tmp_path)
    res = build("deepfakebench", tmp_path)
    assert res.header.task == "deepfake" and res.header.dataset == "FaceForensics++"
    assert split_counts(res.records) == {"train": 7, "test": 2}
    assert res.skipped == Counter({"frame file not found under ROOT": 1})
    # video ids are full relative frame-folder paths: the two methods' "000_003" stay apart
    videos = {r.video_id for r in res.records}
    assert "FaceForensics++/manipulated_sequences/Deepfakes/c23/frames/000_003" in videos
    assert "FaceForensics++/manipulated_sequences/Face2Face/c23/frames/000_003" in videos
    assert len(videos) == 4
    real = sorted((r.frame, r.path) for r in res.records if r.video_id.endswith("youtube/c23/frames/000"))
    assert [f for f, _ in real] == [0, 15, 30]
    assert all((tmp_path / r.path).is_file() and "\\" not in r.path for r in res.records)
    assert {(r.method, r.label) for r in res.records} == {("real", 0), ("FF-DF", 1), ("FF-F2F", 1)}
    res40 = build("deepfakebench", tmp_path, "--compression", "c40")
    assert res40.skipped["frame file not found under ROOT"] == 1
    assert res40.skipped["FF-DF/train: no c40 entry (has c23)"] == 1


def test_deepfakebench_flat_json_absolute_paths_and_duplicates(tmp_path):
    data_root = tmp_path / "rgb"
    old = "/old/machine/datasets/rgb/Celeb-DF-v2"
    videos = {}
    for folder, vid, label in (("Celeb-real", "id0_0000", "CelebDFv2_real"),
                               ("Celeb-synthesis", "id0_id1_0000", "CelebDFv2_fake"),
                               ("YouTube-real", "00001", "CelebDFv2_real")):
        paths = []
        for n in (0, 8):
            jpeg(data_root / "Celeb-DF-v2" / folder / "frames" / vid / f"{n:03d}.png")
            paths.append(f"{old}/{folder}/frames/{vid}/{n:03d}.png")
        videos[vid] = (label, paths)
    entry = {v: {"label": lab, "frames": p} for v, (lab, p) in videos.items()}
    test = {k: entry[k] for k in ("id0_0000", "id0_id1_0000")}
    by_label = defaultdict(lambda: {"train": {}, "val": {}, "test": {}})
    for split, chosen in (("train", entry), ("val", test), ("test", test)):  # as rearrange.py writes it
        for v, e in chosen.items():
            by_label[e["label"]][split][v] = e
    js = tmp_path / "Celeb-DF-v2.json"
    js.write_text(json.dumps({"Celeb-DF-v2": by_label}))
    res = build("deepfakebench", data_root, "--json", str(js))
    assert split_counts(res.records) == {"train": 2, "test": 4}  # test videos kept in test only
    assert res.skipped == Counter({"video listed in several splits (kept once, in the most held-out)": 4})
    assert {r.path.split("/")[0] for r in res.records} == {"Celeb-DF-v2"}
    assert Counter(r.label for r in res.records) == Counter({0: 4, 1: 2})
    as_test = build("deepfakebench", data_root, "--json", str(js), "--as-split", "test")
    assert split_counts(as_test.records) == {"test": 6}


def test_deepfakebench_labels_and_errors(tmp_path):
    js = tmp_path / "x.json"
    js.write_text(json.dumps({"Mine": {"strange": {"test": {"v": {"label": "strange", "frames": []}}}}}))
    with pytest.raises(DataError, match="label 'strange': not a known DeepfakeBench label"):
        build("deepfakebench", tmp_path, "--json", str(js))
    res = build("deepfakebench", tmp_path, "--json", str(js), "--fake-labels", "strange")
    assert res.records == [] and res.skipped == Counter({"video without frames": 1})
    js.write_text(json.dumps({"A": {}, "B": {}}))
    with pytest.raises(DataError, match="holds several datasets"):
        build("deepfakebench", tmp_path, "--json", str(js))
    with pytest.raises(DataError, match="name the DeepfakeBench JSON with --json"):
        build("deepfakebench", tmp_path)


# --------------------------------------------------------------------------- folder


def test_folder_class_folders_seeded_split(tmp_path):
    for cls in ("happy", "sad", "angry"):
        for i in range(10):
            jpeg(tmp_path / cls / f"{i}.jpg")
    jpeg(tmp_path / "stray.jpg")
    (tmp_path / "sad" / "notes.txt").write_text("x")
    res = build("folder", tmp_path, "--val-fraction", "0.2", "--test-fraction", "0.3")
    assert res.header.task == "expression" and res.header.classes == ["angry", "happy", "sad"]
    assert res.skipped == Counter({"image outside a class folder": 1, "not an image file": 1})
    per = Counter((r.label, r.split) for r in res.records)
    for label in range(3):
        assert (per[(label, "train")], per[(label, "val")], per[(label, "test")]) == (5, 2, 3)
    assert all(r.path.startswith(res.header.classes[r.label] + "/") for r in res.records)
    ordered = build("folder", tmp_path, "--classes", "sad", "happy")
    assert ordered.header.classes == ["sad", "happy"]
    assert ordered.skipped["class 'angry' not in --classes"] == 10


def test_folder_split_folders_carve_val(tmp_path):
    for split, n in (("train", 10), ("test", 4)):
        for cls in ("real", "fake"):
            for i in range(n):
                jpeg(tmp_path / split / cls / "clip" / f"{i}.png")
    res = build("folder", tmp_path, "--task", "deepfake")
    assert res.header.classes == ["real", "fake"]
    assert split_counts(res.records) == {"train": 18, "val": 2, "test": 8}
    assert {(r.method, r.label) for r in res.records} == {("real", 0), ("fake", 1)}
    with pytest.raises(ConfigError, match="two classes"):
        build("folder", tmp_path, "--task", "deepfake", "--classes", "a", "b", "c")
    with pytest.raises(DataError, match="needs folders named real and fake"):
        build("folder", tmp_path / "train" / "real", "--task", "deepfake")


def test_folder_csv_and_errors(tmp_path):
    for i in range(4):
        jpeg(tmp_path / "imgs" / f"{i}.jpg")
    (tmp_path / "labels.csv").write_text(
        "path,label,split\nimgs/0.jpg,cat,train\nimgs/1.jpg,dog,train\nimgs/2.jpg,cat,validation\n"
        "imgs/3.jpg,dog,test\nimgs/9.jpg,dog,test\n")
    res = build("folder", tmp_path, "--csv", "labels.csv")
    assert [(r.path, r.label, r.split) for r in res.records] == [
        ("imgs/0.jpg", 0, "train"), ("imgs/1.jpg", 1, "train"), ("imgs/2.jpg", 0, "val"), ("imgs/3.jpg", 1, "test")]
    assert res.skipped == Counter({"image file missing": 1})
    (tmp_path / "labels.csv").write_text("path,label,split\nimgs/0.jpg,cat,holdout\n")
    with pytest.raises(DataError, match=r"labels.csv:2: column 'split' must be train, val or test"):
        build("folder", tmp_path, "--csv", "labels.csv")
    (tmp_path / "other").mkdir()
    jpeg(tmp_path / "train" / "cat" / "0.jpg")
    with pytest.raises(DataError, match="mixes split folders"):
        build("folder", tmp_path)


# --------------------------------------------------------------------------- splitting helpers


def test_stratified_split_is_order_independent_and_exact():
    items = [(f"k{i}", i % 2) for i in range(40)]
    a = stratified_split(items, {"test": 0.25, "val": 0.1}, seed=5)
    b = stratified_split(list(reversed(items)), {"test": 0.25, "val": 0.1}, seed=5)
    assert a == b
    counts = Counter((i % 2, a[f"k{i}"]) for i in range(40))
    assert counts[(0, "test")] == 5 and counts[(0, "val")] == 2 and counts[(0, "train")] == 13


def test_group_split_keeps_groups_whole():
    members = {f"v{i}": (f"a{i}", f"b{i}") for i in range(50)}
    members.update({f"r{i}": (f"a{i}",) for i in range(50)})
    items, identity = group_split(members, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    assert None not in items.values()
    assert all(identity[f"a{i}"] == identity[f"b{i}"] == items[f"v{i}"] for i in range(50))
    assert Counter(identity.values()) == Counter({"train": 70, "val": 16, "test": 14})


# --------------------------------------------------------------------------- the command


def test_cli_index_writes_readable_index_and_reports(tmp_path, capsys):
    make_celeba(tmp_path / "celeba")
    out = tmp_path / "indexes" / "celeba.jsonl"
    assert main(["index", "celeba", str(tmp_path / "celeba"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote 6 records to {out}" in text
    assert "train       3" in text and "val         1" in text and "test        2" in text
    assert "skipped 1:" in text and "1  image file missing" in text
    index = read_index(out)
    assert index.header.root == "../celeba"
    assert len(index.records) == 6 and all(index.resolve(r).is_file() for r in index.records)


def test_cli_index_ffpp_prints_methods_and_videos(tmp_path, capsys):
    make_ffpp(tmp_path / "ff", 25)
    out = tmp_path / "ff.jsonl"
    assert main(["index", "ffpp", str(tmp_path / "ff"), "-o", str(out), "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "Deepfakes: 36" in text and "real: 36" in text
    assert "videos: train 180, val 40, test 30" in text
    assert "skipped: nothing" in text
    assert len(read_index(out).records) == 250


def test_cli_index_errors_exit_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "x.jsonl"
    assert main(["index", "celeba", str(tmp_path / "nope"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "dataset folder not found" in err
    (tmp_path / "empty").mkdir()
    assert main(["index", "celeba", str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "not a CelebA folder" in capsys.readouterr().err
    assert main(["index", "ffpp", str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "not a FaceForensics++ folder" in capsys.readouterr().err
    make_ffpp(tmp_path / "ff", 3)
    assert main(["index", "ffpp", str(tmp_path / "ff"), "-o", str(out), "--val-fraction", "0.7",
                 "--test-fraction", "0.5"]) == 2
    assert "must sum below 1" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["index", "nosuchformat", str(tmp_path), "-o", str(out)])
    assert exc.value.code == 2


def test_cli_index_generator_format_may_create_root(tmp_path, monkeypatch, capsys):
    """A format with CREATES_ROOT (the synthetic generator) gets a ROOT that does not exist yet."""
    import types

    from lssat.data import formats
    from lssat.data.formats import ImportResult
    from lssat.data.index import IndexHeader, Record

    def build_index(root, options):
        jpeg(root / "a" / "0.jpg")
        jpeg(root / "a" / "1.jpg")
        header = IndexHeader(dataset="gen", task="expression", root=str(root), classes=["x", "y"])
        return ImportResult(header, [Record("a/0.jpg", "train", 0), Record("a/1.jpg", "test", 1)])

    gen = types.SimpleNamespace(NAME="gen", HELP="a generator", CREATES_ROOT=True,
                                add_arguments=lambda parser: None, build_index=build_index)
    real = formats.available_formats
    monkeypatch.setattr(formats, "available_formats", lambda: {**real(), "gen": gen})
    monkeypatch.chdir(tmp_path)
    assert main(["index", "gen", "made/here", "-o", "out/gen.jsonl"]) == 0
    assert "val         0  (none)" in capsys.readouterr().out
    index = read_index(tmp_path / "out" / "gen.jsonl")
    assert index.header.root == "../made/here"
    assert all(index.resolve(r).is_file() for r in index.records)
    gen.CREATES_ROOT = False
    assert main(["index", "gen", "elsewhere", "-o", "out/gen2.jsonl"]) == 2
