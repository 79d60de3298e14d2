"""The LightningDataModule: splits a Source into train/val/test and augments batches on the device.

Two paths, chosen by `augmentation.per_sample`:
- batched (default): uint8 batches (in-memory sets moved to the training device once) are cropped,
  flipped, augmented per image (per_image.py), normalised and mixed as whole batches on the device in
  on_after_batch_transfer;
- per sample: torchvision transforms run on each image in DataLoader workers, as in the classic
  PyTorch recipe (for transforms with no batched equivalent, and as the benchmark's reference).
"""
from __future__ import annotations

import logging

import lightning as L
import torch
from omegaconf import OmegaConf
from torch.utils.data import BatchSampler, DataLoader

from trainlab.config import ConfigError
from trainlab.distributed import index_sampler
from trainlab.data import sampling, sources
from trainlab.data.augment import BatchAugment, channel_stats
from trainlab.data.per_image import PerImageOps
from trainlab.data.per_sample import MixCollate, per_sample_transform

log = logging.getLogger("trainlab")
STATS_SAMPLE = 2048  # images used to estimate mean/std when data streams from files


class ImageDataModule(L.LightningDataModule):
    def __init__(self, dataset, augmentation, task: str, seed: int, cache_dir: str | None = None,
                 pretrained=None):
        super().__init__()
        self.cfg, self.aug_cfg, self.task, self.seed = dataset, augmentation, task, seed
        self.pretrained = pretrained  # finetune.Preprocessing: normalise by the weights' mean, std
        self.cache_dir = cache_dir  # paths.cache_dir: decoded image files are cached there (None: not cached)
        self.per_sample = bool(augmentation.per_sample)  # read every batch: a DictConfig lookup costs ~9 us
        self.train_set = self.val_set = self.test_set = None
        self.classes: list[str] | None = None
        self.augment: BatchAugment | None = None  # None: a user's tensors, used as they are (user_data.py)
        self.image_size: int | None = None  # of the loaded images (a user's image source may keep its own)
        self.input_shape: tuple[int, ...] | None = None  # of one input the network sees, known after setup()
        self.sample_weights: torch.Tensor | None = None  # dataset.oversample: per training sample
        self.class_weights: list[float] | None = None    # dataset.class_weights: per class, for the loss

    @property
    def input_size(self) -> int:
        """The side of the (square) images the network sees, after the crop (metrics.json's preprocessing)."""
        return self.input_shape[-1]

    @property
    def num_outputs(self) -> int:
        return 1 if self.task == "regression" else len(self.classes)

    @property
    def batch_size(self) -> int:
        """dataset.batch_size, under the name Lightning's batch-size finder reads and sets (train.py tune=batch_size)."""
        return self.cfg.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.cfg.batch_size = value

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.cfg.get("class_path") is None:
            source = sources.load(self.cfg, self.task, self.cache_dir)
        else:
            from trainlab.data import user_data

            source = user_data.build(OmegaConf.to_container(self.cfg, resolve=True), self.task, self.seed)
        self.classes = source.classes
        split = torch.Generator().manual_seed(self.seed)
        data = source.train
        if source.test is None:
            data, self.test_set = _split(data, self.cfg.test_fraction, split)
        else:
            self.test_set = source.test
        self.train_set, self.val_set = _split(data, self.cfg.val_fraction, split)
        self._balance(self.train_set.targets)  # oversampling and class weights: any classification/regression data
        x = self.train_set[0][0]
        if not source.images:
            _no_augmentation(self.cfg.class_path, self.aug_cfg)
            self.input_shape = tuple(x.shape)
            return
        self.image_size, size = x.shape[-1], self.aug_cfg.crop_size or x.shape[-1]
        if self.cfg.image_size is None:  # a user's source keeps its own size: the crop is checked now
            from trainlab.data.user_data import cropped

            cropped(self.image_size, self.aug_cfg.crop_size)
        self.input_shape = (x.shape[0], size, size)
        mean = std = None
        if self.aug_cfg.normalize and self.pretrained is not None:
            mean, std = (torch.tensor(v, dtype=torch.float32) for v in (self.pretrained.mean, self.pretrained.std))
        elif self.aug_cfg.normalize:
            mean, std = channel_stats(_sample_images(self.train_set, split))
        self.augment = BatchAugment(self.image_size, self.aug_cfg.crop_size, self.aug_cfg.padding,
                                    self.aug_cfg.hflip, mean, std, self.seed)

    def preprocessing(self) -> dict:
        """What evaluation does to an image (metrics.json): decode at image_size with `channels`, centre crop to
        input_size, scale to [0, 1], then (x - mean) / std when mean is not null."""
        if self.augment is None:  # a user's tensors: used as they are
            return {"normalization": None, "input_shape": list(self.input_shape)}
        mean = self.augment.mean
        source = self.pretrained.source if self.pretrained and mean is not None else "training split"
        return {"normalization": source if mean is not None else None,
                "mean": mean.tolist() if mean is not None else None,
                "std": self.augment.std.tolist() if mean is not None else None,
                "image_size": self.image_size, "input_size": self.input_size, "channels": self.input_shape[0]}

    def _balance(self, targets: torch.Tensor) -> None:
        oversample, bins, weights = (OmegaConf.select(self.cfg, key, default=default)  # defaults: runs stored before
                                     for key, default in (("oversample", "none"), ("oversample_bins", 10),
                                                          ("class_weights", "none")))
        self.sample_weights = sampling.sample_weights(targets, self.task, oversample, bins)
        if weights == "balanced":
            self.class_weights = sampling.class_weights(targets, len(self.classes))

    def _num_classes(self) -> int | None:
        return None if self.classes is None else len(self.classes)

    def train_dataloader(self) -> DataLoader:
        if self.augment is not None and self.augment.ops is None and not self.per_sample:  # None: a user's tensors
            # Here, not in setup(): evaluating a run saved before these keys existed needs none of them.
            self.augment.ops = PerImageOps(self.aug_cfg, self.input_shape[0], self._num_classes()) or None
        self.train_set = self._on_device(self.train_set)
        if self._overfitting():
            return self._overfit_loader(train=True)
        return self._loader(self.train_set, self.cfg.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        if self._overfitting():
            return self._overfit_loader(train=False)
        self.val_set = self._on_device(self.val_set)
        return self._loader(self.val_set, self.cfg.eval_batch_size, train=False)

    def _overfitting(self) -> bool:
        """trainer.overfit_batches > 0 while fitting (Lightning then limits training and validation to that many)."""
        return self.trainer is not None and self.trainer.overfit_batches > 0 and self.trainer.state.fn == "fit"

    def _overfit_loader(self, train: bool) -> DataLoader:
        """The training split in order, in training batches, for training and for validation alike: Lightning
        keeps the first overfit_batches of each, so validation sees exactly the batches trained on (with
        evaluation transforms). A per-sample loader with a SequentialSampler, which Lightning leaves as it is:
        it replaces any other sampler with SequentialSampler(dataset), and the batch-at-a-time loaders (one
        index tensor per step, batch_size=None) would then yield single images instead of batches."""
        data = self.train_set
        if self.per_sample:
            data = Transformed(data, self._per_sample_transform(train))
        return DataLoader(data, batch_size=self.cfg.batch_size, shuffle=False, collate_fn=self._collate(train))

    def test_dataloader(self) -> DataLoader:
        self.test_set = self._on_device(self.test_set)
        return self._loader(self.test_set, self.cfg.eval_batch_size, train=False)

    def _on_device(self, data):
        """In-memory uint8 sets move to the training device once (a few MB to a few hundred MB)."""
        if self.per_sample or not isinstance(data, sources.TensorImages) or self.trainer is None:
            return data
        device = self.trainer.strategy.root_device
        return data if data.images.device == device else data.to(device)

    def _loader(self, data, batch_size: int, train: bool) -> DataLoader:
        # Our samplers shard per rank themselves (the Trainer runs with use_distributed_sampler=False).
        weights = self.sample_weights if train else None
        if weights is None:
            sampler = index_sampler(len(data), train, self.trainer, self.seed)
        else:
            rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
            sampler = sampling.WeightedEpochSampler(weights, self.seed, self._epoch, rank, world)
        if self.per_sample:
            data = Transformed(data, self._per_sample_transform(train))
        elif isinstance(data, sources.TensorImages):
            # One index list per batch, fetched with one tensor indexing op: no per-sample work.
            if train and (self.trainer is None or self.trainer.world_size == 1):
                # Own generator: creating the iterator must not draw from the global RNG (exact resume).
                return DataLoader(data, batch_size=None, sampler=EpochShuffle(len(data), batch_size, self.seed,
                                                                              self._epoch, weights),
                                  generator=torch.Generator().manual_seed(self.seed))
            return DataLoader(data, batch_size=None, sampler=EpochBatchSampler(sampler, batch_size, drop_last=False))
        workers = self.cfg.num_workers
        return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                          collate_fn=self._collate(train))

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _per_sample_transform(self, train: bool):
        return per_sample_transform(self.aug_cfg, self.image_size, self.augment.mean, self.augment.std, train)

    def _collate(self, train: bool):
        """torchvision's MixUp / CutMix on the per-sample path's training batches (None: the default collate)."""
        aug = self.aug_cfg
        if not (train and self.per_sample and (aug.mixup.alpha > 0 or aug.cutmix.alpha > 0)):
            return None
        return MixCollate(aug.mixup, aug.cutmix, self._num_classes())

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.per_sample or self.augment is None:
            return batch
        images, targets = batch
        if self.trainer is None or not self.trainer.training:
            return self.augment(images, train=False), targets
        return self.augment.mix(self.augment(images, train=True), targets)


class EpochShuffle(torch.utils.data.Sampler):
    """Batches of indices from a permutation (or, with weights, a draw with replacement) seeded by (seed, epoch),
    so a resumed run draws the same order for an epoch as the uninterrupted run did."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch, weights: torch.Tensor | None = None):
        self.n, self.batch_size, self.seed, self.epoch, self.weights = n, batch_size, seed, epoch, weights

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        # A generator: the epoch is read at the first batch, not when Lightning creates the iterator early.
        yield from sampling.epoch_order(self.n, self.seed, self.epoch(), self.weights).split(self.batch_size)


class EpochBatchSampler(BatchSampler):
    """Lightning calls set_epoch on the DataLoader's sampler: pass it on so DDP shards reshuffle each epoch."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


class Transformed(torch.utils.data.Dataset):
    """A dataset whose images pass through a per-sample transform."""

    def __init__(self, data, transform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        image, target = self.data[index]
        return self.transform(image), target


def _split(data, fraction: float, generator: torch.Generator):
    """Random split of a dataset: (rest, held_out) with `fraction` of the items held out."""
    n = len(data)
    held = max(1, int(round(n * fraction)))
    if held >= n:
        raise ConfigError("dataset", f"{n} items", "is too small to split into train, validation and test",
                          "add data, or lower dataset.val_fraction / dataset.test_fraction")
    order = torch.randperm(n, generator=generator)
    return data.subset(order[held:]), data.subset(order[:held])


def _no_augmentation(class_path: str, aug) -> None:
    """A user's tensors are not images: per-sample transforms are refused by name, the batched ones skipped."""
    if aug.per_sample:
        raise ConfigError("augmentation.per_sample", True, f"{class_path} gives tensors, not uint8 images, and "
                          "image transforms do not apply to them", "augmentation=none")
    log.info("augmentation and normalisation: not applied to %s (its items are tensors, used as they are)", class_path)


def _sample_images(data, generator: torch.Generator) -> torch.Tensor:
    if isinstance(data, sources.TensorImages):
        return data.images
    index = torch.randperm(len(data), generator=generator)[:STATS_SAMPLE].tolist()
    return torch.stack([data[i][0] for i in index])
