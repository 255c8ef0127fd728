"""Clip-level models (issue 14): tube masking, inflation, per-tubelet targets, clip data, clip
checkpoints predicting a video through `lssat.load`."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import lssat
from lssat.errors import ConfigError
from lssat.models.clip import ClipOptions, ClipVitAdapter, running_cell_masking, tube_masking
from lssat.models.lssat import LSSATModel

TINY = {"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}


def test_tube_mask_is_the_same_through_time_and_keeps_the_right_count():
    steps, grid = 3, (4, 4)
    pm = tube_masking(5, steps, 16, 0.75, generator=torch.Generator().manual_seed(0))
    mask = pm.mask.reshape(5, steps, 16)
    assert torch.equal(mask[:, 0], mask[:, 1]) and torch.equal(mask[:, 0], mask[:, 2])
    assert (mask[:, 0] == 0).sum(dim=1).tolist() == [4] * 5  # int(16 * 0.25) visible per step
    assert pm.keep.shape == (5, steps * 4)
    # keep, mask and restore agree: the visible tokens are the kept ones, un-shuffling is a permutation
    assert torch.all(pm.mask.gather(1, pm.keep) == 0)
    assert torch.equal(torch.sort(pm.restore, dim=1).values, torch.arange(48).expand(5, -1))
    # different clips get different masks
    assert not torch.equal(mask[0, 0], mask[1, 0]) or not torch.equal(mask[1, 0], mask[2, 0])
    # running cell: one visible place per 2x2 cell at ratio 0.75..0.9, moving round the cell each step
    rc = running_cell_masking(2, steps, grid, 0.9, generator=torch.Generator().manual_seed(1))
    cells = rc.mask.reshape(2, steps, 2, 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(2, steps, 4, 4)
    assert torch.all((cells == 0).sum(-1) == 1)
    assert not torch.equal(cells[:, 0], cells[:, 1])
    assert torch.all(rc.mask.gather(1, rc.keep) == 0)


def test_inflated_clip_model_with_one_frame_gives_the_image_models_features():
    from lssat.models.backbones import create_backbone

    torch.manual_seed(0)
    image = create_backbone("vit_tiny_patch16_224", 32, **TINY).eval()
    clip = ClipVitAdapter(copy.deepcopy(image), ClipOptions(frames=1, tubelet=1)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = image.encode(image.embed(x))
        got = clip.encode(clip.embed(x.unsqueeze(1)))
        assert torch.allclose(got, want, atol=1e-6)
        assert torch.allclose(clip.pool(got), image.pool(want), atol=1e-6)
        # a static clip of 2 frames through 2-frame tubelets embeds as its frame (kernel / tubelet)
        still = ClipVitAdapter(copy.deepcopy(image), ClipOptions(frames=2, tubelet=2)).eval()
        tokens = still.embed(x.unsqueeze(1).expand(-1, 2, -1, -1, -1))
        assert torch.allclose(tokens, image.embed(x), atol=1e-5)
    # MAE's fixed 2-D table (init mae) inflates to a fixed space-time table: tubelet steps differ
    fixed = LSSATModel("clip_vit_tiny_patch16_224", 1, "lssat-ldp", 32, init="mae",
                       backbone_kwargs={**TINY, "clip": {"frames": 4, "tubelet": 2}}).backbone.model.pos_embed
    assert not fixed.requires_grad and not torch.allclose(fixed[0, 1:17], fixed[0, 17:33])


def test_per_tubelet_ldp_targets_are_the_per_frame_ldp_of_each_frame():
    from lssat import texture
    from lssat.texture.targets import encode_targets, ldp_code_space

    model = LSSATModel("clip_vit_tiny_patch16_224", 1, "lssat-ldp", 16,
                       backbone_kwargs={**TINY, "clip": {"frames": 4, "tubelet": 2}})
    assert type(model).__name__ == "ClipModel"
    clips = torch.randint(0, 256, (2, 4, 3, 16, 16), dtype=torch.uint8)
    targets = model.reconstruction_targets(model.prepare(clips))["ldp"]
    n, px = 4, 8 * 8  # 2x2 patches of 8x8 pixels
    assert targets.shape == (2, 2 * n, 2 * px)
    space = ldp_code_space(model.recipe.texture.ldp_k)
    for frame in range(4):
        codes = texture.ldp(clips[:, frame].float(), k=model.recipe.texture.ldp_k)
        want = encode_targets(codes, space, model.recipe.target_encoding, 8)  # (2, n, px)
        step, within = divmod(frame, 2)
        got = targets[:, step * n:(step + 1) * n, within * px:(within + 1) * px]
        assert torch.equal(got, want)
    # one training step of every recipe with a clip form runs, with the tube mask
    out = model.training_losses(clips, lambda logits, y: logits.mean() * 0, None,
                                generator=torch.Generator().manual_seed(0))
    assert out["mask"].shape == (2, 2 * n) and torch.isfinite(out["loss"])
    with pytest.raises(ConfigError, match="no clip form"):
        LSSATModel("clip_vit_tiny_patch16_224", 1, "hmtl-puzzle", 16, backbone_kwargs=TINY)


def test_clip_datamodule_draws_one_augmentation_per_clip():
    from lssat.data.datamodule import FaceDataModule

    dm = FaceDataModule({"synthetic": {"task": "deepfake", "train": 16, "val": 8, "test": 8}, "image_size": 16,
                         "batch_size": 4, "num_workers": 0, "clip": {"frames": 3, "stride": 1, "eval_clips": 2},
                         "augment": {"crop_scale": [0.3, 1.0], "hflip": 0.5, "color_jitter": 0.4}})
    dataset = dm.clip_dataset("train")
    # every frame of a video is the same picture, so only the augmentation could tell frames apart
    pictures = {}

    def still(record, position):
        g = torch.Generator().manual_seed(hash(record.video_id) % 1000)
        return pictures.setdefault(record.video_id, torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8,
                                                                  generator=g))

    dataset.frames.images = still
    dataset.cache = None
    batches = list(dm.train_dataloader())
    images = torch.cat([b["image"] for b in batches])
    assert images.shape == (2, 3, 3, 16, 16) and images.dtype == torch.uint8  # 2 videos of 8 frames
    for clip in images:
        assert torch.equal(clip[0], clip[1]) and torch.equal(clip[0], clip[2])
    resized = torch.nn.functional.interpolate(next(iter(pictures.values())).float()[None], size=16)
    assert not torch.equal(images[0, 0].float(), resized[0])  # augmented at all
    # evaluation: evenly spaced clips per video, first and last start, frames in order
    val = next(iter(dm.val_dataloader()))
    assert val["frames"].tolist() == [[0, 1, 2], [5, 6, 7]]


def test_clip_run_checkpoint_loads_and_predicts_a_video(tmp_path):
    from lssat.cli import main
    from lssat.data.synthetic import generate, write_clip_video

    out = tmp_path / "runs"
    status = main(["train", "-c", "smoke", "task.kind=deepfake", "data.synthetic.task=deepfake",
                   "data.synthetic.train=16", "data.synthetic.val=16", "data.synthetic.test=16",
                   "model.backbone=clip_vit_tiny_patch16_224",
                   "model.kwargs={patch_size: 8, depth: 1, embed_dim: 32, num_heads: 2, clip: {frames: 2, tubelet: 2}}",
                   "data.clip={frames: 2, eval_clips: 3}", "data.image_size=16", "trainer.progress=false",
                   "-o", str(out)])
    assert status == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    record = json.loads((folder / "run_record.json").read_text())
    test = record["metrics"]["test"]
    assert {"clip_auc", "video_auc"} <= set(test)
    video = tmp_path / "clip.mp4"
    write_clip_video(video, generate("deepfake", 8, size=32, seed=3).images)
    predictor = lssat.load(folder, device="cpu", quiet=True)  # a synthetic-trained model, on purpose
    result = predictor.predict(video, faces="crop")
    assert result.ok and result.frames_scored == 8
    assert result.frame_scores.shape == (3, 1)  # 3 evaluation clips of the 8 crops
    assert result.prediction.fake_probability == pytest.approx(float(result.frame_scores.mean()), abs=1e-6)


def test_clip_settings_must_agree():
    from lssat.cli import main

    code = main(["train", "-c", "smoke", "model.backbone=clip_vit_tiny_patch16_224", "data.clip={frames: 4}",
                 "trainer.progress=false", "-o", "/nonexistent-never-written"])
    assert code == 2
    with pytest.raises(ConfigError, match="model.kwargs.clip.frames"):
        ClipOptions.from_value({"frames": 3, "tubelet": 2})
    with pytest.raises(ConfigError, match="data.clip"):
        from lssat.models.clip import check_clip_config

        check_clip_config("vit_tiny_patch16_224", {}, type("C", (), {"frames": 4})())

