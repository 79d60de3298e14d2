"""Fine-tuning a pretrained network (seed 004): the pre-processing its weights expect, the head / backbone
split, and the backbone frozen for the first epochs.

Pre-processing comes from the weights' own metadata (torchvision's Weights enum, timm's pretrained config),
which ships with the library: no weights file is read to know it. A network declares its head with a `head`
attribute (an nn.Module inside it; timm's `get_classifier()` counts too): every other parameter is the
backbone.
"""
from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, replace

import lightning as L
from torch import nn

from trainlab.config import ConfigError

log = logging.getLogger("trainlab")

TORCHVISION_NET = "trainlab.models.TorchvisionNet"


@dataclass(frozen=True)
class Preprocessing:
    """What pretrained weights expect: RGB, normalised by mean/std, resized to resize_size, centre crop_size
    (None: the data's own sizes, finetune.preprocessing=mean_std)."""
    source: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_size: int | None
    crop_size: int | None


def pretrained_preprocessing(resolved: dict) -> Preprocessing | None:
    """The pre-processing of the run's pretrained weights, or None (the data's own: a network that is not
    pretrained, weights without metadata, or finetune.preprocessing=false). `resolved` is the plain config."""
    # A run stored before the key (evaluate.py, predict.py, resume) keeps the data's own, as it was trained.
    mode = (resolved.get("finetune") or {}).get("preprocessing", False)
    if mode is False:
        return None
    found = _from_weights(resolved["model"])
    if found is None or mode == "auto":
        return found
    return replace(found, resize_size=None, crop_size=None)  # mean_std


def _from_weights(model: dict) -> Preprocessing | None:
    path, args = model["class_path"], model["init_args"] or {}
    if path == TORCHVISION_NET and args.get("pretrained"):
        import torchvision

        from trainlab.models import TorchvisionNet

        name = args.get("name", inspect.signature(TorchvisionNet).parameters["name"].default)
        return _torchvision(torchvision.models.get_model_weights(name).DEFAULT)
    if path == "torchvision.models.get_model" and args.get("weights"):  # a factory: weights by name
        return _torchvision(_torchvision_weights(args["name"], args["weights"]))
    if path.startswith("timm.") and args.get("pretrained"):
        return _timm(args["model_name"])
    return None


def _torchvision_weights(name: str, weights: str):
    import torchvision

    if "." in weights:  # "ResNet18_Weights.IMAGENET1K_V1"
        return torchvision.models.get_weight(weights)
    return torchvision.models.get_model_weights(name)[weights]  # "DEFAULT", "IMAGENET1K_V1"


def _torchvision(weights) -> Preprocessing:
    transform = weights.transforms()  # ImageClassification: resize (shorter side), centre crop, normalise
    return Preprocessing(f"torchvision {weights}", tuple(transform.mean), tuple(transform.std),
                         int(transform.resize_size[0]), int(transform.crop_size[0]))


def _timm(model_name: str) -> Preprocessing:
    import timm

    pretrained = timm.models.get_pretrained_cfg(model_name)
    if pretrained is None:
        raise ConfigError("model.init_args.model_name", model_name, "has no timm pretrained config",
                          "a name in timm.list_pretrained(), or finetune.preprocessing=false")
    crop = int(pretrained.input_size[-1])
    resize = math.floor(crop / pretrained.crop_pct)  # timm's eval transform: scale_size = img_size / crop_pct
    return Preprocessing(f"timm {model_name}", tuple(pretrained.mean), tuple(pretrained.std), resize, crop)


def data_config(dataset, augmentation, prep: Preprocessing | None):
    """The dataset and augmentation configs as the data is built: RGB (the weights' mean and std have three
    channels) and, unless mean_std, the weights' sizes (copies; the run's config keeps what the user wrote)."""
    if prep is not None:
        sizes = f", resized to {prep.resize_size}, cropped to {prep.crop_size}, RGB" if prep.resize_size else ""
        log.info("Pre-processing of the pretrained weights (%s): mean %s, std %s%s", prep.source, list(prep.mean),
                 list(prep.std), sizes)
    if prep is None:
        return dataset, augmentation
    dataset, augmentation = dataset.copy(), augmentation.copy()
    dataset.channels = 3
    if prep.resize_size is not None:
        dataset.image_size, augmentation.crop_size = prep.resize_size, prep.crop_size
    return dataset, augmentation


def network_input(resolved: dict) -> tuple[int, int]:
    """(channels, size) of one network input, as the data will be built (pre-flight's dummy batch)."""
    prep = pretrained_preprocessing(resolved)
    ds = resolved["dataset"]
    size = resolved["augmentation"]["crop_size"] or ds["image_size"]
    if prep is None:
        return ds["channels"], size
    return 3, prep.crop_size if prep.resize_size is not None else size


# ---------------------------------------------------------------- head and backbone
def head_module(net: nn.Module) -> nn.Module | None:
    """The network's declared head: its `head` attribute, or timm's get_classifier()."""
    head = getattr(net, "head", None)
    if isinstance(head, nn.Module):
        return head
    if callable(getattr(net, "get_classifier", None)):
        head = net.get_classifier()
        return head if isinstance(head, nn.Module) else None
    return None


def backbone_parameters(net: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in head_module(net).parameters()}
    return [p for p in net.parameters() if id(p) not in head]


def check(resolved: dict, net: nn.Module, processes: int) -> None:
    """Refuse a backbone setting the built network cannot take (pre-flight, before data loads)."""
    mult = resolved["optimizer"].get("backbone_lr_mult", 1.0)
    after = (resolved.get("finetune") or {}).get("unfreeze_after_epochs")
    if mult == 1.0 and after is None:
        return
    key, value = ("optimizer.backbone_lr_mult", mult) if mult != 1.0 else ("finetune.unfreeze_after_epochs", after)
    head = head_module(net)
    own = {id(p) for p in net.parameters()}
    if head is None or not any(id(p) in own for p in head.parameters()):
        raise ConfigError(key, value, f"needs the network's head, and {resolved['model']['class_path']} declares "
                          "none (a `head` attribute: the nn.Module whose parameters are the head)",
                          f"give the network a `head` attribute (README \"Fine-tuning (seed 004)\"), or remove {key}")
    backbone = backbone_parameters(net)
    if not backbone:
        raise ConfigError(key, value, "the network has no parameters outside its head", f"remove {key}")
    if not all(p.requires_grad for p in backbone):
        raise ConfigError(key, value, "the backbone is frozen when built (model.init_args.freeze_backbone=true), "
                          "so the optimizer never holds it", "model.init_args.freeze_backbone=false")
    if after is not None and processes > 1:
        raise ConfigError("finetune.unfreeze_after_epochs", after, f"cannot change which parameters train under "
                          f"DDP ({processes} processes): DDP fixes the set of parameters it reduces when it wraps "
                          "the network", "train on one device, or keep the backbone training "
                          "(finetune.unfreeze_after_epochs=null, a small optimizer.backbone_lr_mult)")


class BackboneFreeze(L.Callback):
    """The backbone trains from epoch `after` on (0-based), the head from the start. requires_grad is set at
    each epoch start from the epoch alone, so a resumed run is in the same state as the uninterrupted run;
    the optimizer holds every parameter from the start (a frozen one has no gradient, so it takes no step and
    gets no optimizer state), so its state_dict has the same groups before and after: resume loads it as is.
    (Lightning's BaseFinetuning adds the backbone's param groups when it unfreezes them instead.)"""

    def __init__(self, after: int):
        self.after = after

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        trainable = trainer.current_epoch >= self.after
        for p in backbone_parameters(pl_module.net):
            p.requires_grad_(trainable)


def callbacks(cfg) -> list[L.Callback]:
    after = cfg.finetune.unfreeze_after_epochs if "finetune" in cfg else None
    return [BackboneFreeze(after)] if after is not None else []
