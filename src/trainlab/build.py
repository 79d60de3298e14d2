"""The parts of a run built from a config: datamodule (set up), network, training module (seams.py).

One function, used by training (train.py) and by re-testing and predicting from a checkpoint
(inference.py), so a checkpoint is always loaded into exactly the network it was trained as.
"""
from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from trainlab.config import ConfigError


@dataclass
class Parts:
    datamodule: object      # ImageDataModule, set up (splits, class names, normalisation stats)
    module: object          # the module.class_path LightningModule (TrainModule by default) wrapping the network
    trainer_args: dict      # the trainer group's Lightning arguments (compile/channels_last taken out)


def build_parts(cfg, resolved: dict, compile_net: bool = True) -> Parts:
    import torch

    from trainlab import models  # noqa: F401  (class paths point into it)
    from trainlab.data import ImageDataModule
    from trainlab.seams import build_module, build_network

    # A run stored before paths.cache_dir existed (evaluate.py, predict.py) decodes without the cache.
    datamodule = ImageDataModule(cfg.dataset, cfg.augmentation, cfg.task, cfg.seed,
                                 OmegaConf.select(cfg, "paths.cache_dir", default=None))
    datamodule.setup("fit")
    if cfg.task == "classification" and cfg.top_k >= datamodule.num_outputs:
        raise ConfigError("top_k", cfg.top_k, f"must be below the number of classes ({datamodule.num_outputs})",
                          "top_k=0 (off) or a smaller k")

    net = build_network(resolved["model"], datamodule.input_shape, datamodule.num_outputs)
    trainer_args = dict(resolved["trainer"])
    if trainer_args.pop("channels_last"):
        net = net.to(memory_format=torch.channels_last)
    if trainer_args.pop("compile") and compile_net:
        net.compile()  # in place: state_dict keys (and checkpoints) stay those of the plain network
    module = build_module(resolved, net, datamodule.input_shape, datamodule.num_outputs)
    return Parts(datamodule, module, trainer_args)
