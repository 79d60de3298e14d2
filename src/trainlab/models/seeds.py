"""The networks of the user's documents. They output logits (no softmax): the loss applies it."""
from __future__ import annotations

import math

import torch
from torch import nn

from trainlab.config import ConfigError


def image_shape(input_shape, name: str) -> tuple[int, int, int]:
    """(channels, height, width) of a convolutional network's input; any other shape is a config mistake."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        raise ConfigError("model.class_path", f"trainlab.models.{name}",
                          f"is a convolutional network for images (channels, height, width), but the data's "
                          f"input_shape is {shape}", "model=mlp (flattens any input shape), or your own network")
    return shape


def _flat_size(features: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, *shape)).numel()


def _head(in_features: int, hidden: list[int], num_outputs: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_outputs))
    return nn.Sequential(*layers)


class SeedCNN(nn.Module):
    """Seed 000: [conv k x k -> ReLU -> maxpool] per entry of `channels`, flatten, linear."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, channels=(32, 64),
                 kernel_size: int = 5, pool_size: int = 2, dropout: float = 0.0):
        super().__init__()
        shape = image_shape(input_shape, "SeedCNN")
        if not channels:
            raise ConfigError("model.init_args.channels", list(channels), "needs at least one conv layer",
                              "model.init_args.channels=[32,64], or model=mlp for no conv layer")
        in_channels = shape[0]
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(in_channels, width, kernel_size), nn.ReLU(inplace=True), nn.MaxPool2d(pool_size)]
            in_channels = width
        layers.append(nn.Flatten(1))
        self.features = nn.Sequential(*layers)
        self.head = _head(_flat_size(self.features, shape), [], num_outputs, 0.0)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class LeNet(nn.Module):
    """Seed 001's LeNet-5: two conv/pool stages, then fully connected 120 -> 84 -> outputs."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, channels=(6, 16),
                 hidden=(120, 84), kernel_size: int = 5, dropout: float = 0.0):
        super().__init__()
        shape = image_shape(input_shape, "LeNet")
        layers: list[nn.Module] = []
        c = shape[0]
        for width in channels:
            layers += [nn.Conv2d(c, width, kernel_size), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = width
        self.body = nn.Sequential(*layers, nn.Flatten(1))
        self.head = _head(_flat_size(self.body, shape), list(hidden), num_outputs, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class MLP(nn.Module):
    """Seeds 002/003: flatten (images or vectors alike), then Linear + ReLU for each hidden size, then the output
    layer."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, hidden=(128, 64), dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(1), _head(math.prod(input_shape), list(hidden), num_outputs, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
