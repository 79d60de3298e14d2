"""Augmentation on whole uint8 batches, on the device the batch lives on.

One call does crop, flip and normalisation for a batch with per-sample randomness from a seeded
generator: no per-sample Python work (a per-sample PIL pipeline costs ~40x more CPU per image).
The optional steps (affine, colour, policies, erasing, mixup / cutmix) are per_image.py's.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, size: int, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of (B, C, H, W) to size x size after zero padding, and (if hflip) a
    random horizontal flip with p = 0.5, as ONE gather: the flip is reversed column indices."""
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    b, c, h, w = x.shape
    top = torch.randint(0, h - size + 1, (b, 1, 1), device=x.device, generator=generator)
    left = torch.randint(0, w - size + 1, (b, 1, 1), device=x.device, generator=generator)
    offsets = torch.arange(size, device=x.device)
    cols = offsets.view(1, 1, size).expand(b, 1, size)
    if hflip:
        flip = torch.rand(b, 1, 1, device=x.device, generator=generator) < 0.5
        cols = torch.where(flip, size - 1 - cols, cols)
    index = (top + offsets.view(1, size, 1)) * w + (left + cols)        # (B, size, size) flat pixel index
    return x.reshape(b, c, h * w).gather(2, index.view(b, 1, -1).expand(b, c, -1)).view(b, c, size, size)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Same offsets as torchvision's CenterCrop. Kept over torchvision.transforms.v2.functional.center_crop,
    which does the same slicing after more Python: 2.7 against 4.2 us a batch (bench/augment.py)."""
    h, w = x.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


class BatchAugment:
    """Train: random crop (+padding), random flip, then `ops` (per_image.PerImageOps); eval: centre crop.
    Images are scaled to [0, 1] and normalised; `mix` mixes training images and their targets."""

    def __init__(self, image_size: int, crop_size: int | None, padding: int, hflip: bool,
                 mean: torch.Tensor | None, std: torch.Tensor | None, seed: int, ops=None):
        self.image_size, self.size = image_size, crop_size or image_size
        self.padding, self.hflip, self.seed = padding, hflip, seed
        self.mean, self.std = mean, std
        self.ops = ops if ops else None
        self.step = 0  # batches drawn this epoch: with the epoch seed, it seeds ops' random draws
        self._generators: dict[torch.device, torch.Generator] = {}
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def reseed(self, seed: int) -> None:
        """Restart every device's generator from `seed` (called at each epoch start, see guards.EpochSeeding)."""
        for generator in self._generators.values():
            generator.manual_seed(seed)
        self.seed, self.step = seed, 0

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and (self.padding or self.size < self.image_size or self.hflip):
            x = random_crop_flip(x, self.size, self.padding, self.hflip, self.generator(x.device))
        elif self.size < x.shape[-1]:
            x = center_crop(x, self.size)
        if not (train and self.ops and (self.ops.before or self.ops.after)):
            return self.normalize(x)
        with self.random_state(x.device):
            x = x.float().div_(255.0)
            for op in self.ops.before:
                x = op(x)
            x = self.standardize(x)
            for op in self.ops.after:
                x = op(x)
        return x

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mixup / cutmix of a training batch: y becomes (N, classes) probabilities (unchanged when off)."""
        if self.ops is None or self.ops.mix is None:
            return x, y
        with self.random_state(x.device):
            return self.ops.mix(x, y)

    @contextmanager
    def random_state(self, device: torch.device):
        """torch's global RNG, forked and seeded from (epoch seed, batch): kornia draws from it."""
        from trainlab.guards import epoch_seed

        seed = epoch_seed(self.seed, self.step)
        self.step += 1
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.random.default_generator.manual_seed(seed)
            if device.type == "cuda":
                torch.cuda.manual_seed(seed)
            yield

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardize(x.float().div_(255.0))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std of float images in [0, 1]."""
        if self.mean is None:
            return x
        if x.device not in self._stats:
            shape = (1, -1, 1, 1)
            self._stats[x.device] = (self.mean.view(shape).to(x.device), self.std.view(shape).to(x.device))
        mean, std = self._stats[x.device]
        return x.sub_(mean).div_(std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Back to [0, 1] for display (TensorBoard image grid)."""
        if self.mean is None:
            return x
        mean, std = self._stats.get(x.device) or (self.mean.view(1, -1, 1, 1), self.std.view(1, -1, 1, 1))
        return (x * std.to(x.device) + mean.to(x.device)).clamp(0, 1)


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 (N, C, H, W) images, in [0, 1] units."""
    x = images.float().div(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    return x.mean(1), x.std(1).clamp_min(1e-6)
