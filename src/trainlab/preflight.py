"""Pre-flight, before any data loads: build what a run builds from its config without the data, so torch's
and Lightning's own errors become one ConfigError naming the key.

- the network, on a dummy batch of the data's shape (channels, crop or image size, the number of outputs
  known without loading: 10 for the bundled and torchvision sets, the class folders of image_folder, the
  distinct targets of an image_csv classification, 1 for regression); a user's data (dataset.class_path) is
  built here instead, checked against its contract, and the network runs on one of its inputs;
- the optimizer on that network's parameter groups, and the scheduler with a stand-in run length,
  stepped a few times (StepLR(step_size=0) fails at its first step, not when built);
- lightning.Trainer(**trainer args): precision, strategy, devices, an accelerator that is not there.

An exception is blamed on the argument whose reset to its default makes it go away, else on the argument
its message names. Memoised on the resolved config: the CLI pre-check and run() both call it.
"""
from __future__ import annotations

import csv
import json
import logging
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

from trainlab.config import ConfigError
from trainlab.schema import BY_PATH, show, check_init_args, locate
from trainlab.seams import module_args, module_class, network_args, network_class

_PASSED: set[str] = set()
STAND_IN_STEPS = 100  # a run length for building schedulers before the data (and so steps per epoch) is known
TRY_STEPS = 3


def check(resolved: dict) -> None:
    """Raise ConfigError if the network, training module, optimizer, scheduler or Trainer cannot be built from
    `resolved` (the config as plain containers, as config.plain gives it), or monitor is not a metric logged."""
    memo = json.dumps(resolved, sort_keys=True, default=str)
    if memo in _PASSED:
        return
    import lightning  # noqa: F401  (before _quiet: importing it sets its loggers' levels)
    import torch
    from omegaconf import OmegaConf

    from trainlab import distributed, finetune

    if resolved["dataset"].get("class_path") is not None:
        user_data_class(resolved["dataset"])  # named and its arguments checked before it is called
    outputs = num_outputs(resolved)
    if resolved["task"] == "classification" and resolved["top_k"] >= outputs:
        raise ConfigError("top_k", resolved["top_k"], f"must be below the number of classes ({outputs})",
                          "top_k=0 (off) or a smaller k")
    module_cls = module_class(resolved)
    _monitor(resolved, module_cls)
    shape, example = stand_in(resolved)
    with torch.random.fork_rng(), _quiet():  # the run's seeded random state stays untouched
        net = _network(resolved, outputs, shape, example)
        finetune.check(resolved, net, distributed.process_count(OmegaConf.create(resolved["trainer"])))
        _module(resolved, module_cls, net, shape, outputs)
        optimizer = _optimizer(resolved, net)
        _scheduler(resolved, optimizer)
        _trainer(resolved["trainer"])
        _loggers_and_callbacks(resolved)
    _PASSED.add(memo)


def user_data_class(ds: dict):
    """The class or function dataset.class_path names, with dataset.init_args checked against its signature,
    and the arguments trainlab passes it (a LightningDataModule's batch_size and seed, when it takes them)."""
    import inspect

    import lightning as L

    from trainlab.data.user_data import PASSED_TO_DATAMODULE

    target = locate("dataset.class_path", ds["class_path"])
    passed = ()
    if inspect.isclass(target) and issubclass(target, L.LightningDataModule):
        passed = tuple(p for p in PASSED_TO_DATAMODULE if p in inspect.signature(target).parameters)
    check_init_args("dataset", target, ds["init_args"], passed)
    return target, passed


def num_outputs(resolved: dict) -> int:
    ds = resolved["dataset"]
    if ds.get("class_path") is not None:  # the user's data is built here (and reused by the run): user_data.py
        from trainlab.data import user_data

        return user_data.describe(ds, resolved["task"], resolved["seed"], resolved["augmentation"]["crop_size"])[1]
    if resolved["task"] == "regression":
        return 1
    if ds["name"] == "image_folder":
        from trainlab.data.sources import class_folders

        return len(class_folders(ds["root"]))
    if ds["name"] == "image_csv":
        with open(ds["csv_file"], newline="") as f:
            return len({row[ds["target_column"]] for row in csv.DictReader(f)})
    return 10  # digits, mnist, fashion_mnist, cifar10


def stand_in(resolved: dict):
    """(shape of one input the network sees, a batch of one such input): the user's data is built for it
    (and kept for the run, user_data.py); trainlab's images are (channels, size, size) after the crop, with
    the pretrained weights' RGB and crop size (finetune.preprocessing)."""
    import torch

    from trainlab import finetune

    ds = resolved["dataset"]
    if ds.get("class_path") is not None:
        from trainlab.data import user_data

        shape, _, example = user_data.describe(ds, resolved["task"], resolved["seed"],
                                               resolved["augmentation"]["crop_size"])
        return tuple(shape), example
    channels, size = finetune.network_input(resolved)
    return (channels, size, size), torch.zeros(1, channels, size, size)


def _network(resolved: dict, outputs: int, shape: tuple[int, ...], example):
    import torch

    from trainlab import models  # noqa: F401  (class paths point into models)

    model = resolved["model"]
    cls = network_class(model)

    def build(args):
        net = cls(**network_args(model, cls, shape, outputs), **args)
        with torch.no_grad():
            out = net.eval()(example)
        return net, out

    net, out = _built_or_blamed("model", cls, model["init_args"], build)
    if tuple(getattr(out, "shape", ())) != (1, outputs):
        fix = ("model.num_outputs_arg=<the factory's argument for the number of outputs, e.g. num_classes>"
               if "num_outputs" not in network_args(model, cls, shape, outputs) and not model["num_outputs_arg"]
               else "a network whose forward returns (batch, num_outputs) logits")
        raise ConfigError("model.class_path", model["class_path"],
                          f"returns shape {tuple(getattr(out, 'shape', ()))} for a batch of 1, not (1, {outputs})", fix)
    return net


def _monitor(resolved: dict, module_cls) -> None:
    """monitor and the plateau scheduler's monitor name metrics a TrainModule (subclass) logs. A plain
    LightningModule's metrics are known only once it logs them: Lightning's checkpoint callback names the
    missing one at the first validation end."""
    from trainlab.module import TrainModule
    from trainlab.optim import PLATEAU

    if not issubclass(module_cls, TrainModule):
        return
    metrics = [m for m in module_cls.logged_metrics(resolved["task"], resolved["top_k"]) if m != "lr"]
    if resolved["monitor"] not in metrics:
        raise ConfigError("monitor", resolved["monitor"], f"is not a metric the module logs for task={resolved['task']}",
                          f"use one of {', '.join(metrics)}")
    sched = resolved["scheduler"]
    if sched["class_path"] == PLATEAU and sched["monitor"] not in metrics:
        raise ConfigError("scheduler.monitor", sched["monitor"],
                          "is not a metric the module logs, so the plateau scheduler would never step",
                          f"use one of {', '.join(metrics)}")


def _module(resolved: dict, cls, net, shape: tuple[int, ...], outputs: int) -> None:
    """module.class_path built around the stand-in network, so its own argument checks run before data loads."""
    _built_or_blamed("module", cls, resolved["module"]["init_args"],
                     lambda a: cls(**module_args(cls, resolved, net, shape, outputs), **a))


def _optimizer(resolved: dict, net):
    from trainlab.optim import build_optimizer

    opt = resolved["optimizer"]
    cls = locate("optimizer.class_path", opt["class_path"])
    check_init_args("optimizer", cls, opt["init_args"], ("lr", "weight_decay"))
    return _built_or_blamed("optimizer", cls, opt["init_args"], lambda args: build_optimizer(
        {**opt, "init_args": args}, net, resolved["no_decay_norm_and_bias"]))


def _scheduler(resolved: dict, optimizer) -> None:
    from trainlab.optim import PLATEAU, build_scheduler

    sched, trainer = resolved["scheduler"], resolved["trainer"]
    if sched["class_path"] is None:
        return
    cls = locate("scheduler.class_path", sched["class_path"])
    steps = trainer["max_steps"] if trainer["max_steps"] > 0 else STAND_IN_STEPS
    epochs = trainer["max_epochs"] if trainer["max_epochs"] and trainer["max_epochs"] > 0 else STAND_IN_STEPS

    def build_and_step(args):
        out = build_scheduler({**sched, "init_args": args}, optimizer, steps, epochs)
        for _ in range(TRY_STEPS):
            optimizer.step()
            out["scheduler"].step(1.0) if sched["class_path"] == PLATEAU else out["scheduler"].step()

    _built_or_blamed("scheduler", cls, sched["init_args"], build_and_step)


def _trainer(args: dict) -> None:
    import lightning as L

    args = {k: v for k, v in args.items() if k not in ("compile", "channels_last")}  # trainlab's, not Lightning's
    _built_or_blamed("trainer", L.Trainer, args, lambda a: L.Trainer(
        **a, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False))


def _loggers_and_callbacks(resolved: dict) -> None:
    """Logger classes and their init_args (not built: a logger may open files or a service), the switches
    they can draw, and each of callbacks.extra built once."""
    from trainlab import loggers
    from trainlab.callbacks import extra_callback_classes

    from lightning.pytorch.callbacks import LearningRateMonitor

    loggers.features(resolved["logger"])
    for key, cls, args in extra_callback_classes(resolved["callbacks"]):
        _built_or_blamed(key, cls, args, lambda a, cls=cls: cls(**a))
        if issubclass(cls, LearningRateMonitor) and not loggers.entries(resolved["logger"]):  # Lightning: at fit
            raise ConfigError(f"{key}.class_path", resolved["callbacks"]["extra"][key.rsplit(".", 1)[1]]["class_path"],
                              "writes to the run's loggers, and logger=none chose none",
                              f"logger=tensorboard (or any logger), or remove {key}")


def _built_or_blamed(section: str, cls, args: dict, build):
    try:
        return build(args)
    except ConfigError:
        raise
    except Exception as err:
        name = _culprit(cls, args, build, err)
        problem = f"{type(err).__name__}: {_first_line(err)}"
        if name is None:
            key = f"{section}.init_args" if section != "trainer" else "trainer"
            raise ConfigError(key, args, f"{_name(cls)} cannot be built ({problem})",
                              f"check {key} against {_name(cls)}'s documentation") from None
        key = f"{section}.{name}" if section == "trainer" else f"{section}.init_args.{name}"
        raise ConfigError(key, args[name], problem, _fix(key, cls, name)) from None


def _culprit(cls, args: dict, build, err: Exception) -> str | None:
    """The argument to blame: the one whose reset to the class default makes the build succeed; else the
    one the message names; else the only one without a default."""
    import inspect

    params = inspect.signature(cls).parameters
    for name, value in args.items():
        default = params[name].default if name in params else inspect.Parameter.empty
        if default is inspect.Parameter.empty or _same(default, value):
            continue
        try:
            build({**args, name: default})
            return name
        except Exception:
            pass
    text = re.sub(r"[\s-]+", "_", str(err).lower())
    named = [n for n in args if re.search(rf"\b{re.escape(n.lower())}\b", text)]
    if named:
        return named[0]
    required = [n for n in args if n in params and params[n].default is inspect.Parameter.empty]
    return required[0] if len(required) == 1 else None


def _same(a, b) -> bool:
    try:
        return bool(a == b) or (isinstance(a, tuple) and list(a) == b)
    except Exception:
        return False


def _fix(key: str, cls, name: str) -> str:
    import inspect

    if key in BY_PATH:
        return BY_PATH[key].fix
    param = inspect.signature(cls).parameters.get(name)  # None: taken through **kwargs (a TrainModule subclass)
    default = inspect.Parameter.empty if param is None else param.default
    if default is inspect.Parameter.empty:
        return f"a value {_name(cls)} accepts for {name} (see its documentation)"
    return f"{key}={show(default)} ({_name(cls)}'s default)"


def _name(cls) -> str:
    return getattr(cls, "__name__", str(cls))


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else repr(err)
    return line if len(line) <= 200 else line[:197] + "..."


@contextmanager
def _quiet():
    """The stand-in Trainer and schedulers would print and warn as the real ones will again."""
    names = ("lightning.pytorch", "lightning.fabric")
    levels = [logging.getLogger(n).level for n in names]
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in zip(names, levels):
            logging.getLogger(n).setLevel(level)

