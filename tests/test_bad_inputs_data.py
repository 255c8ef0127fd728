"""Bad data inputs end as one line naming the input: exit status 2 (or a FAILED row and exit 1 for
the per-file `predict`), never a traceback, a hang, or a silently wrong result.

Covers the importers' label files, index files, image files (pipes, devices, truncated images,
decompression bombs, JPEGs whose header lies about their size) and output paths of `index`,
`predict`, `texture` and `show`, as a user would meet them on the command line.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from test_importers import jpeg, make_affectnet_legacy, make_affectnet_per_image, make_celeba, make_dfb_ff, make_ffpp
from test_infer import save_checkpoint, tiny_model, tiny_spec

from lssat.cli import main
from lssat.data import loading
from lssat.data.index import IndexHeader, Record, read_index, write_index
from lssat.errors import DataError

LATIN1 = "Gesicht_\xe9t\xe9".encode("latin-1")  # not UTF-8


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def no_hang():
    """Fail, rather than hang, when an input blocks (a named pipe opened for reading)."""
    def timeout(signum, frame):
        raise TimeoutError("the command blocked on an input")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, out: str, err: str, command: str, *needles: str) -> None:
    """Exit 2 with exactly one `lssat COMMAND: error: ...` line on stderr holding every needle."""
    assert "Traceback" not in out + err, err
    assert status == 2, (status, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lssat {command}: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def replace_with_fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def insert_bytes(path: Path, line: int, data: bytes) -> None:
    """Append `data` to line `line` (1-based) of a text file."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] += data
    path.write_bytes(b"\n".join(lines))


def jpeg_bytes(size: int = 64, **save) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def lying_jpeg(width: int, height: int) -> bytes:
    """A 64x64 JPEG whose frame header claims width x height."""
    data = bytearray(jpeg_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring width x height (8-bit grey) with next to no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def good_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------- importers (lssat index)

def celeba_attr_latin1(root: Path) -> tuple[Path, str]:
    make_celeba(root)
    insert_bytes(root / "list_attr_celeba.txt", 3, b" " + LATIN1)
    return root, "list_attr_celeba.txt:3: not UTF-8"


def celeba_partition_latin1(root: Path) -> tuple[Path, str]:
    make_celeba(root)
    insert_bytes(root / "list_eval_partition.txt", 2, LATIN1)
    return root, "list_eval_partition.txt:2: not UTF-8"


def celeba_attr_fifo(root: Path) -> tuple[Path, str]:
    make_celeba(root)
    replace_with_fifo(root / "list_attr_celeba.txt")
    return root, "list_attr_celeba.txt: CelebA attribute list is a named pipe"


def affectnet_csv_latin1(root: Path) -> tuple[Path, str]:
    make_affectnet_legacy(root)
    insert_bytes(root / "training.csv", 4, LATIN1)
    return root, "training.csv:4: not UTF-8"


def affectnet_csv_nan_box(root: Path) -> tuple[Path, str]:
    make_affectnet_legacy(root)
    path = root / "training.csv"
    lines = path.read_text().splitlines()
    parts = lines[2].split(",")
    parts[1] = "nan"
    lines[2] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    return root, "training.csv:3: column 'face_x' must be a finite number, got 'nan'"


def _per_image(root: Path, name: str, content: Callable[[Path], None]) -> Path:
    make_affectnet_per_image(root)
    path = root / "train_set" / "annotations" / name
    path.unlink()
    content(path)
    return path


def affectnet_lnd_not_npy(root: Path) -> tuple[Path, str]:
    path = _per_image(root, "1_lnd.npy", lambda p: p.write_text("1,2,3,4"))
    return root, f"{path}: not a readable .npy file"


def affectnet_val_text(root: Path) -> tuple[Path, str]:
    path = _per_image(root, "1_val.npy", lambda p: np.save(p, np.array("very positive")))
    return root, f"{path}: expected a number, got 'very positive'"


def affectnet_exp_not_npy(root: Path) -> tuple[Path, str]:
    path = _per_image(root, "2_exp.npy", lambda p: p.write_bytes(b"\x00\x01garbage"))
    return root, f"{path}: not a readable .npy file"


def affectnet_exp_array(root: Path) -> tuple[Path, str]:
    path = _per_image(root, "2_exp.npy", lambda p: np.save(p, np.array([1, 2, 3])))
    return root, f"{path}: expected one value, got an array of shape (3,)"


def affectnet_aro_npz(root: Path) -> tuple[Path, str]:
    def npz(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, a=np.array(0.5))

    path = _per_image(root, "3_aro.npy", npz)
    return root, f"{path}: not a .npy file (an .npz archive)"


def affectnet_lnd_words(root: Path) -> tuple[Path, str]:
    path = _per_image(root, "0_lnd.npy", lambda p: np.save(p, np.array(["left eye"] * 136)))
    return root, f"{path}: landmarks must be numbers"


def affectnet_exp_pickled(root: Path) -> tuple[Path, str]:
    path = _per_image(root, "0_exp.npy", lambda p: np.save(p, np.array([{"code": 1}], dtype=object)))
    return root, f"{path}: not a readable .npy file"


def affectnet_exp_fifo(root: Path) -> tuple[Path, str]:
    path = _per_image(root, "0_exp.npy", replace_with_fifo)
    return root, f"{path}: annotation file is a named pipe"


def _ffpp_with_splits(root: Path, train: bytes | None) -> Path:
    make_ffpp(root, 3)
    splits = root / "splits"
    splits.mkdir()
    for name in ("val", "test"):
        (splits / f"{name}.json").write_text("[]")
    if train is None:
        os.mkfifo(splits / "train.json")
    else:
        (splits / "train.json").write_bytes(train)
    return splits / "train.json"


def ffpp_splits_latin1(root: Path) -> tuple[Path, str, list[str]]:
    path = _ffpp_with_splits(root, b'[\n["000", "001"],\n["' + LATIN1 + b'", "003"]\n]')
    return root, f"{path}:3: not UTF-8", ["--splits", str(path.parent)]


def ffpp_splits_fifo(root: Path) -> tuple[Path, str, list[str]]:
    path = _ffpp_with_splits(root, None)
    return root, f"{path}: split list is a named pipe", ["--splits", str(path.parent)]


def ffpp_splits_nested(root: Path) -> tuple[Path, str, list[str]]:
    path = _ffpp_with_splits(root, b"[" * 100_000)
    return root, f"{path}: not valid JSON", ["--splits", str(path.parent)]


def dfb_json_latin1(root: Path) -> tuple[Path, str]:
    path = make_dfb_ff(root)
    path.write_bytes(path.read_bytes().replace(b'"FF-DF"', b'"FF-' + LATIN1 + b'"', 1))
    return root, f"{path}:1: not UTF-8"


def dfb_json_binary(root: Path) -> tuple[Path, str]:
    path = make_dfb_ff(root)
    path.write_bytes(png_header_only(8, 8))
    return root, f"{path}:1: not UTF-8"


def folder_csv_latin1(root: Path) -> tuple[Path, str, list[str]]:
    for i in range(2):
        jpeg(root / "imgs" / f"{i}.jpg")
    (root / "labels.csv").write_bytes(b"path,label\nimgs/0.jpg,cat\nimgs/1.jpg," + LATIN1 + b"\n")
    return root, "labels.csv:3: not UTF-8", ["--csv", "labels.csv"]


def folder_csv_is_folder(root: Path) -> tuple[Path, str, list[str]]:
    jpeg(root / "imgs" / "0.jpg")
    (root / "labels.csv").mkdir()
    return root, "labels.csv: CSV (--csv) is a folder", ["--csv", "labels.csv"]


IMPORTER_CASES = {
    "celeba": [celeba_attr_latin1, celeba_partition_latin1, celeba_attr_fifo],
    "affectnet": [affectnet_csv_latin1, affectnet_csv_nan_box, affectnet_lnd_not_npy, affectnet_val_text,
                  affectnet_exp_not_npy, affectnet_exp_array, affectnet_aro_npz, affectnet_lnd_words,
                  affectnet_exp_pickled, affectnet_exp_fifo],
    "ffpp": [ffpp_splits_latin1, ffpp_splits_fifo, ffpp_splits_nested],
    "deepfakebench": [dfb_json_latin1, dfb_json_binary],
    "folder": [folder_csv_latin1, folder_csv_is_folder],
}


@pytest.mark.parametrize("fmt,make", [(fmt, make) for fmt, makes in IMPORTER_CASES.items() for make in makes],
                         ids=lambda x: x if isinstance(x, str) else x.__name__)
def test_importer_bad_label_files(tmp_path, capsys, fmt, make):
    root = tmp_path / "data"
    root.mkdir()
    made = make(root)
    root, needle, extra = made if len(made) == 3 else (*made, [])
    out = tmp_path / "index.jsonl"
    status, stdout, stderr = run(capsys, "index", fmt, root, "-o", out, *extra)
    assert_one_line_error(status, stdout, stderr, "index", needle)
    assert not out.exists()


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_index_output_path_that_cannot_be_created(tmp_path, capsys, where):
    make_celeba(tmp_path / "celeba")
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "index.jsonl" if where == "under_a_file" else tmp_path
    status, stdout, stderr = run(capsys, "index", "celeba", tmp_path / "celeba", "-o", out)
    needle = "taken is a file, not a folder" if where == "under_a_file" else "is a folder"
    assert_one_line_error(status, stdout, stderr, "index", str(out), needle)


def test_write_index_under_a_file_is_a_data_error(tmp_path):
    (tmp_path / "taken").write_text("a file")
    header = IndexHeader(dataset="t", task="deepfake", classes=["real", "fake"])
    with pytest.raises(DataError, match="taken/sub/i.jsonl: cannot create the index's folder"):
        write_index(tmp_path / "taken" / "sub" / "i.jsonl", header, [Record("a.jpg", "train", 0)])


def test_write_index_refuses_nan_naming_the_record(tmp_path):
    header = IndexHeader(dataset="t", task="deepfake", classes=["real", "fake"])
    records = [Record("a.jpg", "train", 0), Record("b.jpg", "train", 1, extra={"valence": float("nan")})]
    with pytest.raises(DataError, match=r"i.jsonl: record 2: a value is NaN or infinite"):
        write_index(tmp_path / "i.jsonl", header, records)
    assert not (tmp_path / "i.jsonl").exists()


@pytest.mark.parametrize("layout", ["legacy", "per-image"])
def test_affectnet_non_finite_valence_is_skipped_and_counted(tmp_path, capsys, layout):
    root = tmp_path / "affectnet"
    if layout == "legacy":
        make_affectnet_legacy(root)
        path = root / "training.csv"
        lines = path.read_text().splitlines()
        lines[1] = lines[1].rsplit(",", 2)[0] + ",nan,0.1"
        lines[2] = lines[2].rsplit(",", 2)[0] + ",0.3,inf"
        path.write_text("\n".join(lines) + "\n")
        expected = 2
    else:
        make_affectnet_per_image(root)
        np.save(root / "train_set" / "annotations" / "1_val.npy", np.array("nan"))
        expected = 1
    out = tmp_path / "index.jsonl"
    status, stdout, stderr = run(capsys, "index", "affectnet", root, "-o", out)
    assert status == 0 and "Traceback" not in stdout + stderr
    assert f"{expected}  valence or arousal not a finite number" in stdout
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    for line in text.splitlines():  # strict JSON throughout
        json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in the index"))
    assert len(read_index(out).records) > 0


def test_check_images_skips_a_fifo_and_a_bomb_without_blocking(tmp_path, capsys):
    make_celeba(tmp_path / "celeba")
    images = tmp_path / "celeba" / "img_align_celeba"
    replace_with_fifo(images / "000002.jpg")
    (images / "000003.jpg").write_bytes(lying_jpeg(20000, 20000))
    status, stdout, stderr = run(capsys, "index", "celeba", tmp_path / "celeba", "-o", tmp_path / "i.jsonl",
                                 "--check-images")
    assert status == 0 and "Traceback" not in stdout + stderr
    assert "2  image cannot be decoded" in stdout


# --------------------------------------------------------------------------- index files

GOOD_HEADER = {"lssat_index": 1, "dataset": "toy", "task": "expression", "root": ".",
               "classes": ["Neutral", "Happy"], "subgroups": ["skin_tone"]}
GOOD_RECORD = {"path": "a.png", "split": "train", "label": 1}


def _lines(header: dict, *records: dict | str) -> bytes:
    items = [json.dumps(header)] + [r if isinstance(r, str) else json.dumps(r) for r in records]
    return ("\n".join(items) + "\n").encode()


def _header(**changes) -> bytes:
    return _lines({**GOOD_HEADER, **changes}, GOOD_RECORD)


def _record(line: str | dict) -> bytes:
    return _lines(GOOD_HEADER, GOOD_RECORD, line)


INDEX_CASES = [
    ("binary_png", png_header_only(4, 4), ":1: not UTF-8 text (byte 0x89"),
    ("latin1_line", _lines(GOOD_HEADER, GOOD_RECORD).replace(b'"a.png"', b'"' + LATIN1 + b'.png"'),
     ":2: not UTF-8 text"),
    ("nul_bytes", _lines(GOOD_HEADER) + b"\x00\x00\x00\x00\n", ":2: binary data"),
    ("root_number", _header(root=5), ":1: field 'root' must be a string, got a number 5"),
    ("classes_string", _header(classes="NeutralHappy"), ":1: field 'classes' must be a list of names, got a string"),
    ("subgroups_string", _header(subgroups="skin_tone"), ":1: field 'subgroups' must be a list of names"),
    ("classes_repeat", _header(classes=["Happy", "Happy"]), ":1: field 'classes' names 'Happy' twice"),
    ("classes_numbers", _header(classes=[0, 1]), ":1: field 'classes' must hold non-empty strings, got 0"),
    ("info_list", _header(info=[1, 2]), ":1: field 'info' must be an object, got a list"),
    ("dataset_null", _header(dataset=None), ":1: field 'dataset' must be a string, got null"),
    ("version_true", _header(lssat_index=True), ":1: not an lssat index header"),
    ("subgroup_list", _record({**GOOD_RECORD, "subgroup": ["dark"]}),
     ":3: field 'subgroup' must be an object of name: value, got a list"),
    ("subgroup_nested", _record({**GOOD_RECORD, "subgroup": {"skin_tone": {"v": 1}}}),
     ":3: field 'subgroup': value of 'skin_tone' must be a string or number"),
    ("nan_box", _record('{"path": "b.png", "split": "train", "label": 0, "box": [NaN, 0, 1, 1]}'),
     ":3: not valid JSON (NaN is not a JSON value)"),
    ("infinity_extra", _record('{"path": "b.png", "split": "train", "label": 0, "extra": {"v": -Infinity}}'),
     ":3: not valid JSON (-Infinity is not a JSON value)"),
    ("overflow_extra", _record('{"path": "b.png", "split": "train", "label": 0, "extra": {"v": 1e400}}'),
     ":3: not valid JSON (number 1e400 is too large)"),
    ("huge_integer", _record('{"path": "b.png", "split": "train", "label": 1' + "0" * 5000 + "}"),
     ":3: not valid JSON (Exceeds the limit"),
    ("method_number", _record({**GOOD_RECORD, "method": 3}), ":3: field 'method' must be a string, got a number"),
    ("video_id_list", _record({**GOOD_RECORD, "video_id": ["v"]}), ":3: field 'video_id' must be a string"),
    ("box_strings", _record({**GOOD_RECORD, "box": ["0", "0", "1", "1"]}),
     ":3: field 'box' must be [x0, y0, x1, y1] (4 finite numbers)"),
    ("landmarks_strings", _record({**GOOD_RECORD, "landmarks": [["1", "2"]]}),
     ":3: field 'landmarks' must be a list of [x, y] points"),
    ("frame_bool", _record({**GOOD_RECORD, "frame": True}), ":3: field 'frame' must be a non-negative integer"),
    ("extra_list", _record({**GOOD_RECORD, "extra": [1]}), ":3: field 'extra' must be an object, got a list"),
    ("split_list", _record({**GOOD_RECORD, "split": ["train"]}), ":3: field 'split' must be one of train, val, test"),
]


@pytest.mark.parametrize("content,needle", [c[1:] for c in INDEX_CASES], ids=[c[0] for c in INDEX_CASES])
def test_bad_index_files(tmp_path, capsys, content, needle):
    index = tmp_path / "index.jsonl"
    index.write_bytes(content)
    status, stdout, stderr = run(capsys, "preprocess", index, "-o", tmp_path / "out", "--detector", "center")
    assert_one_line_error(status, stdout, stderr, "preprocess", f"{index}{needle}")
    with pytest.raises(DataError):  # the library call says the same
        read_index(index)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_index_that_is_not_a_regular_file(tmp_path, capsys, kind):
    index = replace_with_fifo(tmp_path / "index.jsonl") if kind == "fifo" else Path("/dev/zero")
    status, stdout, stderr = run(capsys, "preprocess", index, "-o", tmp_path / "out", "--detector", "center")
    what = "a named pipe" if kind == "fifo" else "a character device"
    assert_one_line_error(status, stdout, stderr, "preprocess", f"{index}: index file is {what}, not a regular file")


def test_preprocess_reports_a_video_that_is_a_fifo(tmp_path, capsys):
    data = tmp_path / "videos"
    replace_with_fifo(data / "clip.mp4")
    (data / "noise.mp4").write_bytes(b"\x00" * 100)
    index = tmp_path / "index.jsonl"
    write_index(index, IndexHeader(dataset="v", task="deepfake", classes=["real", "fake"]),
                [Record(name, "test", 0, method="real", video_id=name) for name in ("clip.mp4", "noise.mp4")],
                data_root=data)
    status, stdout, stderr = run(capsys, "preprocess", index, "-o", tmp_path / "out", "--detector", "center",
                                 "--no-progress")
    assert status == 1 and "Traceback" not in stdout + stderr
    assert "clip.mp4: video file is a named pipe, not a regular file" in stdout
    assert "noise.mp4: cannot read video" in stdout


# --------------------------------------------------------------------------- training on an index


def _deepfake_index(tmp_path: Path, make_image: Callable[[Path], None] | None) -> Path:
    data = tmp_path / "data"
    records = []
    for split in ("train", "val", "test"):
        for i in range(4):
            rel = f"{split}/{i}.png"
            if make_image is not None:
                (data / rel).parent.mkdir(parents=True, exist_ok=True)
                make_image(data / rel)
            records.append(Record(rel, split, i % 2))
    index = tmp_path / "index.jsonl"
    write_index(index, IndexHeader(dataset="t", task="deepfake", classes=["real", "fake"]), records, data_root=data)
    return index


@pytest.mark.parametrize("images", ["missing", "unreadable"])
def test_train_on_an_index_whose_images_are_all_bad(tmp_path, capsys, images):
    make = None if images == "missing" else (lambda p: p.write_bytes(jpeg_bytes()[:300]))
    index = _deepfake_index(tmp_path, make)
    status, stdout, stderr = run(capsys, "train", "-c", "smoke", "-o", tmp_path / "runs", "trainer.progress=false",
                                 f"data.index={index}", "data.synthetic=null", "task.kind=deepfake")
    first = tmp_path / "data" / "train" / "0.png"
    state = "missing" if images == "missing" else "missing or unreadable (0 missing, 4 unreadable)"
    assert_one_line_error(status, stdout, stderr, "train", str(index),
                          f"every image of the train split is {state}", f"first: {first}")


# --------------------------------------------------------------------------- predict (per file)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    spec = tiny_spec()
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "model.pt", tiny_model(spec), spec)


def _fifo(path: Path) -> Path:
    return replace_with_fifo(path)


def _bytes(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path
    return make


def _truncated_png(path: Path) -> Path:
    good_png(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    return path


def _dev_zero(path: Path) -> Path:
    return Path("/dev/zero")


IMAGE_CASES = [
    ("fifo.jpg", _fifo, "image file is a named pipe, not a regular file"),
    ("zero", _dev_zero, "image file is a character device, not a regular file"),
    ("fifo.mp4", _fifo, "video file is a named pipe, not a regular file"),
    ("truncated.jpg", _bytes(jpeg_bytes()[:1500]), "unreadable image (Image is incomplete or truncated)"),
    ("truncated.png", _truncated_png, "unreadable image (truncated file"),
    ("liar_20000.jpg", _bytes(lying_jpeg(20000, 20000)),
     "unreadable image (20000x20000 pixels, over the limit of 89478485 pixels: a decompression bomb?)"),
    ("liar_2000.jpg", _bytes(lying_jpeg(2000, 2000)), "the header says 2000x2000 pixels but the file holds"),
    ("liar_65500.jpg", _bytes(lying_jpeg(65500, 65500)), "65500x65500 pixels, over the limit"),
    ("bomb_png.png", _bytes(png_header_only(20000, 20000)), "400000000 pixels, over the limit"),
    ("big_png.png", _bytes(png_header_only(10000, 10000)), "10000x10000 pixels, over the limit"),
    ("notes.jpg", _bytes(b"just some text\n"), "not an image or video file (not a recognised image format)"),
    ("empty.jpg", _bytes(b""), "image file is empty"),
]


@pytest.mark.parametrize("name,make,reason", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_predict_bad_image_is_a_failed_row(tmp_path, capsys, ckpt, name, make, reason):
    bad = make(tmp_path / name)
    good = good_png(tmp_path / "good.png")
    status, stdout, stderr = run(capsys, "predict", ckpt, bad, good, "--faces", "crop", "--format", "json",
                                 "--device", "cpu")
    assert "Traceback" not in stdout + stderr and "frame #" not in stderr, stderr
    assert status == 1
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [(r["path"], r["ok"]) for r in rows] == [(str(bad), False), (str(good), True)]
    assert reason in rows[0]["error"], rows[0]["error"]
    assert "1 of 2 files scored, 1 failed" in stderr


def test_predict_file_over_the_size_limit(tmp_path, capsys, ckpt, monkeypatch):
    monkeypatch.setattr(loading, "MAX_IMAGE_FILE_BYTES", 2**20)
    big = tmp_path / "big.bmp"
    big.write_bytes(b"BM" + b"\x00" * (2**20 + 10))
    status, stdout, stderr = run(capsys, "predict", ckpt, big, "--faces", "crop", "--format", "csv",
                                 "--device", "cpu")
    assert status == 1 and "Traceback" not in stdout + stderr
    assert "file larger than 1 MiB, the limit for one image" in stdout and str(big) in stdout


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_predict_output_that_cannot_be_written(tmp_path, capsys, ckpt, where):
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "results.csv" if where == "under_a_file" else tmp_path
    status, stdout, stderr = run(capsys, "predict", ckpt, good_png(tmp_path / "g.png"), "-o", out,
                                 "--device", "cpu")
    needle = "taken is a file, not a folder" if where == "under_a_file" else "is a folder"
    assert_one_line_error(status, stdout, stderr, "predict", str(out), needle)


# --------------------------------------------------------------------------- texture and show (one image)


TEXTURE_CASES = [
    ("fifo.png", _fifo, "image file is a named pipe, not a regular file"),
    ("zero", _dev_zero, "image file is a character device, not a regular file"),
    ("truncated.jpg", _bytes(jpeg_bytes()[:1500]), "cannot read as an image (Image is incomplete or truncated)"),
    ("liar_20000.jpg", _bytes(lying_jpeg(20000, 20000)), "20000x20000 pixels, over the limit"),
    ("liar_2000.jpg", _bytes(lying_jpeg(2000, 2000)), "too few for that size"),
    ("bomb_png.png", _bytes(png_header_only(20000, 20000)), "400000000 pixels, over the limit"),
]


@pytest.mark.parametrize("name,make,reason", TEXTURE_CASES, ids=[c[0] for c in TEXTURE_CASES])
def test_texture_bad_image(tmp_path, capsys, name, make, reason):
    bad = make(tmp_path / name)
    out = tmp_path / "t.png"
    status, stdout, stderr = run(capsys, "texture", bad, "-o", out)
    assert_one_line_error(status, stdout, stderr, "texture", str(bad), reason)
    assert not out.exists()


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_texture_output_that_cannot_be_written(tmp_path, capsys, where):
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "t.png" if where == "under_a_file" else tmp_path
    status, stdout, stderr = run(capsys, "texture", good_png(tmp_path / "g.png"), "--descriptor", "lbp", "-o", out)
    needle = "taken is a file, not a folder" if where == "under_a_file" else "is a folder"
    assert_one_line_error(status, stdout, stderr, "texture", str(out), needle)


def test_show_fifo_image_and_bad_output(tmp_path, capsys, ckpt):
    bad = replace_with_fifo(tmp_path / "fifo.png")
    status, stdout, stderr = run(capsys, "show", ckpt, bad, "-o", tmp_path / "s.png", "--faces", "crop")
    assert_one_line_error(status, stdout, stderr, "show", f"{bad}: image file is a named pipe")
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "s.png"
    status, stdout, stderr = run(capsys, "show", ckpt, good_png(tmp_path / "g.png"), "-o", out, "--faces", "crop")
    assert_one_line_error(status, stdout, stderr, "show", str(out), "taken is a file, not a folder")


# --------------------------------------------------------------------------- the decoder's checks


def test_honest_small_jpegs_pass_the_size_check():
    """The data-vs-size floor holds for the most compressible JPEGs PIL writes (flat, optimised,
    progressive, grey and colour)."""
    for mode, colour in (("L", 128), ("RGB", (128, 128, 128)), ("RGB", (0, 0, 0))):
        for options in ({"quality": 1}, {"quality": 1, "optimize": True}, {"quality": 1, "progressive": True},
                        {"quality": 1, "optimize": True, "progressive": True, "subsampling": 0}):
            buf = io.BytesIO()
            Image.new(mode, (1000, 1000), colour).save(buf, "JPEG", **options)
            assert loading.decode_image_bytes(buf.getvalue()).shape == (3, 1000, 1000)


def test_a_large_jpeg_without_memory_to_decode_it_is_one_reason(tmp_path, monkeypatch):
    """Large JPEGs go through PIL, whose failed allocation is a MemoryError, not torchvision's
    decoder, where libtorch prints a C++ backtrace to stderr first; the MemoryError is one reason."""
    def no_torchvision(*args, **kwargs):
        raise AssertionError("a large JPEG reached torchvision's decoder")

    def no_memory(self, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(loading, "decode_jpeg", no_torchvision)
    monkeypatch.setattr(loading, "_TORCHVISION_MAX_PIXELS", 32 * 32)
    path = tmp_path / "large.jpg"
    Image.new("L", (40, 40), 90).save(path, "JPEG")
    assert loading.decode_image_file(path).shape == (3, 40, 40)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    with pytest.raises(loading.ImageDecodeError) as err:
        loading.decode_image_file(path)
    assert str(err.value) == f"{path}: unreadable image (not enough memory to decode it)"


def test_in_memory_size_estimate_skips_a_fifo(tmp_path):
    from lssat.data.loading import FaceDataset, FileImages
    from lssat.data.memory import estimate_bytes

    good_png(tmp_path / "a.png")
    replace_with_fifo(tmp_path / "b.png")
    dataset = FaceDataset([Record("b.png", "train", 0), Record("a.png", "train", 1)], FileImages(tmp_path))
    assert estimate_bytes(dataset, np.arange(2), 32, train=True) == 3.0 * 32 * 32 * 2
