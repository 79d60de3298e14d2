"""Any torchvision classification model, optionally pretrained, with its head replaced (seed 004)."""
from __future__ import annotations

import os
import socket

import torch
from torch import nn

from trainlab.config import ConfigError

DOWNLOAD_TIMEOUT_S = 20


def pretrained_weights(name: str):
    """The default weights enum of a torchvision model, downloaded into torch's hub cache if missing.

    Raises ConfigError naming the cache folder when the file is not there and cannot be fetched.
    """
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(folder, os.path.basename(weights.url))
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            torch.hub.download_url_to_file(weights.url, path, progress=False)
        except Exception as err:
            raise ConfigError("model.init_args.pretrained", True,
                              f"the {name} weights are not in the cache folder {folder} and could not be downloaded "
                              f"({type(err).__name__})",
                              f"download {weights.url} on a machine that is online and copy it to {path} "
                              "(or set TORCH_HOME), or use model.init_args.pretrained=false") from None
        finally:
            socket.setdefaulttimeout(previous)
    return weights


def check_name(name: str) -> None:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ConfigError("model.init_args.name", name, "is not a torchvision classification model",
                          f"use one of torchvision.models.list_models(), e.g. {', '.join(known[:8])}, ...")


class TorchvisionNet(nn.Module):
    def __init__(self, in_channels: int, input_size: int, num_outputs: int, name: str = "resnet18",
                 pretrained: bool = False, freeze_backbone: bool = False):
        super().__init__()
        import torchvision

        check_name(name)
        self.net = torchvision.models.get_model(name, weights=pretrained_weights(name) if pretrained else None)
        head_name, head = _last_linear(self.net, name)
        _set_module(self.net, head_name, nn.Linear(head.in_features, num_outputs))
        if freeze_backbone:
            for pname, p in self.net.named_parameters():
                p.requires_grad = pname.startswith(head_name + ".")
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:  # torchvision models (and their weights) expect RGB
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)


def _last_linear(net: nn.Module, name: str) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("model.init_args.name", name, "has no linear classification head to replace",
                          "pick a model with a linear head (resnet, efficientnet, mobilenet, vit, convnext, ...)")
    return linears[-1]


def _set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
