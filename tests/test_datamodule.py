"""DataModule, decoding and transforms on tiny index fixtures built here (no downloads)."""

from __future__ import annotations

import struct
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lssat.data.datamodule import DataConfig, FaceDataModule, SyntheticConfig
from lssat.data.index import IndexHeader, Record, write_index
from lssat.data.loading import SkippedImageWarning, decode_image_bytes, decode_image_file
from lssat.data.sampling import cap_frames, fraction_subset
from lssat.data.transforms import AugmentConfig, eval_transform, train_transform
from lssat.errors import ConfigError, DataError

SIZE = 24


def _rgb(rng: np.random.Generator, h: int = 30, w: int = 26) -> np.ndarray:
    """A smooth colour image (compresses like a photo, unlike noise)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 256, 3)
    img = np.stack([(base[c] + 5 * xx * (c + 1) + 3 * yy) % 256 for c in range(3)], axis=-1)
    return img.astype(np.uint8)


def _png16(rgb: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one): signature, IHDR, IDAT, IEND."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _write(root: Path, rel: str, array: np.ndarray, **save) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save)


def expression_index(root: Path, counts=(18, 4, 2), n_val=6, n_test=6, broken=False) -> Path:
    """3-class expression index: imbalanced train, balanced val/test; optional broken files."""
    rng = np.random.default_rng(0)
    records = []
    for split, per_class in (("train", counts), ("val", (n_val // 3,) * 3), ("test", (n_test // 3,) * 3)):
        for label, n in enumerate(per_class):
            for i in range(n):
                rel = f"{split}/{label}_{i}.jpg"
                _write(root, rel, _rgb(rng), quality=90)
                records.append(Record(path=rel, split=split, label=label,
                                      subgroup={"skin_tone": "dark" if i % 3 == 0 else "light"}))
    if broken:
        data = (root / records[0].path).read_bytes()
        (root / "train/truncated.jpg").write_bytes(data[: len(data) // 2])
        records.append(Record(path="train/truncated.jpg", split="train", label=0))
        records.append(Record(path="train/missing.jpg", split="train", label=1))
    index = root / "index.jsonl"
    write_index(index, IndexHeader(dataset="t", task="expression", classes=["n", "h", "s"], subgroups=["skin_tone"]),
                records, data_root=root)
    return index


def deepfake_index(root: Path, videos_per_class=4, frames=10) -> Path:
    """Deepfake frames: real and fake videos of `frames` frames each, all in train, 1 of each in val."""
    rng = np.random.default_rng(1)
    records = []
    for label, method in ((0, "real"), (1, "Deepfakes")):
        for v in range(videos_per_class + 1):
            split = "val" if v == videos_per_class else "train"
            vid = f"videos/{method}/{v:03d}.mp4"
            for f in range(frames):
                rel = f"frames/{method}/{v:03d}/{f:03d}.png"
                _write(root, rel, _rgb(rng, 20, 20))
                records.append(Record(path=rel, split=split, label=label, method=method, video_id=vid, frame=f))
    index = root / "index.jsonl"
    write_index(index, IndexHeader(dataset="t", task="deepfake", classes=["real", "fake"]), records, data_root=root)
    return index


def make_dm(index: Path, **overrides) -> FaceDataModule:
    settings = {"index": str(index), "image_size": SIZE, "batch_size": 8, "num_workers": 0}
    settings.update(overrides)
    dm = FaceDataModule(DataConfig.from_dict(settings))
    dm.setup()
    return dm


def collect(loader) -> dict[str, list]:
    out: dict[str, list] = {"index": [], "label": [], "path": [], "image": []}
    for batch in loader:
        out["index"] += batch["index"].tolist()
        out["label"] += batch["label"].tolist()
        out["path"] += batch["path"]
        out["image"].append(batch["image"])
    return out


def strict_error(dm: FaceDataModule) -> str:
    """The DataError message of a strict training epoch.

    Caught here rather than kept by pytest.raises: a kept traceback holds the loader's worker
    iterator in a reference cycle, and torch's worker shutdown from the cyclic collector waits
    out its join timeouts.
    """
    try:
        collect(dm.train_dataloader())
    except DataError as err:
        return str(err)
    raise AssertionError("strict mode raised no DataError")


# ------------------------------------------------------------------------------------ decoding


def test_decoding_converts_modes_to_8bit_rgb(tmp_path):
    gray = np.arange(20 * 16, dtype=np.uint8).reshape(20, 16)
    _write(tmp_path, "gray.png", gray)
    x = decode_image_file(tmp_path / "gray.png")
    assert x.dtype == torch.uint8 and x.shape == (3, 20, 16)
    assert torch.equal(x[0], torch.from_numpy(gray)) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])

    g16 = (np.arange(20 * 16, dtype=np.uint16).reshape(20, 16) * 200)
    _write(tmp_path, "g16.png", g16)
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = decode_image_file(tmp_path / "g16.png")
    assert x.dtype == torch.uint8 and x.shape == (3, 20, 16)
    assert torch.equal(x[1], torch.from_numpy((g16 >> 8).astype(np.uint8)))  # scaled, not clipped

    rgb16 = np.random.default_rng(7).integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    (tmp_path / "rgb16.png").write_bytes(_png16(rgb16))
    x = decode_image_file(tmp_path / "rgb16.png")
    assert torch.equal(x, torch.from_numpy((rgb16 >> 8).astype(np.uint8)).permute(2, 0, 1))

    rgba = np.dstack([_rgb(np.random.default_rng(2), 20, 16), np.full((20, 16), 77, np.uint8)])
    _write(tmp_path, "rgba.png", rgba)
    x = decode_image_file(tmp_path / "rgba.png")
    assert torch.equal(x, torch.from_numpy(rgba[..., :3]).permute(2, 0, 1))

    palette = Image.fromarray(_rgb(np.random.default_rng(3), 20, 16)).quantize(8)
    palette.save(tmp_path / "pal.png")
    x = decode_image_file(tmp_path / "pal.png")
    assert torch.equal(x, torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1))

    _write(tmp_path, "gray.jpg", gray, quality=95)  # grayscale JPEG through torchvision
    x = decode_image_file(tmp_path / "gray.jpg")
    assert x.shape == (3, 20, 16) and torch.equal(x[0], x[2])
    assert (x[0].int() - torch.from_numpy(gray).int()).abs().float().mean() < 3


def test_decoding_jpeg_matches_pil_and_rejects_bad_data(tmp_path):
    img = _rgb(np.random.default_rng(4))
    _write(tmp_path, "a.jpg", img, quality=90)
    ours = decode_image_file(tmp_path / "a.jpg").int()
    ref = torch.from_numpy(np.array(Image.open(tmp_path / "a.jpg").convert("RGB"))).permute(2, 0, 1).int()
    assert ours.shape == ref.shape and (ours - ref).abs().max() <= 2  # both libjpeg-turbo; IDCT may differ by 1-2
    data = (tmp_path / "a.jpg").read_bytes()
    with pytest.raises(DataError, match="cut.jpg: unreadable image"):
        decode_image_bytes(data[: len(data) // 2], "cut.jpg")
    with pytest.raises(DataError, match="junk.png: unreadable image"):
        decode_image_bytes(b"not an image at all", "junk.png")
    with pytest.raises(DataError, match="nothere.jpg: image file not found"):
        decode_image_file(tmp_path / "nothere.jpg")


# ------------------------------------------------------------------------------ batches


def test_batch_schema_shapes_and_ranges(tmp_path):
    dm = make_dm(expression_index(tmp_path))
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, SIZE, SIZE) and batch["image"].dtype == torch.uint8
    assert batch["image"].float().std() > 1  # real content, not a constant fill
    assert batch["label"].dtype == torch.long and set(batch["label"].tolist()) <= {0, 1, 2}
    assert batch["attributes"].shape == (8, 0)
    assert batch["frame"].tolist() == [-1] * 8 and batch["video_id"] == [""] * 8 and batch["method"] == [""] * 8
    assert set(batch["subgroup"]) == {"skin_tone"} and set(batch["subgroup"]["skin_tone"]) <= {"dark", "light"}
    train = dm.records("train")
    for i, path, label, tone in zip(batch["index"].tolist(), batch["path"], batch["label"].tolist(),
                                    batch["subgroup"]["skin_tone"]):
        assert train[i].path == path and train[i].label == label and train[i].subgroup["skin_tone"] == tone
    assert dm.classes == ["n", "h", "s"] and dm.task == "expression"


def test_eval_is_deterministic_and_train_augments(tmp_path):
    dm = make_dm(expression_index(tmp_path), batch_size=4)
    first, second = collect(dm.val_dataloader()), collect(dm.val_dataloader())
    assert first["index"] == list(range(6))  # in record order, every record once
    assert torch.equal(torch.cat(first["image"]), torch.cat(second["image"]))
    # the eval image is the resized file; the train image of the same record varies with the crop
    x = decode_image_file(tmp_path / dm.records("val")[0].path)
    assert torch.equal(torch.cat(first["image"])[0], eval_transform(SIZE)(x))
    ds = dm.dataset("train")
    torch.manual_seed(0)
    crops = torch.stack([ds[0]["image"] for _ in range(6)])
    assert crops.shape == (6, 3, SIZE, SIZE) and crops.dtype == torch.uint8
    assert len({c.numpy().tobytes() for c in crops}) > 1


def test_transform_options_keep_uint8(tmp_path):
    x = torch.from_numpy(_rgb(np.random.default_rng(5), 40, 30)).permute(2, 0, 1).contiguous()
    aug = AugmentConfig(randaugment_magnitude=9, random_erasing=1.0, hue=0.1)
    torch.manual_seed(0)
    y = train_transform(32, aug)(x)
    assert y.shape == (3, 32, 32) and y.dtype == torch.uint8
    assert (y == 0).all(dim=0).sum() > 0  # erasing with p=1 blanked a rectangle
    z = eval_transform(32, AugmentConfig(eval_crop_fraction=0.5))(x)
    assert z.shape == (3, 32, 32) and z.dtype == torch.uint8


def test_splits_are_separate(tmp_path):
    dm = make_dm(expression_index(tmp_path))
    seen = {split: set(collect(getattr(dm, f"{split}_dataloader")())["path"]) for split in ("train", "val", "test")}
    for split, paths in seen.items():
        assert paths == {r.path for r in dm.records(split)}
        assert all(p.startswith(f"{split}/") for p in paths)
    assert len(seen["train"]) == 24 and len(seen["val"]) == 6 and len(seen["test"]) == 6


def test_attribute_batches(tmp_path):
    rng = np.random.default_rng(6)
    records = []
    for i in range(10):
        _write(tmp_path, f"{i}.png", _rgb(rng, 18, 18))
        records.append(Record(path=f"{i}.png", split="train" if i < 7 else "test", attributes=[i % 2, 1, 0]))
    index = tmp_path / "index.jsonl"
    write_index(index, IndexHeader(dataset="t", task="attributes", attribute_names=["a", "b", "c"]), records,
                data_root=tmp_path)
    dm = make_dm(index, batch_size=4)
    batch = next(iter(dm.test_dataloader()))
    assert batch["attributes"].shape == (3, 3) and batch["attributes"].dtype == torch.long
    assert batch["attributes"].tolist() == [[1, 1, 0], [0, 1, 0], [1, 1, 0]]
    assert batch["label"].tolist() == [-1, -1, -1]
    assert dm.classes == ["a", "b", "c"]
    assert len(collect(dm.val_dataloader())["index"]) == 0  # an empty split gives no batches
    with pytest.raises(ConfigError, match="data.balance"):
        make_dm(index, balance=True)


# ----------------------------------------------------------------------- skipped images


def test_broken_images_are_skipped_and_counted_once(tmp_path):
    dm = make_dm(expression_index(tmp_path, broken=True))
    assert len(dm.records("train")) == 26
    for epoch in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seen = collect(dm.train_dataloader())
        assert len(seen["index"]) == 24 and len(set(seen["index"])) == 24
        assert dm.skipped == 2
        # warned once per file, naming it: in the first epoch only
        warned = sorted(str(w.message) for w in caught if w.category is SkippedImageWarning)
        assert len(warned) == (2 if epoch == 0 else 0)
    assert sorted(Path(p).name for p in dm.skipped_paths()) == ["missing.jpg", "truncated.jpg"]
    assert dm.summary().endswith("skipped images: 2")


def test_warning_names_the_path(tmp_path):
    dm = make_dm(expression_index(tmp_path, broken=True))
    with pytest.warns(SkippedImageWarning) as caught:
        collect(dm.train_dataloader())
    messages = sorted(str(w.message) for w in caught if w.category is SkippedImageWarning)
    assert len(messages) == 2
    assert "missing.jpg: image file not found" in messages[0]
    assert "truncated.jpg: unreadable image" in messages[1]


def test_all_skipped_batch_is_empty_not_an_error(tmp_path):
    dm = make_dm(expression_index(tmp_path, broken=True))
    ds, collate = dm.dataset("train"), dm._collate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        batch = collate([ds[24], ds[25]])
    assert batch["image"].shape == (0, 3, SIZE, SIZE) and batch["label"].shape == (0,)
    assert batch["path"] == [] and batch["subgroup"] == {"skin_tone": []}


def test_strict_mode_raises_naming_the_path(tmp_path):
    index = expression_index(tmp_path, broken=True)
    with pytest.raises(DataError, match=r"missing\.jpg: image file not found"):
        make_dm(index, strict=True)  # checked up front, in the main process
    (tmp_path / "train/missing.jpg").write_bytes((tmp_path / "train/0_0.jpg").read_bytes())
    message = strict_error(make_dm(index, strict=True))
    assert message.endswith("truncated.jpg: unreadable image (Image is incomplete or truncated)")
    assert "\n" not in message


def test_two_workers_skip_count_and_strict_message(tmp_path):
    index = expression_index(tmp_path, broken=True)
    dm = make_dm(index, num_workers=2, batch_size=4, in_memory=False)  # the per-item path with workers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        loader = dm.train_dataloader()
        assert loader.persistent_workers and loader.num_workers == 2
        seen = collect(loader)
    assert sorted(seen["index"]) == list(range(24))  # every readable record once, across both workers
    assert dm.skipped == 2  # flags set inside worker processes are seen here
    (tmp_path / "train/missing.jpg").write_bytes((tmp_path / "train/0_0.jpg").read_bytes())
    message = strict_error(make_dm(index, num_workers=2, batch_size=4, strict=True, in_memory=False))
    assert message.endswith("truncated.jpg: unreadable image (Image is incomplete or truncated)")
    assert "\n" not in message


# ---------------------------------------------------------------------------- sampling


def test_train_fraction_size_stratified_and_seeded(tmp_path):
    index = expression_index(tmp_path, counts=(30, 12, 6))
    dm = make_dm(index, train_fraction=0.5, seed=3)
    positions = dm.train_positions
    assert len(positions) == 24
    labels = Counter(dm.records("train")[p].label for p in positions)
    assert labels == {0: 15, 1: 6, 2: 3}
    assert np.array_equal(positions, make_dm(index, train_fraction=0.5, seed=3).train_positions)
    assert not np.array_equal(positions, make_dm(index, train_fraction=0.5, seed=4).train_positions)
    seen = collect(dm.train_dataloader())["index"]
    assert sorted(seen) == sorted(positions.tolist())
    # exact totals when quotas are fractional: 0.3 x 48 = 14.4 -> 14 (9 + 3.6 + 1.8 by largest remainder)
    assert len(fraction_subset([0] * 30 + [1] * 12 + [2] * 6, list(range(48)), 0.3, 0)) == 14
    assert len(fraction_subset([None] * 10, list(range(10)), 0.01, 0)) == 1  # never empty


def test_train_fraction_keeps_whole_videos(tmp_path):
    dm = make_dm(deepfake_index(tmp_path, videos_per_class=4, frames=5), train_fraction=0.5)
    train = dm.records("train")
    kept = Counter(train[p].video_id for p in dm.train_positions)
    assert len(kept) == 4 and set(kept.values()) == {5}
    assert Counter(train[p].label for p in dm.train_positions) == {0: 10, 1: 10}


def test_balancing_evens_out_sampled_labels(tmp_path):
    index = expression_index(tmp_path)  # 18 / 4 / 2
    plain, balanced = make_dm(index).train_sampler(), make_dm(index, balance=True).train_sampler()
    draws = {name: Counter(plain_or_bal.labels[p] for e in range(50) for p in plain_or_bal.epoch_positions(e))
             for name, plain_or_bal in (("plain", plain), ("balanced", balanced))}
    assert draws["plain"] == {0: 900, 1: 200, 2: 100}
    total = sum(draws["balanced"].values())
    assert total == 1200
    for label in (0, 1, 2):
        assert abs(draws["balanced"][label] / total - 1 / 3) < 0.05
    dm = make_dm(index, balance=True)
    seen = collect(dm.train_dataloader())
    assert len(seen["index"]) == 24 and Counter(seen["label"])[0] < 18  # the loader uses the balanced draws


def test_frames_per_video_cap(tmp_path):
    index = deepfake_index(tmp_path, videos_per_class=3, frames=10)
    dm = make_dm(index, frames_per_video=3)
    train = dm.records("train")
    epochs = [collect(dm.train_dataloader())["index"] for _ in range(2)]
    for seen in epochs:
        per_video = Counter(train[i].video_id for i in seen)
        assert len(per_video) == 6 and set(per_video.values()) == {3}
        assert {train[i].frame for i in seen} == {0, 4, 9}  # evenly spaced in 0..9 (4.5 rounds to 4)
    assert sorted(epochs[0]) == sorted(epochs[1])
    rand = make_dm(index, frames_per_video=3, frame_sampling="random").train_sampler()
    picks = [rand.epoch_positions(e) for e in range(4)]
    for p in picks:
        assert len(p) == 18 and set(Counter(train[i].video_id for i in p.tolist()).values()) == {3}
    assert len({tuple(sorted(p.tolist())) for p in picks}) > 1  # a fresh draw per epoch
    assert len(rand) == 18
    val = collect(make_dm(index, eval_frames_per_video=2).val_dataloader())
    assert len(val["index"]) == 4 and {dm.records("val")[i].frame for i in val["index"]} == {0, 9}
    batch = next(iter(dm.val_dataloader()))
    assert batch["video_id"][0] == "videos/real/003.mp4" and batch["method"][0] == "real"
    assert batch["frame"].tolist()[:3] == [0, 1, 2]


def test_cap_frames_orders_by_frame_not_position():
    groups = ["v"] * 5
    frames = [40, 0, 30, 10, 20]
    kept = cap_frames(np.arange(5), groups, frames, 2, "even")
    assert sorted(frames[i] for i in kept) == [0, 40]


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize("settings, message", [
    ({}, "exactly one source"),
    ({"index": "i.jsonl", "synthetic": {"task": "expression"}}, "exactly one source"),
    ({"index": "i.jsonl", "image_size": 0}, "data.image_size"),
    ({"index": "i.jsonl", "batch_size": 2.5}, "data.batch_size"),
    ({"index": "i.jsonl", "num_workers": -1}, "data.num_workers"),
    ({"index": "i.jsonl", "train_fraction": 0}, "data.train_fraction"),
    ({"index": "i.jsonl", "train_fraction": 1.5}, "data.train_fraction"),
    ({"index": "i.jsonl", "frames_per_video": 0}, "data.frames_per_video"),
    ({"index": "i.jsonl", "frame_sampling": "middle"}, "data.frame_sampling"),
    ({"index": "i.jsonl", "balance": "yes"}, "data.balance"),
    ({"index": "i.jsonl", "batchsize": 8}, "unknown config key 'data.batchsize'"),
    ({"index": "i.jsonl", "augment": {"crop_scale": [0.9, 0.5]}}, "data.augment.crop_scale"),
    ({"index": "i.jsonl", "augment": {"crop_scale": 0.5}}, "data.augment.crop_scale"),
    ({"index": "i.jsonl", "augment": {"randaugment_magnitude": 40}}, "data.augment.randaugment_magnitude"),
    ({"index": "i.jsonl", "augment": {"random_erasing": 2}}, "data.augment.random_erasing"),
    ({"index": "i.jsonl", "augment": {"flip": 0.5}}, "unknown config key 'data.augment.flip'"),
    ({"synthetic": {"task": "age"}}, "data.synthetic.task"),
    ({"synthetic": {"task": "expression", "train": 0}}, "data.synthetic.train"),
    ({"synthetic": {"task": "expression", "n": 5}}, "unknown config key 'data.synthetic.n'"),
])
def test_config_validation(settings, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig.from_dict(settings)


def test_config_defaults_and_round_trip():
    cfg = DataConfig(index="i.jsonl")
    assert cfg.image_size == 224 and cfg.augment.crop_scale == (0.6, 1.0) and cfg.augment.hflip == 0.5
    assert 1 <= cfg.workers <= 2
    again = DataConfig.from_dict(cfg.to_dict())
    assert again == cfg
    synth = DataConfig.from_dict({"synthetic": {"task": "deepfake", "train": 10}})
    assert isinstance(synth.synthetic, SyntheticConfig) and synth.synthetic.train == 10


def test_missing_index_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="index file not found"):
        make_dm(tmp_path / "nope.jsonl")


def test_video_index_asks_for_preprocessing(tmp_path):
    records = [Record(path=f"videos/{i}.mp4", split="train", label=i % 2, method="real" if i % 2 == 0 else "Deepfakes",
                      video_id=f"videos/{i}.mp4") for i in range(4)]
    index = tmp_path / "videos.jsonl"
    write_index(index, IndexHeader(dataset="t", task="deepfake"), records, data_root=tmp_path)
    with pytest.raises(DataError, match=r"4 records are videos .*lssat preprocess"):
        make_dm(index)


# ---------------------------------------------------------------------------- synthetic


def test_synthetic_source_gives_the_same_batches_as_records():
    synthetic = pytest.importorskip("lssat.data.synthetic")
    if not hasattr(synthetic, "SyntheticFaces"):
        pytest.skip("lssat.data.synthetic has no SyntheticFaces yet")
    dm = FaceDataModule({"synthetic": {"task": "expression", "train": 12, "val": 4, "test": 4, "size": 32},
                         "image_size": SIZE, "batch_size": 4, "num_workers": 0})
    dm.setup()
    assert len(dm.records("train")) == 12 and dm.task == "expression" and len(dm.classes) == 8
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 3, SIZE, SIZE) and batch["image"].dtype == torch.uint8
    assert batch["label"].tolist() == [r.label for r in dm.records("val")]
    again = next(iter(dm.val_dataloader()))
    assert torch.equal(batch["image"], again["image"])  # rendered deterministically
    assert set(batch["path"]).isdisjoint({r.path for r in dm.records("train")})


# ---------------------------------------------------------------------------- lightning


def test_lightning_trainer_drives_epochs_and_validation(tmp_path):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 3)
            self.train_seen: list[list[int]] = []
            self.val_seen: list[int] = []

        def on_train_epoch_start(self):
            self.train_seen.append([])

        def training_step(self, batch, _):
            assert batch["image"].dtype == torch.uint8
            self.train_seen[-1] += batch["index"].tolist()
            x = batch["image"].float().mean(dim=(2, 3)) / 255
            return torch.nn.functional.cross_entropy(self.layer(x), batch["label"])

        def validation_step(self, batch, _):
            self.val_seen.extend(batch["index"].tolist())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = make_dm(expression_index(tmp_path / "data"), frames_per_video=None, batch_size=6)
    probe = Probe()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about worker counts
        trainer.fit(probe, datamodule=dm)
    assert [sorted(e) for e in probe.train_seen] == [list(range(24))] * 2
    assert probe.train_seen[0] != probe.train_seen[1]  # a fresh shuffle per epoch
    assert sorted(probe.val_seen) == sorted(list(range(6)) * 2)


def test_synthetic_deepfake_clips_batched_render_and_frame_cap():
    synthetic = pytest.importorskip("lssat.data.synthetic")
    if not hasattr(synthetic, "SyntheticFaces"):
        pytest.skip("lssat.data.synthetic has no SyntheticFaces yet")
    dm = FaceDataModule({"synthetic": {"task": "deepfake", "train": 32, "val": 16, "test": 16, "size": 32},
                         "image_size": SIZE, "batch_size": 8, "num_workers": 0, "frames_per_video": 2})
    dm.setup()
    train = dm.records("train")
    assert all(r.video_id and r.frame is not None for r in train)
    videos = {r.video_id for r in train}
    ds = dm.dataset("val")
    batched = ds.__getitems__([0, 3, 5])  # one vectorised render, as the DataLoader fetches
    single = [ds[i] for i in (0, 3, 5)]
    for a, b in zip(batched, single):
        assert a["index"] == b["index"] and torch.equal(a["image"], b["image"])
    seen = collect(dm.train_dataloader())["index"]
    assert len(seen) == 2 * len(videos)
    assert set(Counter(train[i].video_id for i in seen).values()) == {2}
    batch = next(iter(dm.test_dataloader()))
    assert set(batch["method"]) <= {"real", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"}
    assert batch["subgroup"]["skin_tone"][0] in ("light", "dark")
    with pytest.raises(ConfigError, match="data.synthetic.options"):
        FaceDataModule({"synthetic": {"task": "deepfake", "options": {"layout": "hwc"}}}).setup()
