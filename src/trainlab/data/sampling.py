"""Imbalanced data: class-balanced sampling (dataset.oversample) and class weights for the loss
(dataset.class_weights), from the training split's targets.

Every epoch's draw is seeded by (seed, epoch) alone, so a resumed run draws what the uninterrupted run drew.
"""
from __future__ import annotations

import math

import torch


def sample_weights(targets: torch.Tensor, task: str, oversample, bins: int) -> torch.Tensor | None:
    """Per-sample drawing weights count^-power of its class (regression: its target bin); None: no oversampling."""
    if oversample == "none":
        return None
    power = 1.0 if oversample == "balanced" else float(oversample)
    groups = targets.long() if task == "classification" else target_bins(targets, bins)
    counts = torch.bincount(groups).double()
    return counts[groups].pow(-power)


def target_bins(targets: torch.Tensor, bins: int) -> torch.Tensor:
    """The bin of each target among `bins` equal-width bins over [min, max]."""
    targets = targets.double()
    lo, hi = targets.min(), targets.max()
    if hi == lo:
        return torch.zeros(len(targets), dtype=torch.long)
    return ((targets - lo) / (hi - lo) * bins).long().clamp_max(bins - 1)


def class_weights(targets: torch.Tensor, num_classes: int) -> list[float]:
    """n / (classes * count) per class (scikit-learn's "balanced"); a class absent from the split weighs as one."""
    counts = torch.bincount(targets.long(), minlength=num_classes).double().clamp_min(1)
    return (len(targets) / (num_classes * counts)).tolist()


def epoch_order(n: int, seed: int, epoch: int, weights: torch.Tensor | None, size: int | None = None) -> torch.Tensor:
    """An epoch's sample order: a permutation of range(n), or `size` (default n) indices drawn with
    replacement by weight. Seeded by (seed, epoch) only."""
    from trainlab.guards import epoch_seed

    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    if weights is None:
        return torch.randperm(n, generator=generator)
    return torch.multinomial(weights, size or n, replacement=True, generator=generator)


class WeightedEpochSampler(torch.utils.data.Sampler):
    """Indices drawn with replacement by weight for streamed data and for DDP: one draw of world * ceil(n / world)
    indices per epoch, the same on every rank, of which each rank reads its own stride (equal lengths, so every
    rank takes the same number of steps). `epoch` is a callable, read when the first index is taken."""

    def __init__(self, weights: torch.Tensor, seed: int, epoch, rank: int = 0, world: int = 1):
        self.weights, self.seed, self.epoch, self.rank, self.world = weights, seed, epoch, rank, world
        self.per_rank = math.ceil(len(weights) / world)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        draw = epoch_order(len(self.weights), self.seed, self.epoch(), self.weights, self.per_rank * self.world)
        yield from draw[self.rank::self.world].tolist()
