"""Optimizer and LR scheduler from config: parameter groups, runtime lengths, warm-up, stepping metadata.

One place for how learning rates move: the module calls build_optimizer/build_scheduler and
warmup_factor, nothing else touches learning rates.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from trainlab.config import ConfigError
from trainlab.schema import PLATEAU, check_init_args, locate  # noqa: F401  (build.py imports them from here)

# Scheduler arguments that are the run's length: injected from the trainer, never written in YAML.
RUNTIME_LENGTH = {"torch.optim.lr_scheduler.CosineAnnealingLR": "T_max",
                  "torch.optim.lr_scheduler.OneCycleLR": "total_steps"}


class TimeDecayLR(LRScheduler):
    """Seed 001's time-based decay: lr_n = lr_0 / (1 + decay * n)."""

    def __init__(self, optimizer: torch.optim.Optimizer, decay: float, last_epoch: int = -1):
        self.decay = decay
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base / (1.0 + self.decay * self.last_epoch) for base in self.base_lrs]


def param_groups(net: nn.Module, weight_decay: float, no_decay_norm_and_bias: bool, lr: float,
                 backbone_lr_mult: float = 1.0) -> list[dict]:
    """Weight decay on weight matrices and kernels only: biases and norm weights (1-D) are exempt. With a
    backbone_lr_mult, the head's groups come first (their lr is the logged `lr`), then the backbone's at
    lr * backbone_lr_mult (finetune.head_module names the head)."""
    params = [p for p in net.parameters() if p.requires_grad]
    if backbone_lr_mult == 1.0:
        return _decay_groups(params, weight_decay, no_decay_norm_and_bias)
    from trainlab.finetune import head_module

    head = {id(p) for p in head_module(net).parameters()}
    parts = (([p for p in params if id(p) in head], lr),
             ([p for p in params if id(p) not in head], lr * backbone_lr_mult))
    return [{**group, "lr": part_lr} for part, part_lr in parts
            for group in _decay_groups(part, weight_decay, no_decay_norm_and_bias)]


def _decay_groups(params: list, weight_decay: float, no_decay_norm_and_bias: bool) -> list[dict]:
    if not weight_decay:
        return [{"params": params}]
    if not no_decay_norm_and_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(cfg: dict, net: nn.Module, no_decay_norm_and_bias: bool) -> torch.optim.Optimizer:
    cls = locate("optimizer.class_path", cfg["class_path"])
    init_args = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["init_args"].items()}
    check_init_args("optimizer", cls, init_args, ("lr", "weight_decay"))
    groups = param_groups(net, cfg["weight_decay"], no_decay_norm_and_bias, cfg["lr"],
                          cfg.get("backbone_lr_mult", 1.0))  # runs stored before the key: 1
    return cls(groups, lr=cfg["lr"], **init_args)


def build_scheduler(cfg: dict, optimizer: torch.optim.Optimizer, total_steps: float, max_epochs: int) -> dict | None:
    """Lightning's lr_scheduler dict, or None for a constant learning rate.

    total_steps (optimizer steps of the whole run) and max_epochs come from the trainer.
    """
    if cfg["class_path"] is None:
        return None
    cls = locate("scheduler.class_path", cfg["class_path"])
    init_args = dict(cfg["init_args"])
    length_arg = RUNTIME_LENGTH.get(cfg["class_path"])
    reserved = ((length_arg,) if length_arg else ()) + (("mode",) if cfg["class_path"] == PLATEAU else ())
    check_init_args("scheduler", cls, init_args, reserved)
    if length_arg:
        length = total_steps if cfg["interval"] == "step" else max_epochs
        if length is None or not math.isfinite(length) or length < 1:
            raise ConfigError("trainer.max_epochs", max_epochs, f"{cls.__name__} needs a finite run length",
                              "set trainer.max_epochs or trainer.max_steps")
        init_args[length_arg] = max(1, math.ceil(length / cfg["frequency"]))
    if cfg["class_path"] == "torch.optim.lr_scheduler.OneCycleLR":
        # One max_lr per group, in the groups' lr ratios (a backbone_lr_mult holds through the cycle).
        max_lr = optimizer.defaults["lr"] if init_args.get("max_lr") is None else init_args["max_lr"]
        if not isinstance(max_lr, (list, tuple)):
            init_args["max_lr"] = [max_lr * group["lr"] / optimizer.defaults["lr"] for group in optimizer.param_groups]
        if init_args.get("cycle_momentum", True) and not {"momentum", "betas"} & set(optimizer.defaults):
            raise ConfigError("scheduler.init_args.cycle_momentum", True,
                              f"{type(optimizer).__name__} has neither momentum nor betas to cycle",
                              "scheduler.init_args.cycle_momentum=false, or an optimizer such as sgd or adam")
    if cfg["class_path"] == PLATEAU:
        init_args["mode"] = cfg["mode"]
    scheduler = cls(optimizer, **init_args)
    out = {"scheduler": scheduler, "interval": cfg["interval"], "frequency": cfg["frequency"]}
    if cfg["class_path"] == PLATEAU:
        out.update(monitor=cfg["monitor"], strict=True)
    return out


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up multiplier for optimizer step `step` (0-based): 1/N, 2/N, ..., then 1."""
    return 1.0 if step >= warmup_steps else (step + 1) / warmup_steps
