"""What the classes a config names for the network (`model`) and the training step (`module`) receive: one
place for the pre-flight (a stand-in input, before data loads) and build.py (the real data) alike.
README "Bring your own network and training step" states the same contract.
"""
from __future__ import annotations

import inspect

from trainlab.config import ConfigError
from trainlab.schema import check_init_args, locate

NETWORK_ARGS = ("input_shape", "num_outputs")  # from the data, never in model.init_args
# What trainlab passes a TrainModule (or subclass) besides module.init_args.
TRAIN_MODULE_ARGS = ("net", "task", "num_outputs", "optimizer", "scheduler", "top_k", "no_decay_norm_and_bias",
                     "channels_last", "class_weights")
# What a plain LightningModule receives, each only when its __init__ names it.
PLAIN_MODULE_ARGS = ("net", "input_shape", "num_outputs", "task")


# ---------------------------------------------------------------- the network
def network_class(model: dict):
    """model.class_path (a class or a factory function), its init_args checked against its signature."""
    cls = locate("model.class_path", model["class_path"])
    named = _params(cls)
    if {"in_channels", "input_size"} <= named and "input_shape" not in named and not model["in_channels_arg"]:
        raise ConfigError("model.class_path", model["class_path"], "takes in_channels and input_size, the network "
                          "contract before input_shape", "give its __init__ input_shape (the shape of one input: "
                          "(channels, height, width) for images) and num_outputs")
    for key, arg in (("num_outputs_arg", "num_outputs"), ("in_channels_arg", "input_shape")):
        if model[key] is not None and arg in named:
            raise ConfigError(f"model.{key}", model[key], f"{_name(cls)} takes {arg} itself, which trainlab passes",
                              f"model.{key}=null")
    reserved = NETWORK_ARGS + tuple(model[k] for k in ("num_outputs_arg", "in_channels_arg") if model[k])
    check_init_args("model", cls, model["init_args"], reserved)
    return cls


def network_args(model: dict, cls, input_shape: tuple[int, ...], num_outputs: int) -> dict:
    """input_shape and num_outputs when the signature names them; else under the factory's own names
    (model.num_outputs_arg, model.in_channels_arg: timm's num_classes and in_chans)."""
    named = _params(cls)
    args = {name: value for name, value in (("input_shape", tuple(input_shape)), ("num_outputs", num_outputs))
            if name in named}
    if model["num_outputs_arg"]:
        args[model["num_outputs_arg"]] = num_outputs
    if model["in_channels_arg"]:
        args[model["in_channels_arg"]] = input_shape[0]
    return args


def build_network(model: dict, input_shape: tuple[int, ...], num_outputs: int):
    cls = network_class(model)
    return cls(**network_args(model, cls, input_shape, num_outputs), **model["init_args"])


# ---------------------------------------------------------------- the training step
def module_class(resolved: dict):
    """module.class_path: a LightningModule class (TrainModule or a subclass, or the user's own), init_args
    checked against its signature."""
    import lightning as L

    from trainlab.module import TrainModule

    module = resolved["module"]
    cls = locate("module.class_path", module["class_path"])
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise ConfigError("module.class_path", module["class_path"], "is not a LightningModule class",
                          "module.class_path=trainlab.module.TrainModule, a subclass of it, or your LightningModule")
    reserved = TRAIN_MODULE_ARGS if issubclass(cls, TrainModule) else PLAIN_MODULE_ARGS
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls).parameters.values())
    if issubclass(cls, TrainModule) and takes_any and isinstance(module["init_args"], dict):
        known = _train_module_params(cls)  # its **kwargs end at TrainModule, which takes no others
        for name in module["init_args"]:
            if name not in known + reserved:
                raise ConfigError(f"module.init_args.{name}", module["init_args"][name],
                                  f"is not an argument of {cls.__name__}",
                                  f"use one of {', '.join(known)}" if known else "remove it")
    check_init_args("module", cls, module["init_args"], reserved)
    return cls


def _train_module_params(cls) -> tuple[str, ...]:
    """The named arguments of a TrainModule subclass's __init__ and of those it passes *args/**kwargs on to,
    besides trainlab's own."""
    from trainlab.module import TrainModule

    names: list[str] = []
    for klass in cls.__mro__:
        if klass is TrainModule or not issubclass(klass, TrainModule):
            break
        if "__init__" in vars(klass):
            names += [n for n, p in inspect.signature(klass.__init__).parameters.items() if n != "self"
                      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in TRAIN_MODULE_ARGS + tuple(names)]
    return tuple(names)


def module_args(cls, resolved: dict, net, input_shape: tuple[int, ...], num_outputs: int,
                class_weights: list[float] | None = None) -> dict:
    """A TrainModule (subclass) gets the network, task, optimizer and scheduler settings; a plain
    LightningModule gets those of net, input_shape, num_outputs and task its __init__ names."""
    from trainlab.module import TrainModule

    task = resolved["task"]
    if issubclass(cls, TrainModule):
        return dict(net=net, task=task, num_outputs=num_outputs, optimizer=resolved["optimizer"],
                    scheduler=resolved["scheduler"], top_k=resolved["top_k"] if task == "classification" else 0,
                    no_decay_norm_and_bias=resolved["no_decay_norm_and_bias"],
                    channels_last=resolved["trainer"]["channels_last"], class_weights=class_weights)
    given = {"net": net, "input_shape": tuple(input_shape), "num_outputs": num_outputs, "task": task}
    named = _params(cls)
    return {name: value for name, value in given.items() if name in named}


def build_module(resolved: dict, net, input_shape: tuple[int, ...], num_outputs: int,
                 class_weights: list[float] | None = None):
    """class_weights: dataset.class_weights=balanced, from the training split (TrainModule's loss only)."""
    cls = module_class(resolved)
    return cls(**module_args(cls, resolved, net, input_shape, num_outputs, class_weights),
               **resolved["module"]["init_args"])


def _params(cls) -> set[str]:
    return set(inspect.signature(cls).parameters)


def _name(cls) -> str:
    return getattr(cls, "__name__", str(cls))
