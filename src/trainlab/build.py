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
    datamodule: object      # ImageDataModule (or the user's LightningDataModule), set up: input_shape, num_outputs, classes
    module: object          # the module.class_path LightningModule (TrainModule by default) wrapping the network
    trainer_args: dict      # the trainer group's Lightning arguments (compile/channels_last taken out)


def build_parts(cfg, resolved: dict, compile_net: bool = True) -> Parts:
    import torch

    from trainlab import models  # noqa: F401  (class paths point into it)
    from trainlab.seams import build_module, build_network

    datamodule = _datamodule(cfg, resolved)
    if cfg.task == "classification" and cfg.top_k >= datamodule.num_outputs:
        raise ConfigError("top_k", cfg.top_k, f"must be below the number of classes ({datamodule.num_outputs})",
                          "top_k=0 (off) or a smaller k")

    net = build_network(resolved["model"], datamodule.input_shape, datamodule.num_outputs)
    trainer_args = dict(resolved["trainer"])
    if trainer_args.pop("channels_last"):
        net = net.to(memory_format=torch.channels_last)
    if trainer_args.pop("compile") and compile_net:
        net.compile()  # in place: state_dict keys (and checkpoints) stay those of the plain network
    module = build_module(resolved, net, datamodule.input_shape, datamodule.num_outputs,
                          class_weights=getattr(datamodule, "class_weights", None))  # a user DataModule: none
    return Parts(datamodule, module, trainer_args)


def _datamodule(cfg, resolved: dict):
    """The run's datamodule, set up: trainlab's, or the user's own LightningDataModule (user_data.py)."""
    import lightning as L

    from trainlab import finetune
    from trainlab.data import ImageDataModule

    if cfg.dataset.get("class_path") is not None:
        from trainlab.data import user_data

        data = user_data.build(resolved["dataset"], cfg.task, cfg.seed)
        if isinstance(data, L.LightningDataModule):
            return data
    # Pretrained weights' own sizes, mean and std (finetune.preprocessing), the same for training and inference.
    prep = finetune.pretrained_preprocessing(resolved)
    dataset, augmentation = finetune.data_config(cfg.dataset, cfg.augmentation, prep)
    # A run stored before paths.cache_dir existed (evaluate.py, predict.py) decodes without the cache.
    datamodule = ImageDataModule(dataset, augmentation, cfg.task, cfg.seed,
                                 OmegaConf.select(cfg, "paths.cache_dir", default=None), pretrained=prep)
    datamodule.setup("fit")
    return datamodule


def preprocessing(datamodule) -> dict | None:
    """What evaluation does to an input (ImageDataModule.preprocessing: metrics.json, export.py); a user's
    LightningDataModule does its own: None."""
    describe = getattr(datamodule, "preprocessing", None)
    return describe() if callable(describe) else None
