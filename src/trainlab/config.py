"""Checks of config values before any heavy work, with messages that name key, value and fix.

Only omegaconf is imported here: these checks run before torch loads.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

TASKS = ("classification", "regression")
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "image_folder", "image_csv")
FILE_DATASETS = ("image_folder", "image_csv")
BAD_IMAGES = ("skip", "error")  # dataset.bad_images: what an unreadable image file does
LOGGERS = ("tensorboard", "csv")
# Where each torchvision data set's files must be when there is no internet.
TORCHVISION_FOLDERS = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}


class ConfigError(ValueError):
    """A bad config value: names the key, the value, what is wrong and how to fix it."""

    def __init__(self, key: str, value, problem: str, fix: str):
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        super().__init__(f"{key}={value!r}: {problem}. Fix: {fix}")


def _default_monitor(task: str) -> str:
    return "val/loss" if task == "regression" else "val/acc"


def _default_mode(monitor: str) -> str:
    name = str(monitor).rsplit("/", 1)[-1]
    return "max" if name in ("acc", "r2") or name.startswith("top") else "min"


_CLAIMED: dict[str, str] = {}


def _run_folder(resume, fresh: str) -> str:
    """hydra.run.dir / hydra.sweep.dir: the folder being resumed, else `fresh` claimed with an exclusive
    mkdir (`fresh-1`, `fresh-2`... when another run took it in the same second). Memoised: Hydra
    resolves the key more than once per process."""
    if resume:
        return str(resume)
    if fresh not in _CLAIMED:
        candidate, n = fresh, 0
        while True:
            try:
                Path(candidate).parent.mkdir(parents=True, exist_ok=True)
                Path(candidate).mkdir()
                break
            except FileExistsError:
                n += 1
                candidate = f"{fresh}-{n}"
        _CLAIMED[fresh] = candidate
    return _CLAIMED[fresh]


def _hydra_subdir(resume) -> str:
    """A resumed run keeps its original .hydra/ records: the resumed session's go beside them."""
    if not resume:
        return ".hydra"
    from datetime import datetime

    return ".hydra-resumed-" + datetime.now().strftime("%Y%m%d-%H%M%S")


for _name, _fn in (("trainlab.default_monitor", _default_monitor), ("trainlab.default_mode", _default_mode),
                   ("trainlab.run_folder", _run_folder), ("trainlab.hydra_subdir", _hydra_subdir)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


def logged_metrics(task: str, top_k: int) -> list[str]:
    """Every metric name the module logs per epoch (what `monitor` may name)."""
    if task == "regression":
        names = ["loss", "mae", "r2"]
    else:
        names = ["loss", "acc"] + ([f"top{top_k}"] if top_k else [])
    return [f"{stage}/{n}" for stage in ("train", "val") for n in names] + ["lr"]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first bad value. Cheap: reads at most a CSV header and column."""
    _check_choice("task", cfg.task, TASKS)
    _check_choice("dataset.name", cfg.dataset.name, DATASETS)
    _check_choice("logger.kind", cfg.logger.kind, LOGGERS)
    _check_choice("monitor_mode", cfg.monitor_mode, ("min", "max"))
    if not isinstance(cfg.top_k, int) or cfg.top_k < 0:
        raise ConfigError("top_k", cfg.top_k, "must be an integer >= 0", "top_k=2, or top_k=0 to turn it off")
    metrics = logged_metrics(cfg.task, cfg.top_k)
    if cfg.monitor not in metrics:
        raise ConfigError("monitor", cfg.monitor, f"is not a metric the module logs for task={cfg.task}",
                          f"use one of {', '.join(m for m in metrics if m != 'lr')}")
    _check_optimizer(cfg.optimizer)
    _check_scheduler(cfg.scheduler, metrics)
    _check_data(cfg)
    _check_augmentation(cfg.augmentation, cfg.dataset.image_size)
    if cfg.logger.kind != "tensorboard":
        for key in ("histograms", "image_grid"):
            if cfg.logger[key]:
                raise ConfigError(f"logger.{key}", True, f"needs TensorBoard, not logger={cfg.logger.kind}",
                                  f"use logger=tensorboard, or logger.{key}=false")
    bar = cfg.callbacks.progress_bar
    _check_positive("callbacks.progress_bar.min_seconds", bar.min_seconds, inclusive=True,
                    fix="seconds between redraws, e.g. callbacks.progress_bar.min_seconds=0.5 (0: no limit)")
    if cfg.trainer.max_epochs is not None and cfg.trainer.max_epochs < 1 and cfg.trainer.max_steps in (None, -1):
        raise ConfigError("trainer.max_epochs", cfg.trainer.max_epochs, "must be >= 1 when max_steps is -1",
                          "trainer.max_epochs=15, or set trainer.max_steps")


def _check_choice(key, value, choices):
    if value not in choices:
        raise ConfigError(key, value, "is not a known option", f"use one of {', '.join(choices)}")


def _check_positive(key, value, minimum=0.0, inclusive=False, fix=""):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        value >= minimum if inclusive else value > minimum)
    if not ok:
        rel = ">=" if inclusive else ">"
        raise ConfigError(key, value, f"must be a number {rel} {minimum}", fix)


def _check_optimizer(opt) -> None:
    _check_positive("optimizer.lr", opt.lr, fix="a positive learning rate, e.g. optimizer.lr=0.001")
    _check_positive("optimizer.weight_decay", opt.weight_decay, inclusive=True,
                    fix="optimizer.weight_decay=0 (off) or a small positive value such as 0.0001")
    if opt.class_path == "torch.optim.Rprop" and opt.weight_decay:
        raise ConfigError("optimizer.weight_decay", opt.weight_decay, "torch's Rprop has no weight decay",
                          "optimizer.weight_decay=0, or pick another optimizer")


def _check_scheduler(sched, metrics) -> None:
    _check_choice("scheduler.interval", sched.interval, ("epoch", "step"))
    if not isinstance(sched.frequency, int) or sched.frequency < 1:
        raise ConfigError("scheduler.frequency", sched.frequency, "must be an integer >= 1", "scheduler.frequency=1")
    if not isinstance(sched.warmup_steps, int) or sched.warmup_steps < 0:
        raise ConfigError("scheduler.warmup_steps", sched.warmup_steps, "must be an integer >= 0",
                          "scheduler.warmup_steps=0 (off) or the number of warm-up optimizer steps")
    if sched.class_path == "torch.optim.lr_scheduler.ReduceLROnPlateau":
        if sched.monitor not in metrics:
            raise ConfigError("scheduler.monitor", sched.monitor,
                              "is not a metric the module logs, so the plateau scheduler would never step",
                              f"use one of {', '.join(m for m in metrics if m != 'lr')}")
        _check_choice("scheduler.mode", sched.mode, ("min", "max"))


def _check_data(cfg) -> None:
    ds = cfg.dataset
    for key in ("batch_size", "eval_batch_size", "image_size"):
        if not isinstance(ds[key], int) or ds[key] < 1:
            raise ConfigError(f"dataset.{key}", ds[key], "must be an integer >= 1", f"dataset.{key}=64")
    if not isinstance(ds.num_workers, int) or ds.num_workers < 0:
        raise ConfigError("dataset.num_workers", ds.num_workers, "must be an integer >= 0", "dataset.num_workers=0")
    _check_choice("dataset.channels", ds.channels, (1, 3))
    _check_choice("dataset.in_memory", ds.in_memory, (True, False, "auto"))
    if ds.name in FILE_DATASETS and ds.bad_images not in BAD_IMAGES:
        raise ConfigError("dataset.bad_images", ds.bad_images, f"must be one of {', '.join(BAD_IMAGES)}",
                          "dataset.bad_images=skip (leave unreadable files out, with a warning) or =error")
    if ds.in_memory is not True and ds.name not in FILE_DATASETS:
        raise ConfigError("dataset.in_memory", ds.in_memory, f"dataset {ds.name} is an array file, always held in memory",
                          "dataset.in_memory=true (use augmentation.per_sample=true for a per-sample pipeline)")
    _check_fraction("dataset.val_fraction", ds.val_fraction)
    if ds.test_fraction is None:
        if ds.name not in TORCHVISION_FOLDERS:
            raise ConfigError("dataset.test_fraction", None, f"dataset {ds.name} has no test split of its own",
                              "dataset.test_fraction=0.15")
    else:
        _check_fraction("dataset.test_fraction", ds.test_fraction)
        if ds.val_fraction + ds.test_fraction >= 1:
            raise ConfigError("dataset.val_fraction", ds.val_fraction,
                              f"with test_fraction={ds.test_fraction} leaves no training data",
                              "keep val_fraction + test_fraction below 1, e.g. 0.15 and 0.15")
    if cfg.task == "regression" and ds.name != "image_csv":
        raise ConfigError("task", "regression", f"dataset {ds.name} has class labels, not numeric targets",
                          "use task=classification, or dataset=image_csv with a numeric target column")
    if ds.name in FILE_DATASETS:
        root = Path(str(ds.root))
        if not root.is_dir():
            raise ConfigError("dataset.root", str(ds.root), "folder does not exist",
                              "point dataset.root at the folder that holds your images")
    if ds.name == "image_csv":
        _check_csv(ds, cfg.task)


def _check_fraction(key, value):
    if not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(key, value, "must be a fraction strictly between 0 and 1", f"{key}=0.15")


def _check_csv(ds, task) -> None:
    path = Path(str(ds.csv_file))
    if not path.is_file():
        raise ConfigError("dataset.csv_file", str(ds.csv_file), "file does not exist",
                          "point dataset.csv_file at a CSV with a path column and a target column")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for key in ("path_column", "target_column"):
            if ds[key] not in columns:
                raise ConfigError(f"dataset.{key}", ds[key], f"is not a column of {path} (columns: {', '.join(columns)})",
                                  f"dataset.{key}=<one of those columns>")
        if task == "regression":
            for line, row in enumerate(reader, start=2):
                value = row[ds.target_column]
                try:
                    float(value)
                except (TypeError, ValueError):
                    raise ConfigError("dataset.target_column", ds.target_column,
                                      f"holds {value!r} on line {line} of {path}, not a number, and task=regression "
                                      "needs numeric targets",
                                      "fix that row, pick a numeric column, or use task=classification") from None


def _check_augmentation(aug, image_size) -> None:
    if aug.crop_size is not None and (not isinstance(aug.crop_size, int) or not 1 <= aug.crop_size <= image_size):
        raise ConfigError("augmentation.crop_size", aug.crop_size,
                          f"must be an integer between 1 and dataset.image_size={image_size}",
                          f"augmentation.crop_size={min(24, image_size)} or null (no crop)")
    if not isinstance(aug.padding, int) or aug.padding < 0:
        raise ConfigError("augmentation.padding", aug.padding, "must be an integer >= 0", "augmentation.padding=4")


def plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (safe in checkpoints: no OmegaConf pickles)."""
    return OmegaConf.to_container(cfg, resolve=True)


def data_root_hint(name: str, root: str) -> str:
    return os.path.join(root, TORCHVISION_FOLDERS[name])
