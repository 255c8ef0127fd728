"""The index format: round trip, relative roots, and bad lines reported with line number and field."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from lssat.data.index import (IndexHeader, Record, format_counts, label_name, read_index, validate_header,
                              validate_record, write_index)
from lssat.errors import DataError

EXPR = IndexHeader(dataset="toy", task="expression", classes=["neutral", "happy", "sad"])


def write_lines(path, header: dict | str, *lines: dict | str):
    """An index file from raw header/record objects (or literal lines)."""
    out = []
    for item in (header, *lines):
        out.append(item if isinstance(item, str) else json.dumps(item))
    path.write_text("\n".join(out) + "\n")
    return path


def good_header(**kw) -> dict:
    return {"lssat_index": 1, "dataset": "toy", "task": "expression", "root": ".",
            "classes": ["neutral", "happy", "sad"], **kw}


def test_round_trip_keeps_every_field(tmp_path):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    records = [
        Record(path="a/1.jpg", split="train", label=2, box=[1.0, 2.0, 3.0, 4.0],
               landmarks=[[1.0, 2.0]], subgroup={"sex": "f"}, extra={"valence": 0.5}),
        Record(path="a/2.jpg", split="test", label=0),
    ]
    out = tmp_path / "idx" / "index.jsonl"
    assert write_index(out, IndexHeader(**vars(EXPR)), records, data_root=data) == 2
    index = read_index(out)
    assert index.records == records
    assert index.header.root == "../data"
    assert index.resolve(records[0]) == out.parent / "../data" / "a/1.jpg"
    assert index.resolve(records[0]).resolve() == (data / "a/1.jpg").resolve()
    # unset fields are left out of the file
    lines = out.read_text().splitlines()
    assert json.loads(lines[2]) == {"path": "a/2.jpg", "split": "test", "label": 0}
    assert not (tmp_path / "idx" / "index.jsonl.tmp").exists()


def test_data_root_override_and_counts(tmp_path):
    out = write_index(tmp_path / "i.jsonl", IndexHeader(**vars(EXPR)),
                      [Record("x.jpg", "train", 1), Record("y.jpg", "train", 1), Record("z.jpg", "val", 2)])
    assert out == 3
    index = read_index(tmp_path / "i.jsonl", data_root=tmp_path / "moved")
    assert index.resolve(index.records[0]) == tmp_path / "moved" / "x.jpg"
    assert index.counts() == {"train": Counter({"happy": 2}), "val": Counter({"sad": 1})}
    assert [r.path for r in index.split("train")] == ["x.jpg", "y.jpg"]
    text = format_counts(index)
    assert "train       2  (happy: 2)" in text and "val         1  (sad: 1)" in text


def test_label_names_by_task():
    fake = IndexHeader(dataset="ff", task="deepfake", classes=["real", "fake"])
    assert label_name(fake, Record("v.mp4", "train", 1, method="Deepfakes")) == "Deepfakes"
    assert label_name(fake, Record("v.mp4", "train", 0)) == "real"
    attrs = IndexHeader(dataset="c", task="attributes", attribute_names=["A"])
    assert label_name(attrs, Record("i.jpg", "train", attributes=[1])) == "images"
    assert label_name(EXPR, Record("i.jpg", "train", 1)) == "happy"


@pytest.mark.parametrize("record, message", [
    ({"path": "a.jpg", "split": "dev", "label": 0}, "field 'split' must be one of train, val, test, got 'dev'"),
    ({"path": "a.jpg", "split": "train", "label": 3}, "field 'label' must be a class id in 0..2, got 3"),
    ({"path": "a.jpg", "split": "train", "label": "1"}, "field 'label' must be a class id in 0..2, got '1'"),
    ({"path": "", "split": "train", "label": 0}, "field 'path' must be a non-empty relative path"),
    ({"path": "/abs/a.jpg", "split": "train", "label": 0}, "field 'path' must be relative to the data root"),
    ({"path": "a.jpg", "split": "train", "label": 0, "frame": -1}, "field 'frame' must be a non-negative integer"),
    ({"path": "a.jpg", "split": "train", "label": 0, "box": [1, 2, 3]}, "field 'box' must be [x0, y0, x1, y1]"),
    ({"path": "a.jpg", "split": "train", "label": 0, "colour": "red"}, "unknown field 'colour'"),
    ({"split": "train", "label": 0}, "missing field 'path'"),
    ({"path": "a.jpg", "label": 0}, "missing field 'split'"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
])
def test_bad_record_reported_with_line_and_field(tmp_path, record, message):
    path = write_lines(tmp_path / "i.jsonl", good_header(),
                       {"path": "ok.jpg", "split": "train", "label": 0}, "", record)
    with pytest.raises(DataError) as err:
        read_index(path)
    text = str(err.value)
    assert text.startswith(f"{path}:4: ")  # blank lines still count in line numbers
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("header, records, message", [
    (dict(task="deepfake", classes=["real", "fake"]), [{"path": "v", "split": "test", "label": 2}],
     "i.jsonl:2: field 'label' must be 0 (real) or 1 (fake), got 2"),
    (dict(task="attributes", classes=None, attribute_names=["A", "B"]),
     [{"path": "i", "split": "val", "attributes": [1, 0]}, {"path": "i", "split": "val", "attributes": [1]}],
     "i.jsonl:3: field 'attributes' must be a list of 2 values of 0 or 1"),
    (dict(task="attributes", classes=None, attribute_names=["A"]),
     [{"path": "i", "split": "val", "attributes": [-1]}],
     "i.jsonl:2: field 'attributes' must be a list of 1 values of 0 or 1"),
])
def test_task_specific_label_checks(tmp_path, header, records, message):
    path = write_lines(tmp_path / "i.jsonl", good_header(**header), *records)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_index(path)


@pytest.mark.parametrize("header, message", [
    ({"dataset": "toy", "task": "expression"}, "1: not an lssat index header"),
    (good_header(lssat_index=2), "1: not an lssat index header"),
    (good_header(task="regression"), "1: task must be one of deepfake, attributes, expression, got 'regression'"),
    (good_header(classes=None), "1: an expression index needs 'classes'"),
    (good_header(task="attributes"), "1: an attributes index needs 'attribute_names'"),
    (good_header(task="deepfake", classes=["fake", "real"]), "1: a deepfake index has classes ['real', 'fake']"),
    (good_header(owner="me"), "1: unknown header field 'owner'"),
    ({"lssat_index": 1, "task": "expression"}, "1: bad header"),
])
def test_bad_header(tmp_path, header, message):
    path = write_lines(tmp_path / "i.jsonl", header)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_index(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="index file not found"):
        read_index(tmp_path / "none.jsonl")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="index file is empty"):
        read_index(tmp_path / "e.jsonl")


def test_write_index_validates_and_names_the_record(tmp_path):
    records = [Record("a.jpg", "train", 0), Record("b.jpg", "train", 7)]
    with pytest.raises(DataError, match=r"i.jsonl: record 2: field 'label' must be a class id in 0..2, got 7"):
        write_index(tmp_path / "i.jsonl", IndexHeader(**vars(EXPR)), records)
    assert not (tmp_path / "i.jsonl").exists()  # nothing half-written under the final name
    with pytest.raises(DataError, match="header: task must be one of"):
        write_index(tmp_path / "j.jsonl", IndexHeader(dataset="t", task="age"), [])


def test_validators_directly():
    validate_header(EXPR)
    validate_record(Record("a.jpg", "val", 2, frame=0, box=[0, 0, 1, 1]), EXPR, "here")
    with pytest.raises(DataError, match="^here: field 'label'"):
        validate_record(Record("a.jpg", "val", None), EXPR, "here")


def test_index_source_reparses_a_changed_file_and_hands_out_independent_lists(tmp_path):
    import os

    from lssat.data.sources import index_source

    path = write_lines(tmp_path / "i.jsonl", good_header(), {"path": "a.jpg", "split": "train", "label": 1})
    first = index_source(str(path))
    first.records["train"].clear()  # a caller's list is its own: the cached source is untouched
    assert [r.path for r in index_source(str(path)).records["train"]] == ["a.jpg"]
    write_lines(path, good_header(), {"path": "a.jpg", "split": "train", "label": 1},
                {"path": "b.jpg", "split": "train", "label": 2})
    os.utime(path, ns=(1, 1))  # a different modification time, whatever the clock's resolution
    assert [r.path for r in index_source(str(path)).records["train"]] == ["a.jpg", "b.jpg"]
