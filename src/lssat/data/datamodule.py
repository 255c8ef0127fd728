"""The DataModule: records of an index (or the built-in synthetic faces) to batches for the model step.

Batch schema (the contract with the model step); B is the number of items in the batch::

    "image"      uint8 tensor (B, 3, S, S), RGB in [0, 255], NOT normalised (S = image_size)
    "label"      long tensor (B,): class id (expression), 0 real / 1 fake (deepfake); -1 where absent
                 (always -1 for the attributes task)
    "attributes" long tensor (B, A): 0/1 per attribute_names (A = 0 for the other tasks); -1 where
                 a record has none
    "video_id"   list[str] (B): the source video's full relative path; "" for still images
    "method"     list[str] (B): the manipulation ("real" for originals); "" where absent
    "subgroup"   dict[str, list[str]]: per subgroup key (header `subgroups`, plus any key a record
                 carries), the value of each item as a string; "" where absent
    "frame"      long tensor (B,): frame index within the video; -1 for still images
    "index"      long tensor (B,): position of the record in its split's record list
                 (`datamodule.records(split)[index]`), whatever subset or sampler chose it
    "path"       list[str] (B): the record's path (relative to the data root)

Images that are missing or unreadable are left out of their batch (so B can be smaller than the
batch size, and 0 when all of a batch failed), counted once each in `datamodule.skipped`, and
named in a SkippedImageWarning; with `strict` they raise a DataError naming the file instead.

Training: train-split records, optionally a seeded, label-stratified `train_fraction` of them (whole
videos at a time), at most `frames_per_video` frames per video per epoch, and optional class
balancing; geometric then photometric augmentation (`lssat.data.transforms`). Validation and test:
resize + centre crop, optionally `eval_frames_per_video` evenly spaced frames per video.

With ``in_memory`` (auto: small images that fit a memory budget) a split's images are decoded
once and batches are cut from memory, training batches augmented at once with per-sample
parameters (`lssat.data.memory`); the batches follow the same schema and semantics.

Exact resumption: a training batch's random augmentation is drawn from a generator seeded by
(data seed, epoch, place in the epoch's draws) of its first sample (`lssat.data.sampling.Draw`),
on either path and in whichever worker, never from a generator whose state runs on from batch to
batch. The module's `state_dict` (saved in Lightning checkpoints) says how many of the current
epoch's draws training has used; on resume the sampler skips them, so a run resumed mid-epoch sees
the batches, and augmentations, that the uninterrupted run saw. (Distributed runs resume at the
right epoch, but from its start.)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from lssat.data.batch_augment import unbatched_options
from lssat.data.index import SPLITS, IndexHeader, Record
from lssat.data.loading import FaceCollate, FaceDataLoader, FaceDataset, FileImages
from lssat.data.memory import MemoryBatches, estimate_bytes, passthrough, plan_in_memory
from lssat.data.sampling import FixedSampler, TrainSampler, batch_seed, cap_frames, fraction_subset, video_groups
from lssat.data.sbi import SBI_METHOD, SelfBlend
from lssat.data.settings import DataConfig, SyntheticConfig
from lssat.data.sources import Source, check_images_readable, index_source, synthetic_source
from lssat.data.transforms import AugmentConfig, eval_transform, train_transform
from lssat.errors import ConfigError, DataError

__all__ = ["AugmentConfig", "DataConfig", "FaceDataModule", "SyntheticConfig"]


class FaceDataModule(L.LightningDataModule):
    """Batches (see the module docstring for the schema) from an index or the synthetic faces."""

    def __init__(self, config: DataConfig | Mapping[str, Any]) -> None:
        super().__init__()
        self.config = config if isinstance(config, DataConfig) else DataConfig.from_dict(config)
        self.header: IndexHeader | None = None
        self.subgroup_keys: list[str] = []
        self._records: dict[str, list[Record]] = {}
        self._datasets: dict[str, FaceDataset] = {}
        self._train_positions: np.ndarray | None = None
        self._memory: dict[str, MemoryBatches] = {}
        self._resume: tuple[int, int] | None = None  # (epoch, draws done) from a checkpoint
        self._sampler: TrainSampler | None = None  # of the latest train loader
        self._clips: dict[str, Any] = {}  # data.clip: the splits' ClipDatasets

    # ----------------------------------------------------------------- set-up
    def setup(self, stage: str | None = None) -> None:
        """Load the records and build the datasets (once; later calls do nothing)."""
        if self._datasets:
            return
        cfg = self.config
        if cfg.index is not None:
            source = index_source(cfg.index, cfg.data_root)
        else:
            source = synthetic_source(cfg.synthetic, cfg.image_size)
        header, records = source.header, source.records
        if not records["train"]:
            raise DataError(f"{source.name}: the train split has no records")
        if cfg.balance and header.task == "attributes":
            raise ConfigError("data.balance needs one label per record (expression or deepfake); "
                              f"{source.name} is an attributes dataset")
        keys = list(header.subgroups or [])
        for r in (r for split in records.values() for r in split):
            keys.extend(k for k in (r.subgroup or {}) if k not in keys)
        self.header, self._records, self.subgroup_keys = header, records, keys
        if cfg.strict:
            _check_files_exist(source)
        check_images_readable(source)
        n_attr = len(header.attribute_names or []) if header.task == "attributes" else 0
        for split in SPLITS:
            transform = (train_transform(cfg.image_size, cfg.augment) if split == "train"
                         else eval_transform(cfg.image_size, cfg.augment))
            kind = TrainItems if split == "train" else FaceDataset
            self._datasets[split] = kind(records[split], source.images[split], transform,
                                         num_attributes=n_attr, subgroup_keys=keys, strict=cfg.strict)
        self._datasets["train"].seed = cfg.seed
        train = records["train"]
        self._train_positions = fraction_subset([r.label for r in train], video_groups([r.video_id for r in train]),
                                                cfg.train_fraction, cfg.seed)
        if cfg.sbi.enabled:
            self._setup_sbi(source)
        self._collate = FaceCollate(cfg.image_size, n_attr, keys)
        if cfg.clip is not None:  # clip batches (lssat.data.clips); frames cached instead of in_memory
            from lssat.data.clips import ClipCollate, ClipDataset

            for key in ("balance", "frames_per_video"):
                if getattr(cfg, key):
                    raise ConfigError(f"data.{key} does not apply to clips (data.clip: one clip per video per epoch)")
            if cfg.sbi.enabled:
                raise ConfigError("data.sbi: self-blended fakes are made per frame; they are not available with data.clip")
            cache = cfg.in_memory is True or (cfg.in_memory == "auto" and cfg.image_size <= 128)
            self._clips = {split: ClipDataset(self._datasets[split], cfg.clip, self._datasets[split].transform,
                                              split == "train", cache,
                                              self._train_positions if split == "train" else None)
                           for split in SPLITS}
            self._collate = ClipCollate(cfg.clip.frames, cfg.image_size, n_attr, keys)
            return
        render_size = (cfg.synthetic.size or cfg.image_size) if cfg.synthetic is not None else None
        self._plan_memory(render_size)

    def _setup_sbi(self, source: Source) -> None:
        """Self-blended training fakes (`data.sbi`): checked against the data, manipulated frames
        left out with `real_only`, and the blending handed to the train dataset."""
        cfg, train = self.config, self._records["train"]
        if self.header.task != "deepfake":
            raise ConfigError(f"data.sbi: self-blended images are fakes for the deepfake task; {source.name} is "
                              f"a {self.header.task} dataset")
        if cfg.sbi.real_only:
            self._train_positions = np.array([p for p in self._train_positions.tolist() if train[p].label == 0],
                                             dtype=np.int64)
        real = [p for p in self._train_positions.tolist() if train[p].label == 0]
        if not real:
            raise DataError(f"data.sbi: {source.name}: the training subset has no real (label 0) frames to blend")
        blend = SelfBlend(cfg.sbi, train, source.images["train"], cfg.seed)
        blend.landmarks.check(real)
        self._datasets["train"].blend = blend

    def _plan_memory(self, render_size: int | None) -> None:
        """Build the in-memory datasets of the splits `data.in_memory` puts in memory (decoded lazily)."""
        cfg = self.config
        planned = {"train": self.train_sampler().possible_positions(),
                   "val": self.eval_positions("val"), "test": self.eval_positions("test")}

        def estimate(split: str):
            return lambda limit: estimate_bytes(self._datasets[split], planned[split], cfg.image_size,
                                                split == "train", limit, render_size)

        plan = plan_in_memory(cfg.in_memory, cfg.image_size, cfg.in_memory_budget_mb * 2**20, cfg.augment,
                              {split: estimate(split) for split in SPLITS})
        tail = cfg.in_memory is True and bool(unbatched_options(cfg.augment))
        self._memory = {
            split: MemoryBatches(self._datasets[split], planned[split], cfg.image_size,
                                 augment=cfg.augment if split == "train" else None, eval_crop=cfg.augment,
                                 seed=cfg.seed, tail=tail)
            for split in SPLITS if plan[split]
        }
        if "train" in self._memory:
            self._memory["train"].blend = self._datasets["train"].blend

    def _require_setup(self) -> None:
        if not self._datasets:
            self.setup()

    # ------------------------------------------------------------ information
    @property
    def task(self) -> str:
        """The task kind: deepfake, attributes or expression."""
        self._require_setup()
        return self.header.task

    @property
    def classes(self) -> list[str]:
        """Class names in label order (deepfake: real, fake; attributes: the attribute names)."""
        self._require_setup()
        if self.header.task == "deepfake":
            return list(self.header.classes or ["real", "fake"])
        if self.header.task == "attributes":
            return list(self.header.attribute_names or [])
        return list(self.header.classes or [])

    def records(self, split: str) -> list[Record]:
        """All records of a split, in the order that the batches' "index" refers to."""
        self._require_setup()
        return self._records[split]

    def dataset(self, split: str) -> FaceDataset:
        """The dataset of a split (items before collation)."""
        self._require_setup()
        return self._datasets[split]

    def in_memory(self, split: str) -> bool:
        """Whether this split's loader cuts its batches from images held in memory (`data.in_memory`)."""
        self._require_setup()
        return split in self._memory

    def memory_batches(self, split: str) -> MemoryBatches | None:
        """The in-memory dataset of a split (its augmentation RNG state: `state_dict`), or None."""
        self._require_setup()
        return self._memory.get(split)

    @property
    def train_positions(self) -> np.ndarray:
        """Positions of the training subset (all of the train split unless train_fraction < 1)."""
        self._require_setup()
        return self._train_positions

    @property
    def skipped(self) -> int:
        """How many distinct images were skipped so far (missing or unreadable), over all splits."""
        return int(sum(int(ds.skipped.sum()) for ds in self._datasets.values()))

    def skipped_paths(self) -> list[str]:
        """The files skipped so far, split by split."""
        return [p for split in SPLITS if split in self._datasets for p in self._datasets[split].skipped_paths()]

    def summary(self) -> str:
        """Records per split and what training uses, as a few plain lines."""
        self._require_setup()
        lines = [f"task {self.header.task}, dataset {self.header.dataset}"]
        for split in SPLITS:
            lines.append(f"  {split:5s} {len(self._records[split]):7d} records")
        lines.append(f"  training subset: {len(self._train_positions)} records; "
                     f"{len(self.train_sampler())} per epoch")
        if self._memory:
            held = sum(m.nbytes for m in self._memory.values()) / 2**20
            lines.append(f"  in memory: {', '.join(self._memory)} ({held:.1f} MiB decoded so far)")
        if self.skipped:
            lines.append(f"  skipped images: {self.skipped}")
        return "\n".join(lines)

    # ------------------------------------------------------------ dataloaders
    def train_sampler(self) -> TrainSampler:
        """A fresh sampler of training positions (cap, balance and shuffle, seeded per epoch)."""
        self._require_setup()
        cfg, train = self.config, self._records["train"]
        return TrainSampler(self._train_positions, [r.label for r in train], video_groups([r.video_id for r in train]),
                            [r.frame for r in train], frames_per_video=cfg.frames_per_video,
                            frame_mode=cfg.frame_sampling, balance=cfg.balance, seed=cfg.seed)

    def eval_positions(self, split: str) -> np.ndarray:
        """Positions an evaluation pass visits (all, or evenly spaced frames per video)."""
        records = self.records(split)
        positions = np.arange(len(records))
        k = self.config.eval_frames_per_video
        if k is None:
            return positions
        return cap_frames(positions, video_groups([r.video_id for r in records]), [r.frame for r in records],
                          k, "even")

    def _loader(self, split: str, sampler: Sampler[int], drop_last: bool = False) -> DataLoader:
        batch_size = self.config.batch_size
        if split != "train" and self.config.validation_batch_size is not None:
            batch_size = self.config.validation_batch_size
        if self._clips:
            sampler = self._clip_sampler(split)
            workers = self.config.workers if self._clips[split].cache is None else 0
            return FaceDataLoader(self._clips[split], batch_size=batch_size, sampler=sampler, num_workers=workers,
                                  collate_fn=self._collate, pin_memory=torch.cuda.is_available(),
                                  drop_last=drop_last and len(sampler) >= batch_size, persistent_workers=workers > 0)
        if split in self._memory:  # batches cut from memory, in this process
            return FaceDataLoader(
                self._memory[split], batch_size=batch_size, sampler=sampler, num_workers=0,
                collate_fn=passthrough, pin_memory=torch.cuda.is_available(), drop_last=drop_last,
                generator=torch.Generator().manual_seed(self.config.seed),
            )
        workers = self.config.workers
        return FaceDataLoader(
            self._datasets[split], batch_size=batch_size, sampler=sampler, num_workers=workers,
            collate_fn=self._collate, pin_memory=torch.cuda.is_available(), drop_last=drop_last,
            persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.config.seed),
        )

    def train_dataloader(self) -> DataLoader:
        """Augmented training batches in the order of `train_sampler` (a fresh draw each epoch; a
        new loader goes on from the previous one's epoch); after `load_state_dict`, from where the
        checkpointed run stood."""
        self._require_setup()
        sampler = self.train_sampler()
        if self._sampler is not None:
            sampler.epoch = self._sampler.epoch
        if self._resume is not None:
            sampler.resume_at(*self._resume)
            self._resume = None
        sampler.epoch_source = self._trainer_epoch
        self._sampler = sampler
        drop_last = self.config.drop_last and len(sampler) >= self.config.batch_size
        return self._loader("train", sampler, drop_last)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in record order (resize + centre crop)."""
        self._require_setup()
        return self._loader("val", FixedSampler(self.eval_positions("val")))

    def test_dataloader(self) -> DataLoader:
        """Test batches in record order (resize + centre crop)."""
        self._require_setup()
        return self._loader("test", FixedSampler(self.eval_positions("test")))

    def predict_dataloader(self) -> DataLoader:
        """The test batches."""
        return self.test_dataloader()

    def _clip_sampler(self, split: str) -> Sampler:
        from lssat.data.clips import ClipEvalSampler, ClipTrainSampler

        if split == "train":
            return ClipTrainSampler(len(self._clips["train"]), self.config.seed)
        return ClipEvalSampler(self._clips[split].eval_clips())

    def clip_dataset(self, split: str) -> Any:
        """The split's `lssat.data.clips.ClipDataset` (None without data.clip)."""
        self._require_setup()
        return self._clips.get(split)

    # ------------------------------------------------------------ checkpoints
    def _trainer_epoch(self) -> int | None:
        """The epoch the attached trainer is in (None without one)."""
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else int(trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where training stands in the current epoch (Lightning saves this in its checkpoints):
        {"train": {epoch, batches done, batch_size, world_size, epoch_done}}; empty outside fit."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress
        # processed, not completed: a checkpoint taken in on_train_batch_end (RunCheckpoints' step
        # interval, Slurm's requeue) is written before Lightning counts that batch completed
        return {"train": {"epoch": int(trainer.current_epoch), "batches": int(progress.current.processed),
                          "batch_size": int(self.config.batch_size), "world_size": int(trainer.world_size),
                          "epoch_done": bool(progress.is_last_batch)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the training draws where `state_dict` left them: the rest of that epoch, or the
        next epoch when it had ended. Distributed runs restart the epoch (their sampler is split
        across ranks by Lightning, which cannot skip ahead)."""
        info = (state or {}).get("train")
        if not info:
            return
        epoch, draws = int(info["epoch"]), int(info["batches"]) * int(info["batch_size"])
        if info.get("epoch_done"):
            epoch, draws = epoch + 1, 0
        trainer = getattr(self, "trainer", None)
        if draws and (int(info.get("world_size", 1)) > 1 or (trainer is not None and trainer.world_size > 1)):
            warnings.warn(f"resuming a distributed run in the middle of epoch {epoch}: its draws restart from the "
                          "epoch's start, so the result differs from an uninterrupted run", stacklevel=2)
            draws = 0
        self._resume = (epoch, draws)
        if self._sampler is not None:  # a loader made before the state came
            self._sampler.resume_at(epoch, draws)


class TrainItems(FaceDataset):
    """The train split's items (the per-item path): the random augmentation of a batch of `Draw`
    positions runs under torch's CPU generator seeded by `batch_seed` (then put back), so it
    depends on the batch's place in the epoch, not on which worker cut it or what came before."""

    seed: int = 0
    blend: SelfBlend | None = None  # `data.sbi`: replaces some real frames by self-blended fakes

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, Any] | None]:
        seed = batch_seed(self.seed, positions)
        if self.blend is not None:
            return self._blended(positions, seed)
        positions = [int(p) for p in positions]
        if seed is None:
            return super().__getitems__(positions)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU generator alone: CUDA's runs on untouched
            return super().__getitems__(positions)


    def _blended(self, positions: Sequence[int], seed: int | None) -> list[dict[str, Any] | None]:
        """The batch with `blend` applied to the decoded images, before the augmentation."""
        positions = [int(p) for p in positions]
        load_many = getattr(self.images, "load_many", None)
        if load_many is not None:
            images = load_many([self.records[p] for p in positions], positions)
        else:
            images = []
            for p in positions:
                try:
                    images.append(self.images(self.records[p], p))
                except DataError as err:
                    images.append(err)
        images, fake = self.blend(images, positions, seed)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.default_generator.manual_seed(seed)
            items = [self._failed(p, x) if isinstance(x, DataError) else self._finish(self.records[p], p, x)
                     for p, x in zip(positions, images)]
        for item, f in zip(items, fake):
            if item is not None and f:
                item["label"], item["method"] = 1, SBI_METHOD
        return items


def _check_files_exist(source: Source) -> None:
    """Strict mode: every image file of an index exists (checked up front, in the main process)."""
    for split in SPLITS:
        images = source.images[split]
        if not isinstance(images, FileImages):
            continue
        for record in source.records[split]:
            path = images.root / record.path
            if not path.is_file():
                raise DataError(f"{path}: image file not found (record of the {split} split; strict mode)")
