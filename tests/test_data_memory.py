"""The in-memory data path (data.in_memory): same batches as the per-item path, batched augmentation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lssat.data.batch_augment import apply_jitter, color_jitter, crop_boxes
from lssat.data.index import IndexHeader, Record, write_index
from lssat.data.loading import SkippedImageWarning
from lssat.errors import ConfigError
from test_datamodule import SIZE, _rgb, _write, collect, deepfake_index, expression_index, make_dm, strict_error

NO_AUGMENT = {"crop_scale": [1, 1], "crop_ratio": [1, 1], "hflip": 0.0, "color_jitter": 0.0}


def mixed_index(root, n=14):
    """Train images of several sizes and aspects (the train store pads them), plus val/test."""
    rng = np.random.default_rng(9)
    shapes = [(30, 26), (24, 24), (40, 33), (18, 22), (26, 30)]
    records = []
    for i in range(n):
        split = "train" if i < n - 4 else ("val" if i % 2 else "test")
        h, w = shapes[i % len(shapes)]
        _write(root, f"{i}.png", _rgb(rng, h, w))
        records.append(Record(path=f"{i}.png", split=split, label=i % 2))
    index = root / "index.jsonl"
    write_index(index, IndexHeader(dataset="t", task="deepfake", classes=["real", "fake"]), records, data_root=root)
    return index


def batches(loader):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        return list(loader)


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, key
                assert torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


@pytest.mark.parametrize("fixture, settings", [
    (expression_index, {}),
    (expression_index, {"augment": {"eval_crop_fraction": 0.8}, "batch_size": 5}),
    (deepfake_index, {"eval_frames_per_video": 3}),
    (mixed_index, {"batch_size": 3}),
])
def test_eval_batches_equal_the_per_item_path(tmp_path, fixture, settings):
    index = fixture(tmp_path)
    per_item, memory = make_dm(index, in_memory=False, **settings), make_dm(index, in_memory=True, **settings)
    assert not per_item.in_memory("val") and memory.in_memory("val") and memory.in_memory("test")
    for split in ("val", "test"):
        loader = getattr(memory, f"{split}_dataloader")()
        first = batches(loader)
        assert_same_batches(batches(getattr(per_item, f"{split}_dataloader")()), first)
        assert_same_batches(first, batches(loader))  # and again from memory, without decoding


@pytest.mark.parametrize("fixture, settings", [
    (expression_index, {}),
    (expression_index, {"balance": True, "drop_last": True, "batch_size": 5}),
    (deepfake_index, {"frames_per_video": 3, "train_fraction": 0.5}),
    (deepfake_index, {"frames_per_video": 2, "frame_sampling": "random"}),
    (mixed_index, {"batch_size": 4}),
])
def test_train_batches_without_augmentation_equal_the_per_item_path(tmp_path, fixture, settings):
    index = fixture(tmp_path)
    settings = {"augment": NO_AUGMENT, **settings}
    per_item, memory = make_dm(index, in_memory=False, **settings), make_dm(index, in_memory=True, **settings)
    assert memory.in_memory("train")
    loaders = per_item.train_dataloader(), memory.train_dataloader()
    for _ in range(2):  # two epochs: fresh draws, the same on both paths
        assert_same_batches(batches(loaders[0]), batches(loaders[1]))


def test_skipped_images_and_strict_mode_in_memory(tmp_path):
    index = expression_index(tmp_path, broken=True)
    dm = make_dm(index, in_memory=True)
    for epoch in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seen = collect(dm.train_dataloader())
        assert sorted(seen["index"]) == list(range(24)) and dm.skipped == 2
        assert len([w for w in caught if w.category is SkippedImageWarning]) == (2 if epoch == 0 else 0)
    assert sorted(p.rsplit("/", 1)[-1] for p in dm.skipped_paths()) == ["missing.jpg", "truncated.jpg"]
    ds = make_dm(index, in_memory=True).memory_batches("train")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        empty = ds.__getitems__([24, 25])  # both unreadable: an empty batch, as the collate gives
    assert empty["image"].shape == (0, 3, SIZE, SIZE) and empty["label"].shape == (0,)
    assert empty["subgroup"] == {"skin_tone": []} and empty["attributes"].shape == (0, 0)
    (tmp_path / "train/missing.jpg").write_bytes((tmp_path / "train/0_0.jpg").read_bytes())
    message = strict_error(make_dm(index, strict=True, in_memory=True))
    assert message.endswith("truncated.jpg: unreadable image (Image is incomplete or truncated)")


def test_flip_rate_is_hflip(tmp_path):
    dm = make_dm(expression_index(tmp_path), in_memory=True, augment={**NO_AUGMENT, "hflip": 0.3})
    ref = make_dm(expression_index(tmp_path), in_memory=True, augment=NO_AUGMENT).memory_batches("train")
    ds = dm.memory_batches("train")
    plain = ref.__getitems__(list(range(24)))["image"]
    flips = 0
    for _ in range(40):
        images = ds.__getitems__(list(range(24)))["image"]
        same = (images == plain).flatten(1).all(1)
        flipped = (images == plain.flip(-1)).flatten(1).all(1)
        assert bool((same | flipped).all())
        flips += int(flipped.sum())
    assert abs(flips / (40 * 24) - 0.3) < 0.05  # 960 draws: 4 standard deviations


def test_crop_boxes_follow_random_resized_crop():
    gen = torch.Generator().manual_seed(0)
    n = 4000
    heights, widths = torch.full((n,), 40), torch.full((n,), 30)
    scale, ratio = (0.6, 1.0), (3 / 4, 4 / 3)
    boxes = crop_boxes(heights, widths, scale, ratio, gen)
    top, left, h, w = boxes.T.double()
    assert bool(((top >= 0) & (left >= 0) & (top + h <= 40) & (left + w <= 30)).all())
    frac = h * w / 1200
    assert frac.min() > 0.6 - 0.05 and frac.max() <= 1.0  # rounding to whole pixels only
    aspect = w / h
    assert aspect.min() > 0.75 - 0.06 and aspect.max() < 4 / 3 + 0.06
    assert len({tuple(b) for b in boxes.tolist()}) > 50  # positions and sizes vary
    # the same distribution as torchvision's own draw
    torch.manual_seed(0)
    rrc = v2.RandomResizedCrop(SIZE, scale=scale, ratio=ratio)
    ref = [rrc.make_params([torch.zeros(3, 40, 30)]) for _ in range(n)]
    ref_frac = np.array([p["height"] * p["width"] / 1200 for p in ref])
    ref_top = np.array([p["top"] for p in ref])
    assert abs(ref_frac.mean() - frac.mean().item()) < 0.01
    assert abs(ref_top.mean() - top.mean().item()) < 0.3
    # scale [1, 1], ratio [1, 1] on a non-square image: the central square, as torchvision falls back
    fixed = crop_boxes(torch.tensor([30, 20]), torch.tensor([26, 33]), (1.0, 1.0), (1.0, 1.0), gen)
    for (t, l, hh, ww), size in zip(fixed.tolist(), [(30, 26), (20, 33)]):
        want = v2.RandomResizedCrop(SIZE, scale=(1, 1), ratio=(1, 1)).make_params([torch.zeros(3, *size)])
        assert (t, l, hh, ww) == (want["top"], want["left"], want["height"], want["width"])


def test_crop_sizes_in_batches_stay_in_scale_range(tmp_path):
    # a gradient image: the crop's extent shows in the values at the output's corners
    dm = make_dm(expression_index(tmp_path), in_memory=True,
                 augment={"crop_scale": [0.5, 0.5], "crop_ratio": [1, 1], "hflip": 0.0, "color_jitter": 0.0})
    ds = dm.memory_batches("train")
    ds.load()
    ds.images = torch.arange(30, dtype=torch.uint8).mul(8).view(1, 1, 30, 1).expand(len(ds.images), 3, 30, 26).clone()
    images = ds.__getitems__(list(range(24)))["image"]
    assert images.shape == (24, 3, SIZE, SIZE)
    span = (images[:, 0, -1, 0].float() - images[:, 0, 0, 0].float()) / 8  # rows covered, about h - 1
    side = math.sqrt(0.5 * 30 * 26)
    assert bool(((span > side - 3) & (span < side + 1)).all())


def test_augmentation_is_seeded_and_its_state_restores(tmp_path):
    index = expression_index(tmp_path)
    runs = [make_dm(index, in_memory=True, seed=s) for s in (5, 5, 6)]
    epochs = [[batches(dm.train_dataloader()) for _ in range(2)] for dm in runs]
    for e in range(2):
        assert_same_batches(epochs[0][e], epochs[1][e])
    assert not torch.equal(epochs[0][0][0]["image"], epochs[2][0][0]["image"])
    assert not torch.equal(torch.cat([b["image"] for b in epochs[0][0]]),
                           torch.cat([b["image"] for b in epochs[0][1]]))  # fresh crops each epoch
    ds = runs[0].memory_batches("train")
    state = ds.state_dict()
    after = ds.__getitems__(list(range(8)))["image"]
    assert not torch.equal(after, ds.__getitems__(list(range(8)))["image"])
    ds.load_state_dict(state)
    assert torch.equal(after, ds.__getitems__(list(range(8)))["image"])
    before = torch.random.get_rng_state()
    batches(runs[1].train_dataloader())
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is left alone


def test_color_jitter_matches_torchvision():
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 3, 20, 20), dtype=torch.uint8, generator=gen)
    ops = ["brightness", "contrast", "saturation", "hue"]
    order = torch.argsort(torch.rand(8, 4, generator=gen), dim=1)
    factor = {op: 0.6 + 0.8 * torch.rand(8, generator=gen) for op in ops[:3]}
    factor["hue"] = 0.2 * torch.rand(8, generator=gen) - 0.1
    kernels = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast,
               "saturation": TF.adjust_saturation, "hue": TF.adjust_hue}
    out = apply_jitter(images, ops, order, factor)
    for i in range(8):
        ref = images[i]
        for j in order[i].tolist():
            ref = kernels[ops[j]](ref, float(factor[ops[j]][i]))
        diff = (out[i].int() - ref.int()).abs()
        assert diff.max() <= 2 and (diff > 0).float().mean() < 0.02  # float rounding only
    jittered = color_jitter(images, 0.4, 0.0, gen)
    assert jittered.dtype == torch.uint8 and jittered.shape == images.shape
    ratios = jittered.float().mean(dim=(1, 2, 3)) / images.float().mean(dim=(1, 2, 3))
    assert len({round(r, 3) for r in ratios.tolist()}) == 8  # per-sample factors
    assert torch.equal(color_jitter(images, 0.0, 0.0, gen), images)


def test_auto_mode_and_settings(tmp_path):
    index = expression_index(tmp_path)
    dm = make_dm(index)
    assert all(dm.in_memory(s) for s in ("train", "val", "test"))  # small images: auto is on
    assert not any(make_dm(index, in_memory=False).in_memory(s) for s in ("train", "val", "test"))
    assert not make_dm(index, image_size=160).in_memory("val")
    assert make_dm(index, image_size=160, in_memory=True).in_memory("val")
    tiny = make_dm(index, in_memory_budget_mb=1)  # 36 images of 30x26: fits in 1 MiB
    assert tiny.in_memory("train")
    big = mixed_index(tmp_path / "big")
    assert make_dm(big, image_size=128).in_memory("train")
    rand = make_dm(index, augment={"randaugment_magnitude": 9})
    assert not rand.in_memory("train") and rand.in_memory("val")  # no batched RandAugment: per-item
    forced = make_dm(index, in_memory=True, augment={"randaugment_magnitude": 9, "random_erasing": 0.5})
    assert forced.in_memory("train")
    one = batches(forced.train_dataloader())
    again = batches(make_dm(index, in_memory=True, augment={"randaugment_magnitude": 9,
                                                            "random_erasing": 0.5}).train_dataloader())
    assert_same_batches(one, again)
    assert one[0]["image"].shape == (8, 3, SIZE, SIZE) and one[0]["image"].dtype == torch.uint8
    assert "in memory: train, val, test" in dm.summary()
    for bad, message in (({"in_memory": "yes"}, "data.in_memory"), ({"in_memory_budget_mb": 0}, "in_memory_budget")):
        with pytest.raises(ConfigError, match=message):
            make_dm(index, **bad)


def test_auto_mode_respects_the_budget(tmp_path):
    rng = np.random.default_rng(3)
    records = []
    for i in range(6):
        _write(tmp_path, f"{i}.png", _rgb(rng, 300, 300))
        records.append(Record(path=f"{i}.png", split="train" if i < 4 else "val", label=i % 2))
    index = tmp_path / "index.jsonl"
    write_index(index, IndexHeader(dataset="t", task="deepfake"), records, data_root=tmp_path)
    assert not make_dm(index, in_memory_budget_mb=1).in_memory("train")  # 4 x 270 KB decoded > 1 MiB
    dm = make_dm(index, in_memory_budget_mb=2)
    assert dm.in_memory("train")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, SIZE, SIZE)
    assert dm.memory_batches("train").images.shape == (4, 3, 300, 300)
