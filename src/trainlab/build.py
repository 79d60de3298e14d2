"""The parts of a run built from a config: datamodule (set up), network, TrainModule.

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
    module: object          # TrainModule wrapping the network
    trainer_args: dict      # the trainer group's Lightning arguments (compile/channels_last taken out)


def build_parts(cfg, resolved: dict, compile_net: bool = True) -> Parts:
    import torch

    from trainlab import models  # noqa: F401  (class paths point into it)
    from trainlab.module import TrainModule
    from trainlab.optim import check_init_args, locate
    from trainlab.preflight import NETWORK_ARGS

    datamodule = _datamodule(cfg, resolved)
    if cfg.task == "classification" and cfg.top_k >= datamodule.num_outputs:
        raise ConfigError("top_k", cfg.top_k, f"must be below the number of classes ({datamodule.num_outputs})",
                          "top_k=0 (off) or a smaller k")

    model_cls = locate("model.class_path", cfg.model.class_path)
    check_init_args("model", model_cls, resolved["model"]["init_args"], NETWORK_ARGS)
    net = model_cls(**network_args(cfg.model.class_path, model_cls, datamodule.input_shape, datamodule.num_outputs),
                    **resolved["model"]["init_args"])
    trainer_args = dict(resolved["trainer"])
    channels_last = trainer_args.pop("channels_last")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if trainer_args.pop("compile") and compile_net:
        net.compile()  # in place: state_dict keys (and checkpoints) stay those of the plain network
    module = TrainModule(net, cfg.task, datamodule.num_outputs, resolved["optimizer"], resolved["scheduler"],
                         top_k=cfg.top_k if cfg.task == "classification" else 0,
                         no_decay_norm_and_bias=cfg.no_decay_norm_and_bias, channels_last=channels_last,
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


def network_args(class_path: str, cls, input_shape: tuple, num_outputs: int) -> dict:
    """What trainlab passes a network: input_shape and num_outputs; a network whose signature names
    in_channels (and not input_shape) gets in_channels and input_size instead (images only)."""
    import inspect

    params = inspect.signature(cls).parameters
    if "input_shape" in params or "in_channels" not in params:
        return {"input_shape": tuple(input_shape), "num_outputs": num_outputs}
    if len(input_shape) != 3:
        raise ConfigError("model.class_path", class_path, f"takes images (in_channels, input_size), and the data's "
                          f"inputs have shape {tuple(input_shape)}", "model=mlp, or a network that takes input_shape")
    return {"in_channels": input_shape[0], "input_size": input_shape[-1], "num_outputs": num_outputs}
