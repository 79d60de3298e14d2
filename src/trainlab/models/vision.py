"""Any torchvision classification model, optionally pretrained, with its head replaced (seed 004)."""
from __future__ import annotations

import os
import pickle
import socket
from contextlib import contextmanager

import torch
from torch import nn

from trainlab.config import ConfigError

DOWNLOAD_TIMEOUT_S = 20


def pretrained_weights(name: str):
    """The default weights enum of a torchvision model, its file in torch's hub cache checked against the
    sha256 prefix its name carries (resnet18-f37072fd.pth), downloaded (and checked) if missing.

    Raises ConfigError naming the file when it is not there and cannot be fetched, or does not match.
    """
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(folder, os.path.basename(weights.url))
    match = torch.hub.HASH_REGEX.search(os.path.basename(path))
    prefix = match.group(1) if match else None
    if os.path.isfile(path):
        _check_hash(path, prefix)
        return weights
    os.makedirs(folder, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:  # a temporary file beside path, renamed only once its sha256 matches
        torch.hub.download_url_to_file(weights.url, path, hash_prefix=prefix, progress=False)
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ConfigError("model.init_args.pretrained", True,
                          f"the {name} weights are not in the cache folder {folder} and could not be downloaded "
                          f"({type(err).__name__}: {reason})",
                          f"download {weights.url} on a machine that is online and copy it to {path} "
                          "(or set TORCH_HOME), or use model.init_args.pretrained=false") from None
    finally:
        socket.setdefaulttimeout(previous)
    _VERIFIED[path] = _stamp(path)
    return weights


_VERIFIED: dict[str, tuple] = {}  # path -> (size, mtime) when its hash last matched: checked once per process


def _stamp(path: str) -> tuple:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def _check_hash(path: str, prefix: str | None) -> None:
    if not prefix or _VERIFIED.get(path) == _stamp(path):
        return
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(prefix):
        raise ConfigError("model.init_args.pretrained", True,
                          f"the cached weights file {path} does not match the sha256 prefix {prefix} its name "
                          "carries (corrupt, or not torchvision's file)",
                          f"delete {path} and run again online to download it")
    _VERIFIED[path] = _stamp(path)


@contextmanager
def _weights_only_loads():
    """torchvision's builders load weights through torch.hub.load_state_dict_from_url with weights_only=False;
    torch.load reads TORCH_FORCE_WEIGHTS_ONLY_LOAD at each call, so inside this block every load is weights-only
    (a file with pickled code fails instead of running it)."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")  # torch refuses both set
    saved = {key: os.environ.pop(key, None) for key in names}
    os.environ[names[0]] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def check_name(name: str) -> None:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ConfigError("model.init_args.name", name, "is not a torchvision classification model",
                          f"use one of torchvision.models.list_models(), e.g. {', '.join(known[:8])}, ...")


class TorchvisionNet(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, name: str = "resnet18",
                 pretrained: bool = False, freeze_backbone: bool = False):
        super().__init__()
        import torchvision

        from trainlab.models.seeds import image_shape

        in_channels = image_shape(input_shape, "TorchvisionNet")[0]
        check_name(name)
        weights = pretrained_weights(name) if pretrained else None
        with _weights_only_loads():
            try:
                self.net = torchvision.models.get_model(name, weights=weights)
            except pickle.UnpicklingError as err:
                path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
                raise ConfigError("model.init_args.pretrained", True,
                                  f"the weights file {path} holds more than weights (a weights-only load refused "
                                  f"it: {str(err).strip().splitlines()[0][:160]})",
                                  f"delete {path} and run again online to download it") from None
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

    @property
    def head(self) -> nn.Linear:
        """The replaced classification layer: the head of finetune.py's head / backbone split."""
        return _last_linear(self.net, "")[1]


def _last_linear(net: nn.Module, name: str) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("model.init_args.name", name, "has no linear classification head to replace",
                          "pick a model with a linear head (resnet, efficientnet, mobilenet, vit, convnext, ...)")
    return linears[-1]


def _set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
