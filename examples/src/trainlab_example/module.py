"""A training step of one's own: trainlab's TrainModule with two of its hooks overridden. trainlab's
augmentation does not apply to feature vectors, so the training batches get Gaussian noise instead."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from trainlab.module import TrainModule


class NoisyFeatures(TrainModule):
    """Training inputs plus N(0, noise^2) noise; cross-entropy with label smoothing in every stage."""

    def __init__(self, *args, noise: float = 0.1, label_smoothing: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.noise, self.label_smoothing = noise, label_smoothing

    def training_batch(self, batch):
        x, y = batch
        return x + self.noise * torch.randn_like(x), y

    def compute_loss(self, out, y):
        return F.cross_entropy(out, y, label_smoothing=self.label_smoothing)
