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
    datamodule: object      # ImageDataModule, set up (splits, class names, normalisation stats)
    module: object          # TrainModule wrapping the network
    trainer_args: dict      # the trainer group's Lightning arguments (compile/channels_last taken out)


def build_parts(cfg, resolved: dict, compile_net: bool = True) -> Parts:
    import torch

    from trainlab import finetune, models  # noqa: F401  (class paths point into models)
    from trainlab.data import ImageDataModule
    from trainlab.module import TrainModule
    from trainlab.optim import check_init_args, locate

    # Pretrained weights' own sizes, mean and std (finetune.preprocessing), the same for training and inference.
    prep = finetune.pretrained_preprocessing(resolved)
    dataset, augmentation = finetune.data_config(cfg.dataset, cfg.augmentation, prep)
    # A run stored before paths.cache_dir existed (evaluate.py, predict.py) decodes without the cache.
    datamodule = ImageDataModule(dataset, augmentation, cfg.task, cfg.seed,
                                 OmegaConf.select(cfg, "paths.cache_dir", default=None),
                                 pretrained=prep)
    datamodule.setup("fit")
    if cfg.task == "classification" and cfg.top_k >= datamodule.num_outputs:
        raise ConfigError("top_k", cfg.top_k, f"must be below the number of classes ({datamodule.num_outputs})",
                          "top_k=0 (off) or a smaller k")

    model_cls = locate("model.class_path", cfg.model.class_path)
    check_init_args("model", model_cls, resolved["model"]["init_args"], ("in_channels", "input_size", "num_outputs"))
    net = model_cls(in_channels=datamodule.in_channels, input_size=datamodule.input_size,
                    num_outputs=datamodule.num_outputs, **resolved["model"]["init_args"])
    trainer_args = dict(resolved["trainer"])
    channels_last = trainer_args.pop("channels_last")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if trainer_args.pop("compile") and compile_net:
        net.compile()  # in place: state_dict keys (and checkpoints) stay those of the plain network
    module = TrainModule(net, cfg.task, datamodule.num_outputs, resolved["optimizer"], resolved["scheduler"],
                         top_k=cfg.top_k if cfg.task == "classification" else 0,
                         no_decay_norm_and_bias=cfg.no_decay_norm_and_bias, channels_last=channels_last,
                         class_weights=datamodule.class_weights)
    return Parts(datamodule, module, trainer_args)
