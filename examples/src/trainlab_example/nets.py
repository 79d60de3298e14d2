"""A network for feature vectors, built by trainlab as cls(input_shape=..., num_outputs=..., **init_args)."""
from __future__ import annotations

import math

from torch import nn


class FeatureNet(nn.Module):
    """BatchNorm of the input features (their scales differ by 10^4; running statistics come from the training
    batches only), then Linear -> ReLU -> dropout per hidden size, then a linear layer to num_outputs."""

    def __init__(self, input_shape, num_outputs: int, hidden: list[int] = (32,), dropout: float = 0.0):
        super().__init__()
        width = math.prod(input_shape)
        layers = [nn.Flatten(), nn.BatchNorm1d(width)]
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.layers = nn.Sequential(*layers, nn.Linear(width, num_outputs))

    def forward(self, x):
        return self.layers(x)
