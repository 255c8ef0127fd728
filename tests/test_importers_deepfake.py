"""Importers of deepfake video datasets in their native layouts (Celeb-DF, DFDC, DFD, UADFV), on
tiny fixtures of zero-byte videos (the importers only list files), and their `lssat index` commands."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lssat.cli import main
from lssat.data.formats import available_formats
from lssat.data.index import read_index
from lssat.errors import ConfigError, DataError
from test_importers import build, touch


def identities_by_split(records) -> dict[str, set[str]]:
    out = defaultdict(set)
    for r in records:
        out[r.split].update(r.extra.get("identities", []))
    return out


def assert_video_records(records):
    assert records
    assert all(r.frame is None and r.video_id == r.path for r in records)
    assert len({r.video_id for r in records}) == len(records)
    assert all((r.label == 0) == (r.method == "real") for r in records)


def test_deepfake_formats_are_discovered():
    assert {"celebdf", "dfdc", "dfd", "uadfv"} <= set(available_formats())


# --------------------------------------------------------------------------- Celeb-DF


def make_celebdf(root: Path, n_celebs: int = 10, n_youtube: int = 10) -> list[str]:
    """Celeb-real id<i>_000{0,1}, fakes id<i>_id<i+1>_000{0,1}, YouTube-real; returns the test list lines."""
    for i in range(n_celebs):
        for k in range(2):
            touch(root / f"Celeb-real/id{i}_{k:04d}.mp4")
            touch(root / f"Celeb-synthesis/id{i}_id{(i + 1) % n_celebs}_{k:04d}.mp4")
    for k in range(n_youtube):
        touch(root / f"YouTube-real/{k:05d}.mp4")
    lines = ["1 YouTube-real/00000.mp4", "1 Celeb-real/id0_0000.mp4", "0 Celeb-synthesis/id0_id1_0000.mp4",
             "0 Celeb-synthesis/id3_id4_0001.mp4", "1 YouTube-real/00001.mp4"]
    (root / "List_of_testing_videos.txt").write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    return lines


def test_celebdf_official_test_list_and_identity_split(tmp_path):
    lines = make_celebdf(tmp_path)
    touch(tmp_path / "Celeb-synthesis/badname.mp4")
    (tmp_path / "Celeb-real/notes.txt").write_text("x")
    res = build("celebdf", tmp_path)
    assert res.header.dataset == "celebdf" and res.header.classes == ["real", "fake"]
    assert_video_records(res.records)
    by_path = {r.path: r for r in res.records}
    test = {r.path for r in res.records if r.split == "test"}
    assert test == {line.split()[1] for line in lines}
    # the list's 1 = real, 0 = fake becomes lssat's 0 = real, 1 = fake
    assert by_path["YouTube-real/00000.mp4"].label == 0 and by_path["Celeb-real/id0_0000.mp4"].label == 0
    fake = by_path["Celeb-synthesis/id0_id1_0000.mp4"]
    assert fake.label == 1 and fake.method == "Celeb-synthesis"
    assert fake.extra == {"source": "Celeb-synthesis", "identities": ["id0", "id1"],
                          "original": "Celeb-real/id0_0000.mp4"}
    assert by_path["YouTube-real/00003.mp4"].extra["identities"] == ["00003"]
    # train and val never share a person; the fakes whose two celebrities were split apart are counted
    ids = identities_by_split(r for r in res.records if r.split != "test")
    assert ids["train"] and ids["val"] and not ids["train"] & ids["val"]
    dropped = res.skipped.pop("identities of a fake fall in different splits")
    assert dropped > 0
    assert res.skipped == Counter({"Celeb-synthesis file name not id<A>_id<B>_<n>.mp4": 1, "not a video file": 1})
    assert len(res.records) + dropped + 1 == 20 + 20 + 10 + 1
    # deterministic: same seed, same split
    again = build("celebdf", tmp_path)
    assert [(r.path, r.split) for r in again.records] == [(r.path, r.split) for r in res.records]


def test_celebdf_test_list_only_and_seeded_test(tmp_path):
    make_celebdf(tmp_path)
    only = build("celebdf", tmp_path, "--test-list-only")
    assert Counter(r.split for r in only.records) == {"test": 5}
    assert only.skipped == Counter({"not in the test list (--test-list-only)": 45})
    (tmp_path / "List_of_testing_videos.txt").unlink()
    with pytest.raises(DataError, match=r"List_of_testing_videos.txt: Celeb-DF test list not found"):
        build("celebdf", tmp_path)
    seeded = build("celebdf", tmp_path, "--seeded-test", "--val-fraction", "0.2", "--test-fraction", "0.2")
    ids = identities_by_split(seeded.records)
    assert set(ids) == {"train", "val", "test"}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    with pytest.raises(ConfigError, match="choose one"):
        build("celebdf", tmp_path, "--seeded-test", "--test-list-only")


@pytest.mark.parametrize("line, message", [
    ("1 Celeb-real/id1_0000.mp4 extra", r":3: expected 'LABEL PATH'"),
    ("2 Celeb-real/id1_0000.mp4", r":3: label must be 1 \(real\) or 0 \(fake\)"),
    ("0 Celeb-real/id1_0000.mp4", r":3: label 0 \(fake\) contradicts folder Celeb-real"),
    ("1 Celeb-synthesis/id1_id2_0000.mp4", r":3: label 1 \(real\) contradicts folder Celeb-synthesis"),
    ("1 Celeb-real/id0_0000.mp4", r":3: 'Celeb-real/id0_0000.mp4' is listed twice \(also line 2\)"),
    ("1 Other/id1_0000.mp4", r":3: 'Other/id1_0000.mp4' is not in Celeb-real"),
    ("1 ../Celeb-real/id1_0000.mp4", r":3: '../Celeb-real/id1_0000.mp4' is not a path relative to ROOT"),
    ("1 Celeb-real/id99_0000.mp4", r":3: video 'Celeb-real/id99_0000.mp4' not found under ROOT"),
])
def test_celebdf_bad_test_list_names_file_and_line(tmp_path, line, message):
    make_celebdf(tmp_path, n_celebs=3, n_youtube=2)
    (tmp_path / "List_of_testing_videos.txt").write_text(
        f"1 YouTube-real/00000.mp4\n1 Celeb-real/id0_0000.mp4\n{line}\n")
    with pytest.raises(DataError, match="List_of_testing_videos.txt" + message):
        build("celebdf", tmp_path)


def test_celebdf_skip_missing_counts_and_layout_errors(tmp_path):
    make_celebdf(tmp_path, n_celebs=3, n_youtube=2)
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id9_id8_0000.mp4\n")
    res = build("celebdf", tmp_path, "--skip-missing")
    assert res.skipped["listed video missing (--skip-missing)"] == 1
    assert [r.path for r in res.records if r.split == "test"] == ["YouTube-real/00000.mp4"]
    (tmp_path / "List_of_testing_videos.txt").write_text("\n \n")
    with pytest.raises(DataError, match="the test list is empty"):
        build("celebdf", tmp_path)
    with pytest.raises(DataError, match=r"not a Celeb-DF folder \(Celeb-real/ not found\)"):
        build("celebdf", tmp_path / "Celeb-real")


# --------------------------------------------------------------------------- DFDC


def make_dfdc_part(folder: Path, n_sources: int, fakes_per_source: int = 2, tag: str = "") -> dict:
    meta = {}
    for s in range(n_sources):
        real = f"{tag}real{s:03d}.mp4"
        meta[real] = {"label": "REAL", "split": "train", "original": None}
        touch(folder / real)
        for f in range(fakes_per_source):
            name = f"{tag}fake{s:03d}x{f}.mp4"
            meta[name] = {"label": "FAKE", "split": "train", "original": real}
            touch(folder / name)
    (folder / "metadata.json").write_text(json.dumps(meta))
    return meta


def make_dfdc_test(folder: Path, rows: list[tuple[str, int]]) -> None:
    for name, _ in rows:
        touch(folder / name)
    (folder / "labels.csv").write_text("filename,label\n" + "".join(f"{n},{lab}\n" for n, lab in rows))


def test_dfdc_parts_and_public_test_set(tmp_path):
    make_dfdc_part(tmp_path / "train/dfdc_train_part_0", 10, tag="a")
    make_dfdc_part(tmp_path / "train/dfdc_train_part_1", 10, tag="b")
    touch(tmp_path / "train/dfdc_train_part_1/unlisted.mp4")
    make_dfdc_test(tmp_path / "test", [("t0.mp4", 0), ("t1.mp4", 1), ("t2.mp4", 1)])
    res = build("dfdc", tmp_path, "--val-fraction", "0.3")
    assert_video_records(res.records)
    assert res.skipped == Counter({"video not in metadata.json": 1})
    by_path = {r.path: r for r in res.records}
    assert {r.path for r in res.records if r.split == "test"} == {"test/t0.mp4", "test/t1.mp4", "test/t2.mp4"}
    assert [by_path[f"test/t{i}.mp4"].label for i in range(3)] == [0, 1, 1]
    assert by_path["test/t1.mp4"].method == "DFDC"
    assert Counter(r.split for r in res.records) == {"train": 42, "val": 18, "test": 3}
    fake = by_path["train/dfdc_train_part_0/afake003x1.mp4"]
    assert fake.label == 1 and fake.extra == {"part": "dfdc_train_part_0", "original": "areal003.mp4"}
    # a source video and every fake made from it are in one split
    for r in res.records:
        if r.label == 1 and r.split != "test":
            real = r.path.rsplit("/", 1)[0] + "/" + r.extra["original"]
            assert by_path[real].split == r.split
    assert res.header.info["parts"] == ["train/dfdc_train_part_0", "train/dfdc_train_part_1"]


def test_dfdc_without_test_set_and_test_only(tmp_path):
    make_dfdc_part(tmp_path / "dfdc_train_part_3", 20, fakes_per_source=1)
    touch(tmp_path / "test_videos/aaa.mp4")  # Kaggle's public test videos come without labels
    res = build("dfdc", tmp_path, "--val-fraction", "0.2", "--test-fraction", "0.2")
    assert Counter(r.split for r in res.records) == {"train": 24, "val": 8, "test": 8}
    assert res.skipped == Counter({"test_videos/: videos without labels.csv or metadata.json (not read)": 1})
    with pytest.raises(DataError, match=r"no test set \(test/labels.csv or test/metadata.json not found\)"):
        build("dfdc", tmp_path, "--test-only")
    make_dfdc_test(tmp_path / "test", [("t0.mp4", 0), ("t1.mp4", 1)])
    only = build("dfdc", tmp_path, "--test-only")
    assert [(r.path, r.split, r.label) for r in only.records] == [("test/t0.mp4", "test", 0),
                                                                   ("test/t1.mp4", "test", 1)]
    assert only.skipped == Counter({"training part not read (--test-only)": 1,
                                    "test_videos/: videos without labels.csv or metadata.json (not read)": 1})
    (tmp_path / "test/labels.csv").unlink()
    make_dfdc_part(tmp_path / "test", 1, tag="t")  # a test set labelled by a metadata.json instead
    meta_test = build("dfdc", tmp_path, "--test-only")
    assert {(r.path, r.label, r.split) for r in meta_test.records} == {
        ("test/treal000.mp4", 0, "test"), ("test/tfake000x0.mp4", 1, "test"), ("test/tfake000x1.mp4", 1, "test")}
    assert meta_test.skipped == Counter({"training part not read (--test-only)": 1, "video not in metadata.json": 2,
                                         "test_videos/: videos without labels.csv or metadata.json (not read)": 1})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a DFDC folder"):
        build("dfdc", tmp_path / "empty")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["real000.mp4"].update(label="MAYBE"),
     r"metadata.json: entry 'real000.mp4': label must be REAL or FAKE"),
    (lambda m: m["fake000x0.mp4"].update(original=None), r"entry 'fake000x0.mp4': a FAKE video needs its 'original'"),
    (lambda m: m.update({"gone.mp4": {"label": "REAL"}}), r"entry 'gone.mp4': video 'gone.mp4' not found under ROOT"),
    (lambda m: m.update({"../x.mp4": {"label": "REAL"}}), r"entry '../x.mp4': '../x.mp4' is not a path relative"),
])
def test_dfdc_bad_metadata_names_file_and_entry(tmp_path, edit, message):
    meta = make_dfdc_part(tmp_path / "p", 2)
    edit(meta)
    (tmp_path / "p/metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=message):
        build("dfdc", tmp_path)


def test_dfdc_bad_labels_csv_and_skip_missing(tmp_path):
    make_dfdc_test(tmp_path / "test", [("t0.mp4", 0), ("t1.mp4", 1)])
    csv = tmp_path / "test/labels.csv"
    csv.write_text("filename,label\nt0.mp4,0\nt1.mp4,fake\n")
    with pytest.raises(DataError, match=r"labels.csv:3: label must be 0 \(real\) or 1 \(fake\), got 'fake'"):
        build("dfdc", tmp_path)
    csv.write_text("filename,label\nt0.mp4,0\nt0.mp4,1\n")
    with pytest.raises(DataError, match=r"labels.csv:3: 't0.mp4' is listed twice \(also line 2\)"):
        build("dfdc", tmp_path)
    csv.write_text("name,label\n")
    with pytest.raises(DataError, match=r"labels.csv:1: expected columns filename and label"):
        build("dfdc", tmp_path)
    csv.write_text("filename,label\nt0.mp4,0\nt1.mp4,1\nt9.mp4,1\n")
    with pytest.raises(DataError, match=r"labels.csv:4: video 't9.mp4' not found under ROOT"):
        build("dfdc", tmp_path)
    res = build("dfdc", tmp_path, "--skip-missing")
    assert len(res.records) == 2 and res.skipped == Counter({"listed video missing (--skip-missing)": 1})
    (tmp_path / "p").mkdir()
    (tmp_path / "p/metadata.json").write_text("{not json")
    with pytest.raises(DataError, match=r"p/metadata.json: not valid JSON"):
        build("dfdc", tmp_path, "--skip-missing")


# --------------------------------------------------------------------------- UADFV


def make_uadfv(root: Path, n: int) -> None:
    for i in range(n):
        touch(root / f"real/{i:04d}.mp4")
        touch(root / f"fake/{i:04d}_fake.mp4")


def test_uadfv_identity_split_and_as_split(tmp_path):
    make_uadfv(tmp_path, 20)
    touch(tmp_path / "fake/0099.mp4")  # a fake not named <id>_fake
    touch(tmp_path / "real/frames/0000/000.png")  # DeepfakeBench's frames are not read
    res = build("uadfv", tmp_path)
    assert_video_records(res.records)
    assert res.skipped == Counter({"fake file name not <id>_fake.mp4": 1})
    assert Counter(r.split for r in res.records) == {"train": 28, "val": 6, "test": 6}
    ids = identities_by_split(res.records)
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    fake = next(r for r in res.records if r.path == "fake/0007_fake.mp4")
    assert fake.method == "UADFV" and fake.extra == {"identities": ["0007"], "original": "real/0007.mp4"}
    every = build("uadfv", tmp_path, "--as-split", "test")
    assert Counter(r.split for r in every.records) == {"test": 40}
    with pytest.raises(DataError, match=r"not a UADFV folder \(real/ not found\)"):
        build("uadfv", tmp_path / "real")


# --------------------------------------------------------------------------- DeepFakeDetection


def make_dfd(root: Path, n_actors: int, c: str = "c23") -> None:
    actors = [f"{i:02d}" for i in range(1, n_actors + 1)]
    for a in actors:
        touch(root / f"original_sequences/actors/{c}/videos/{a}__exit_phone_room.mp4")
        for b in actors:
            if a != b:
                name = f"{a}_{b}__exit_phone_room__YVGY8LOK.mp4"
                touch(root / f"manipulated_sequences/DeepFakeDetection/{c}/videos/{name}")


def test_dfd_actor_split_and_as_split(tmp_path):
    make_dfd(tmp_path, 8)
    touch(tmp_path / "manipulated_sequences/DeepFakeDetection/c23/videos/odd.mp4")
    res = build("dfd", tmp_path, "--val-fraction", "0.25", "--test-fraction", "0.25")
    assert_video_records(res.records)
    dropped = res.skipped.pop("identities of a fake fall in different splits")
    assert res.skipped == Counter({"fake file name not <a>_<b>__<scene>__<code>.mp4": 1})
    assert len(res.records) + dropped == 8 + 56
    ids = identities_by_split(res.records)
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    fake = next(r for r in res.records if r.label == 1)
    assert fake.method == "DeepFakeDetection" and fake.extra["scene"] == "exit_phone_room"
    every = build("dfd", tmp_path, "--as-split", "test")
    assert len(every.records) == 64 and {r.split for r in every.records} == {"test"}
    with pytest.raises(DataError, match=r"original_sequences/actors/c40/videos not found"):
        build("dfd", tmp_path, "--compression", "c40")


# --------------------------------------------------------------------------- lssat index


def test_lssat_index_writes_new_formats_and_reports_errors(tmp_path, capsys):
    make_celebdf(tmp_path / "cdf")
    out = tmp_path / "idx" / "cdf.jsonl"
    assert main(["index", "celebdf", str(tmp_path / "cdf"), "-o", str(out), "--test-list-only"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5 records" in printed and "videos: test 5" in printed
    assert "45  not in the test list (--test-list-only)" in printed
    index = read_index(out)
    assert index.header.dataset == "celebdf" and len(index.split("test")) == 5
    assert all(index.resolve(r).is_file() for r in index.records)

    make_uadfv(tmp_path / "ua", 4)
    assert main(["index", "uadfv", str(tmp_path / "ua"), "-o", str(tmp_path / "ua.jsonl"), "--as-split", "test"]) == 0
    capsys.readouterr()
    (tmp_path / "cdf/List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00000.mp4\n1 Celeb-synthesis/id0_id1_0000.mp4\n")
    assert main(["index", "celebdf", str(tmp_path / "cdf"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lssat index: error: ") and "List_of_testing_videos.txt:2: label 1 (real)" in err
    assert "\n" not in err


def test_label_files_that_are_not_utf8_name_file_and_line(tmp_path):
    make_celebdf(tmp_path / "cdf", n_celebs=2, n_youtube=1)
    (tmp_path / "cdf/List_of_testing_videos.txt").write_bytes(b"1 YouTube-real/00000.mp4\n1 Celeb-real/id\xe9_0.mp4\n")
    with pytest.raises(DataError, match=r"List_of_testing_videos.txt:2: not UTF-8 text"):
        build("celebdf", tmp_path / "cdf")
    make_dfdc_test(tmp_path / "dfdc/test", [("t0.mp4", 0)])
    (tmp_path / "dfdc/test/labels.csv").write_bytes(b"filename,label\nt\xe90.mp4,0\n")
    with pytest.raises(DataError, match=r"labels.csv:2: not UTF-8 text"):
        build("dfdc", tmp_path / "dfdc")
