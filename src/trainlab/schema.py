"""The config contract: every key trainlab reads, declared once with its type, range or choices, a fix
example and a one-line doc. `check(cfg)` refuses an unknown key, a missing one, a value of the wrong
type or range, and a key that nothing reads in this config; README's key tables are generated from
KEYS (`python -m trainlab.schema --markdown`).

A plain table checked by trainlab rather than Hydra structured configs: Hydra would raise its own type
errors during composition, in its own format; here every mistake is one ConfigError (key, value, fix).
Class arguments (`<group>.init_args`) stay open: they are checked against the class's signature
(`check_init_args`), the same helper for every `class_path` + `init_args` pair, trainlab's or a user's.

Imports omegaconf and the stdlib only: `python train.py --help` stays fast.
"""
from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from trainlab.config import ConfigError

PLATEAU = "torch.optim.lr_scheduler.ReduceLROnPlateau"
FILE_DATASETS = ("image_folder", "image_csv")
FLOAT32_MAX = 3.4e38
TORCHVISION_DATASETS = ("mnist", "fashion_mnist", "cifar10")


# ---------------------------------------------------------------- value rules: what a key accepts
@dataclass(frozen=True)
class Rule:
    text: str                        # what the key accepts, in words (messages and README)
    ok: Callable[[Any], bool]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(lo: int | None = None, hi: int | None = None) -> Rule:
    text = "an integer" + (f" >= {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
    return Rule(text, lambda v: isinstance(v, int) and not isinstance(v, bool)
                and (lo is None or v >= lo) and (hi is None or v <= hi))


def number(lo: float | None = None, hi: float | None = None, open_lo: bool = False, open_hi: bool = False) -> Rule:
    if lo is not None and hi is not None:
        text = f"a number in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
    elif lo is not None:
        text = f"a finite number {'>' if open_lo else '>='} {lo:g}"
    else:
        text = "a finite number"
    return Rule(text, lambda v: _is_number(v) and (lo is None or (v > lo if open_lo else v >= lo))
                and (hi is None or (v < hi if open_hi else v <= hi)))


BOOL = Rule("true or false", lambda v: isinstance(v, bool))
TEXT = Rule("a text", lambda v: isinstance(v, str) and v != "")
MAPPING = Rule("a mapping ({} for none)", lambda v: isinstance(v, dict))


def one_of(*choices) -> Rule:
    # type-exact: 1 is not True, "1" is not 1
    return Rule("one of " + ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices),
                lambda v: any(type(v) is type(c) and v == c for c in choices))


def nullable(rule: Rule) -> Rule:
    return Rule(f"{rule.text}, or null", lambda v: v is None or rule.ok(v))


def either(*rules: Rule) -> Rule:
    return Rule(", or ".join(r.text for r in rules), lambda v: any(r.ok(v) for r in rules))


TEXT_LIST = Rule("a list of texts ([] for none)", lambda v: isinstance(v, list) and all(TEXT.ok(x) for x in v))
INT_LIST = Rule("a list of integers", lambda v: isinstance(v, list) and all(integer().ok(x) for x in v))
# [low, high]: a zoom range (> 0) and an area fraction (in (0, 1]).
RANGE = Rule("a list [low, high] of numbers with 0 < low <= high",
             lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) and 0 < v[0] <= v[1])
RANGE_01 = Rule("a list [low, high] of numbers with 0 < low <= high <= 1", lambda v: RANGE.ok(v) and v[1] <= 1)
# Lightning's limit_*_batches / overfit_batches: an int counts batches, a float is a fraction of them.
BATCHES = either(integer(1), number(0, 1, open_lo=True))
BATCHES_OR_OFF = either(integer(0), number(0, 1))


# ---------------------------------------------------------------- when a key is read
def _dataset(cfg) -> str | None:
    """The built-in source read, or None when dataset.class_path names the user's data."""
    return None if _user_data(cfg) else cfg.dataset.name


def _user_data(cfg) -> bool:
    return cfg.dataset.get("class_path") is not None


def _plateau(cfg) -> bool:
    return cfg.scheduler.class_path == PLATEAU


def _oversample(cfg):
    return OmegaConf.select(cfg, "dataset.oversample", default="none")  # runs stored before the key: none


def _in_memory(cfg) -> bool:
    """Data held as tensors and batched by index: no DataLoader workers (auto may stream: counted as read)."""
    if _user_data(cfg):  # a Dataset streams unless stacked (in_memory); a LightningDataModule's loaders are its own
        return cfg.dataset.in_memory is True
    return not cfg.augmentation.per_sample and (cfg.dataset.name not in FILE_DATASETS or cfg.dataset.in_memory is True)


ANY = object()  # Used.off for a key whose value may stay as composed when it is not read
REQUIRED = object()  # Key.default of a key that has none


@dataclass(frozen=True)
class Used:
    """When a key is read: `test(cfg)`; otherwise it must hold `off` (so nothing the user sets is ignored)."""
    test: Callable[[Any], bool]
    why: str          # "only <...> reads it"
    off: Any = None


def _randaugment(off: int) -> Used:
    return Used(lambda c: c.augmentation.policy.name == "randaugment", "only augmentation.policy.name=randaugment reads it",
                off)


PLATEAU_ONLY = Used(_plateau, "only the plateau scheduler (ReduceLROnPlateau) reads it")
CSV_ONLY = Used(lambda c: _dataset(c) == "image_csv", "only dataset=image_csv reads it")
LR_FIND_ONLY = Used(lambda c: c.tune.mode == "lr_find", "only tune=lr_find reads it")
BATCH_SIZE_ONLY = Used(lambda c: c.tune.mode == "batch_size", "only tune=batch_size reads it")
FILES_ONLY = Used(lambda c: _dataset(c) in FILE_DATASETS, "only dataset=image_folder and image_csv read it")


@dataclass(frozen=True)
class Key:
    path: str
    rule: Rule
    fix: str                         # a value that works, as it is typed on the command line
    doc: str
    used: Used | None = None         # None: always read
    needed: bool = False             # when read, null is not enough (a data path, a CSV column)
    optional: bool = False           # may be absent (set by the sweeper, or added by a later version)
    default: Any = REQUIRED          # taken when the key is absent (a user's dataset YAML: see fill_defaults)


KEYS: tuple[Key, ...] = (
    # top level
    Key("seed", integer(0, 2**32 - 1), "seed=42", "seeds Python, NumPy, torch, the data split and the augmentation"),
    Key("task", one_of("classification", "regression"), "task=classification",
        "classification (cross-entropy, accuracy, top-k) or regression (MSE, MAE, R2; needs dataset=image_csv)"),
    Key("monitor", TEXT, "monitor=val/acc", "metric that picks the best checkpoint, early stopping and sweep order"),
    Key("monitor_mode", one_of("min", "max"), "monitor_mode=max", "max for acc/top-k/r2, min otherwise (follows monitor)"),
    Key("top_k", integer(0), "top_k=2", "also log top-k accuracy (0: off); below the number of classes"),
    Key("no_decay_norm_and_bias", BOOL, "no_decay_norm_and_bias=true", "no weight decay on biases and norm weights"),
    Key("test_after_fit", BOOL, "test_after_fit=true", "test the best checkpoint on the held-out test split at the end"),
    Key("finetune.preprocessing", one_of("auto", "mean_std", False), "finetune.preprocessing=false",
        "pretrained weights (torchvision, timm): auto resizes, crops and normalises as they expect (RGB); mean_std "
        "takes their mean and std only; false keeps the data's own", optional=True),
    Key("finetune.unfreeze_after_epochs", nullable(integer(1)), "finetune.unfreeze_after_epochs=2",
        "train the network's head alone for the first N epochs, then the backbone too (null: off)", optional=True),
    Key("run_name", nullable(Rule("a text or number", lambda v: isinstance(v, str) or _is_number(v))),
        "run_name=my_run", "free text stored with the run's metrics"),
    Key("tags", TEXT_LIST, "tags=[baseline,digits]", "labels stored in metrics.json, sweep reports and TensorBoard's HPARAMS"),
    Key("print_config", BOOL, "print_config=true", "print the resolved config as a tree when the run starts"),
    Key("figures", BOOL, "figures=true", "figures in <run>/figures/ and TensorBoard: loss and metric curves; on the "
        "test split a confusion matrix and the most confidently wrong images, or predicted vs true with R2"),
    Key("tune.mode", one_of("lr_find", "batch_size"), "tune=lr_find",
        "set by the tune group (tune=lr_find or tune=batch_size): Lightning's Tuner instead of training", optional=True),
    Key("tune.min_lr", number(0, FLOAT32_MAX, open_lo=True), "tune.min_lr=1e-8", "lr_find: the smallest learning rate tried",
        used=LR_FIND_ONLY, optional=True),
    Key("tune.max_lr", number(0, FLOAT32_MAX, open_lo=True), "tune.max_lr=1.0", "lr_find: the largest learning rate tried",
        used=LR_FIND_ONLY, optional=True),
    Key("tune.num_training", integer(2), "tune.num_training=100", "lr_find: training steps, one learning rate each",
        used=LR_FIND_ONLY, optional=True),
    Key("tune.early_stop_threshold", nullable(number(1, open_lo=True)), "tune.early_stop_threshold=4.0",
        "lr_find: stop when the loss exceeds this times the best so far (null: never)", used=LR_FIND_ONLY, optional=True),
    Key("tune.init_val", integer(1), "tune.init_val=2", "batch_size: the first batch size tried",
        used=BATCH_SIZE_ONLY, optional=True),
    Key("tune.max_trials", integer(1), "tune.max_trials=13", "batch_size: doublings at most",
        used=BATCH_SIZE_ONLY, optional=True),
    Key("tune.steps_per_trial", integer(1), "tune.steps_per_trial=3", "batch_size: training steps per batch size tried",
        used=BATCH_SIZE_ONLY, optional=True),
    Key("resume", nullable(TEXT), "resume=outputs/2026-01-31/12-00-00",
        "a run folder to continue (with -m: a sweep folder whose unfinished jobs continue)"),
    Key("paths.data_dir", TEXT, "paths.data_dir=data", "where torchvision data sets are downloaded / looked for"),
    Key("paths.output_dir", TEXT, "paths.output_dir=outputs/my_run", "the run folder (set by Hydra)"),
    Key("paths.cache_dir", nullable(TEXT), "paths.cache_dir=.cache/trainlab", "where decoded data sets are cached",
        optional=True),
    Key("optuna_trial.storage", TEXT, "remove optuna_trial (the sweeper sets it)",
        "the Optuna study's storage URL (set by the sweeper only)", optional=True),
    Key("optuna_trial.study", TEXT, "remove optuna_trial (the sweeper sets it)",
        "the Optuna study's name (set by the sweeper only)", optional=True),
    Key("optuna_trial.trial_id", integer(0), "remove optuna_trial (the sweeper sets it)",
        "the trial's id in the storage (set by the sweeper only)", optional=True),
    Key("optuna_trial.pruner", MAPPING, "remove optuna_trial (the sweeper sets it)",
        "the study's pruner, as a _target_ mapping (set by the sweeper only)", optional=True),
    # model
    Key("model.class_path", TEXT, "model.class_path=trainlab.models.SeedCNN",
        "the network class, or a factory function returning an nn.Module; receives input_shape and num_outputs "
        "when its signature names them"),
    Key("model.num_outputs_arg", nullable(TEXT), "model.num_outputs_arg=num_classes",
        "a factory's own argument for the number of outputs (timm, torchvision get_model: num_classes); null: none",
        default=None),
    Key("model.in_channels_arg", nullable(TEXT), "model.in_channels_arg=in_chans",
        "a factory's own argument for the input channels (timm: in_chans); null: none", default=None),
    Key("model.init_args", MAPPING, "model.init_args={}", "the network's own arguments (checked against its signature)",
        default={}),
    # module
    Key("module.class_path", TEXT, "module.class_path=trainlab.module.TrainModule",
        "the training step's LightningModule: TrainModule, a subclass overriding its hooks, or your own"),
    Key("module.init_args", MAPPING, "module.init_args={}",
        "the module's own arguments (checked against its signature; built once before any data loads)", default={}),
    # optimizer
    Key("optimizer.class_path", TEXT, "optimizer.class_path=torch.optim.Adam", "the torch.optim optimizer class"),
    Key("optimizer.lr", number(0, FLOAT32_MAX, open_lo=True), "optimizer.lr=0.001",
        "learning rate (beyond float32's range it overflows the weights at the first step)"),
    Key("optimizer.weight_decay", number(0), "optimizer.weight_decay=0",
        "weight decay (0: off); only on weights of conv/linear layers by default"),
    Key("optimizer.backbone_lr_mult", number(0, open_lo=True), "optimizer.backbone_lr_mult=0.1",
        "the backbone's learning rate as a multiple of lr, which the network's head keeps", optional=True),
    Key("optimizer.init_args", MAPPING, "optimizer.init_args={}", "the optimizer class's own arguments"),
    # scheduler
    Key("scheduler.class_path", nullable(TEXT), "scheduler.class_path=null",
        "the LR scheduler class (null: constant learning rate)"),
    Key("scheduler.interval", one_of("epoch", "step"), "scheduler.interval=epoch", "the scheduler steps every epoch or every optimizer step"),
    Key("scheduler.frequency", integer(1), "scheduler.frequency=1", "steps the scheduler every N intervals"),
    Key("scheduler.monitor", nullable(TEXT), "scheduler.monitor=val/loss", "plateau: the metric watched",
        used=PLATEAU_ONLY, needed=True),
    Key("scheduler.mode", nullable(one_of("min", "max")), "scheduler.mode=min", "plateau: min or max of the monitor",
        used=PLATEAU_ONLY, needed=True),
    Key("scheduler.warmup_steps", integer(0), "scheduler.warmup_steps=0", "linear warm-up over N optimizer steps (0: off)"),
    Key("scheduler.init_args", MAPPING, "scheduler.init_args={}", "the scheduler class's own arguments",
        used=Used(lambda c: c.scheduler.class_path is not None, "scheduler.class_path is null (constant lr)", {})),
    # dataset
    Key("dataset.name", nullable(one_of("digits", "mnist", "fashion_mnist", "cifar10", *FILE_DATASETS)),
        "dataset.name=digits", "the built-in data source (with dataset.class_path: not read, any value is left as is)",
        used=Used(lambda c: not _user_data(c), "dataset.class_path names your own data", ANY), needed=True,
        default=None),
    Key("dataset.class_path", nullable(TEXT), "dataset.class_path=mypkg.data.Wine",
        "your data: an image source function, a torch Dataset of (x, y) tensors, or a LightningDataModule "
        "(README \"Bring your own data\"; null: the built-in dataset.name)", optional=True, default=None),
    Key("dataset.init_args", MAPPING, "dataset.init_args={}", "the arguments of dataset.class_path (checked against "
        "its signature)", used=Used(_user_data, "dataset.class_path is null (a built-in source)", {}), optional=True,
        default={}),
    Key("dataset.root", nullable(TEXT), "dataset.root=/path/to/images", "folder of the data (null: bundled)",
        used=Used(lambda c: _dataset(c) not in (None, "digits"), "dataset=digits is bundled, and dataset.class_path "
                  "names your own data"), needed=True, default=None),
    Key("dataset.download", BOOL, "dataset.download=false", "download a torchvision data set when missing",
        used=Used(lambda c: _dataset(c) in TORCHVISION_DATASETS, "only mnist, fashion_mnist and cifar10 download", False),
        default=False),
    Key("dataset.image_size", nullable(integer(1, 4096)), "dataset.image_size=28",
        "images are resized to this once, when loaded (your image source: null keeps its size; not read for "
        "tensor Datasets and DataModules)", default=None),
    Key("dataset.channels", nullable(one_of(1, 3)), "dataset.channels=1",
        "1 = grayscale, 3 = RGB (your image source: null keeps its channels)", default=None),
    Key("dataset.val_fraction", number(0, 1, True, True), "dataset.val_fraction=0.15",
        "of the training split, held out for validation", default=0.15),
    Key("dataset.test_fraction", nullable(number(0, 1, True, True)), "dataset.test_fraction=0.15",
        "of all data, held out for the final test (null: the source's own test split)", default=0.15),
    Key("dataset.batch_size", integer(1), "dataset.batch_size=64", "training batch size (per process)", default=64),
    Key("dataset.eval_batch_size", integer(1), "dataset.eval_batch_size=256", "validation and test batch size",
        default=256),
    Key("dataset.oversample", either(one_of("none", "balanced"), number(0, 1, open_lo=True)), "dataset.oversample=balanced",
        "training samples drawn with replacement, weighted by class (regression: target bin) count^-power: "
        "balanced (power 1), a power in (0, 1], or none", optional=True, default="none"),
    Key("dataset.oversample_bins", integer(2), "dataset.oversample_bins=10",
        "regression: equal-width bins of the training targets that oversample balances",
        used=Used(lambda c: c.task == "regression" and _oversample(c) != "none",
                  "only task=regression with dataset.oversample reads it", 10), optional=True, default=10),
    Key("dataset.class_weights", one_of("none", "balanced"), "dataset.class_weights=balanced",
        "balanced: the training loss weighs each class by its inverse frequency in the training split",
        used=Used(lambda c: c.task == "classification", "task=regression has no classes", "none"), optional=True,
        default="none"),
    Key("dataset.num_workers", integer(0), "dataset.num_workers=0",
        "DataLoader workers for file-backed, per-sample or streamed Dataset data",
        used=Used(lambda c: not _in_memory(c), "data held in memory is batched without DataLoader workers", 0),
        default=0),
    Key("dataset.in_memory", one_of(True, False, "auto"), "dataset.in_memory=true",
        "image files, or your Dataset's items: hold them in memory as one tensor (auto: when under memory_limit_mb)",
        default="auto"),
    Key("dataset.memory_limit_mb", number(0, open_lo=True), "dataset.memory_limit_mb=4096",
        "in_memory=auto: hold decoded images (or stacked items) in memory below this size", default=4096),
    Key("dataset.bad_images", nullable(one_of("skip", "error")), "dataset.bad_images=skip",
        "unreadable image files: skip (warn, count, leave out) or error", used=FILES_ONLY, needed=True, default=None),
    Key("dataset.csv_file", nullable(TEXT), "dataset.csv_file=scores.csv", "image_csv: the CSV file",
        used=CSV_ONLY, needed=True, default=None),
    Key("dataset.path_column", nullable(TEXT), "dataset.path_column=path", "image_csv: column of image paths",
        used=CSV_ONLY, needed=True, default=None),
    Key("dataset.target_column", nullable(TEXT), "dataset.target_column=target", "image_csv: column of targets",
        used=CSV_ONLY, needed=True, default=None),
    # augmentation
    Key("augmentation.crop_size", nullable(integer(1)), "augmentation.crop_size=null",
        "train: random crop, eval: centre crop to this size (null: the image size)"),
    Key("augmentation.padding", integer(0), "augmentation.padding=4", "zero padding on each side before the random crop"),
    Key("augmentation.hflip", BOOL, "augmentation.hflip=true", "random horizontal flip of training images"),
    Key("augmentation.normalize", BOOL, "augmentation.normalize=true", "normalise by the training split's channel stats"),
    Key("augmentation.per_sample", BOOL, "augmentation.per_sample=false",
        "torchvision transforms per sample in DataLoader workers (slower)"),
    Key("augmentation.affine.degrees", number(0, 180), "augmentation.affine.degrees=15",
        "random rotation by up to +-degrees (0: off)"),
    Key("augmentation.affine.translate", number(0, 1), "augmentation.affine.translate=0.1",
        "random shift by up to this fraction of the width and height (0: off)"),
    Key("augmentation.affine.scale", RANGE, "augmentation.affine.scale=[0.9,1.1]",
        "random zoom factor drawn from [low, high] ([1,1]: off)"),
    Key("augmentation.color.brightness", number(0, 1), "augmentation.color.brightness=0.2",
        "brightness factor drawn from [1-b, 1+b] (0: off)"),
    Key("augmentation.color.contrast", number(0, 1), "augmentation.color.contrast=0.2",
        "contrast factor drawn from [1-c, 1+c] (0: off)"),
    Key("augmentation.color.saturation", number(0, 1), "augmentation.color.saturation=0.2",
        "saturation factor drawn from [1-s, 1+s] (0: off; needs dataset.channels=3)"),
    Key("augmentation.color.hue", number(0, 0.5), "augmentation.color.hue=0.05",
        "hue shift drawn from [-h, h] (0: off; needs dataset.channels=3)"),
    Key("augmentation.policy.name", nullable(one_of("trivial", "randaugment")), "augmentation.policy.name=trivial",
        "TrivialAugment (one operation per image) or RandAugment (num_ops per image); null: off"),
    Key("augmentation.policy.num_ops", integer(1, 10), "augmentation.policy.num_ops=2",
        "randaugment: distinct operations per image", used=_randaugment(2)),
    Key("augmentation.policy.magnitude", integer(1, 29), "augmentation.policy.magnitude=9",
        "randaugment: strength of every operation, of 30", used=_randaugment(9)),
    Key("augmentation.erasing.p", number(0, 1), "augmentation.erasing.p=0.25",
        "probability that a training image gets one rectangle erased to the mean, after normalisation (0: off)"),
    Key("augmentation.erasing.scale", RANGE_01, "augmentation.erasing.scale=[0.02,0.33]",
        "the erased area, as a fraction of the image: [low, high]",
        used=Used(lambda c: c.augmentation.erasing.p > 0, "only augmentation.erasing.p > 0 reads it", [0.02, 0.33])),
    Key("augmentation.mixup.alpha", number(0), "augmentation.mixup.alpha=0.2",
        "mixup: the image's weight ~ Beta(alpha, alpha); targets become probabilities (0: off; classification)"),
    Key("augmentation.mixup.p", number(0, 1), "augmentation.mixup.p=1.0", "mixup: probability that an image is mixed",
        used=Used(lambda c: c.augmentation.mixup.alpha > 0, "only augmentation.mixup.alpha > 0 reads it", 1.0)),
    Key("augmentation.cutmix.alpha", number(0), "augmentation.cutmix.alpha=1.0",
        "cutmix: the kept area ~ Beta(alpha, alpha); targets mix by area (0: off; classification)"),
    Key("augmentation.cutmix.p", number(0, 1), "augmentation.cutmix.p=1.0", "cutmix: probability that an image is mixed",
        used=Used(lambda c: c.augmentation.cutmix.alpha > 0, "only augmentation.cutmix.alpha > 0 reads it", 1.0)),
    # trainer: lightning.Trainer's arguments (the pre-flight builds a Trainer from them)
    Key("trainer.accelerator", TEXT, "trainer.accelerator=auto", "auto, cpu, gpu, ..."),
    Key("trainer.devices", Rule("an integer >= 1, -1 (all), auto, or a list of device ids",
                                lambda v: (integer(-1).ok(v) and v != 0) or isinstance(v, str) or INT_LIST.ok(v)),
        "trainer.devices=1", "devices per machine"),
    Key("trainer.strategy", TEXT, "trainer.strategy=auto", "auto, ddp, ..."),
    Key("trainer.num_nodes", integer(1), "trainer.num_nodes=1", "machines (DDP across nodes)"),
    Key("trainer.precision", either(TEXT, integer()), "trainer.precision=32-true", "32-true, bf16-mixed, 16-mixed, ..."),
    Key("trainer.max_epochs", nullable(integer(-1)), "trainer.max_epochs=15", "epochs to train (-1: no limit)"),
    Key("trainer.min_epochs", nullable(integer(0)), "trainer.min_epochs=null", "train at least this many epochs"),
    Key("trainer.max_steps", integer(-1), "trainer.max_steps=-1", "optimizer steps to train (-1: no limit)"),
    Key("trainer.gradient_clip_val", nullable(number(0, open_lo=True)), "trainer.gradient_clip_val=1.0",
        "clip gradients to this norm (null: off)"),
    Key("trainer.accumulate_grad_batches", integer(1), "trainer.accumulate_grad_batches=1",
        "batches per optimizer step"),
    Key("trainer.check_val_every_n_epoch", nullable(integer(1)), "trainer.check_val_every_n_epoch=1",
        "validate every N epochs"),
    Key("trainer.log_every_n_steps", integer(1), "trainer.log_every_n_steps=10", "log step metrics every N steps"),
    Key("trainer.deterministic", nullable(either(BOOL, one_of("warn"))), "trainer.deterministic=false",
        "deterministic algorithms (bitwise repeatable on GPU, slower)"),
    Key("trainer.benchmark", nullable(BOOL), "trainer.benchmark=null", "cudnn.benchmark"),
    Key("trainer.limit_train_batches", nullable(BATCHES), "trainer.limit_train_batches=null",
        "int: batches per epoch, float: fraction (0 would train nothing)"),
    Key("trainer.limit_val_batches", nullable(BATCHES_OR_OFF), "trainer.limit_val_batches=null",
        "int: batches, float: fraction; 0 skips validation (needs a train/ monitor)"),
    Key("trainer.limit_test_batches", nullable(BATCHES_OR_OFF), "trainer.limit_test_batches=null",
        "int: batches, float: fraction; 0 needs test_after_fit=false"),
    Key("trainer.overfit_batches", BATCHES_OR_OFF, "trainer.overfit_batches=0",
        "train and validate on the same N batches (int) or fraction (0: off)", optional=True),
    Key("trainer.fast_dev_run", either(BOOL, integer(0)), "trainer.fast_dev_run=false", "run N batches only, as a smoke test"),
    Key("trainer.profiler", nullable(one_of("simple", "advanced")), "trainer.profiler=simple",
        "Lightning's profiler; its report goes into the run folder (null: off)"),
    Key("trainer.detect_anomaly", BOOL, "trainer.detect_anomaly=false",
        "torch.autograd anomaly detection: names the operation that made a NaN or Inf gradient (slow)"),
    Key("trainer.compile", BOOL, "trainer.compile=false", "torch.compile the network"),
    Key("trainer.channels_last", BOOL, "trainer.channels_last=false", "NHWC memory layout for conv nets"),
    # logger: named loggers (conf/logger options, composed by logger=[a,b]) beside two switches
    Key("logger.histograms", BOOL, "logger.histograms=false",
        "weight and gradient histograms every epoch (needs a TensorBoard logger)"),
    Key("logger.image_grid", one_of(True, False, "auto"), "logger.image_grid=auto",
        "a grid of augmented training images, once (auto: when a TensorBoard logger is chosen)"),
    Key("logger.<name>.class_path", TEXT, "+logger.<name>.class_path=lightning.pytorch.loggers.CSVLogger",
        "a Lightning logger class (conf/logger/ has tensorboard, csv, wandb, mlflow); trainlab passes it "
        "save_dir (the run folder) when it takes one"),
    Key("logger.<name>.init_args", MAPPING, "+logger.<name>.init_args={}",
        "the logger's own arguments (checked against its signature)"),
    # callbacks
    Key("callbacks.checkpoint.save_top_k", integer(-1), "callbacks.checkpoint.save_top_k=1",
        "best checkpoints kept, by monitor (-1: all)"),
    Key("callbacks.checkpoint.save_last", BOOL, "callbacks.checkpoint.save_last=true", "also keep last.ckpt (resume from it)"),
    Key("callbacks.checkpoint.every_n_train_steps", nullable(integer(1)),
        "callbacks.checkpoint.every_n_train_steps=null", "also save every N optimizer steps (null: every epoch)"),
    Key("callbacks.early_stopping.enabled", BOOL, "callbacks.early_stopping.enabled=false", "early stopping on monitor"),
    Key("callbacks.early_stopping.patience", integer(0), "callbacks.early_stopping.patience=5",
        "validations without improvement before stopping"),
    Key("callbacks.early_stopping.min_delta", number(0), "callbacks.early_stopping.min_delta=0.0",
        "smallest change that counts as an improvement"),
    Key("callbacks.progress_bar.enabled", BOOL, "callbacks.progress_bar.enabled=true", "a progress bar with the loss"),
    Key("callbacks.progress_bar.refresh_rate", integer(1), "callbacks.progress_bar.refresh_rate=10",
        "batches between redraws"),
    Key("callbacks.progress_bar.min_seconds", number(0), "callbacks.progress_bar.min_seconds=0.5",
        "and at least this long between redraws (0: no limit)"),
    Key("callbacks.model_summary.max_depth", integer(-1), "callbacks.model_summary.max_depth=1",
        "model summary printed at start (-1: all layers, 0: none)"),
    Key("callbacks.extra.<name>.class_path", TEXT,
        "+callbacks.extra.<name>.class_path=lightning.pytorch.callbacks.LearningRateMonitor",
        "a Lightning callback class, added after trainlab's own"),
    Key("callbacks.extra.<name>.init_args", MAPPING, "+callbacks.extra.<name>.init_args={}",
        "the callback's own arguments (checked against its signature, then built once before any data loads)"),
)
BY_PATH = {k.path: k for k in KEYS}
# Sections whose entries the user names (`<name>` in KEYS): each entry is a class_path + init_args pair.
NAMED = ("logger", "callbacks.extra")
SECTIONS = {".".join(k.path.split(".")[:n]) for k in KEYS for n in range(1, k.path.count(".") + 1)}


def show(value) -> str:
    """A value as it is typed on the command line."""
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------- the check
def check(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key that is unknown, missing, of the wrong type or range, or set
    where nothing reads it. Cross-key relations are config.validate's."""
    _check_known(cfg, "")
    for key in KEYS:
        for path in _concrete(cfg, key.path):
            _check_key(cfg, key, path)


def _check_key(cfg, key: Key, path: str) -> None:
    fix = key.fix.replace("<name>", path.split(".")[-2]) if "<name>" in key.path else key.fix
    node, name = _parent(cfg, path)
    if node is None or name not in node.keys():  # `in` is False for a ??? value
        if key.optional:
            return
        raise ConfigError(path, None, "is missing from the config", fix)
    if OmegaConf.is_missing(node, name):
        if key.used and not key.used.test(cfg):
            return
        raise ConfigError(path, "???", f"is required{_with(cfg, key)}", fix)
    if _hydra_interpolation(node, name):  # paths.output_dir before Hydra has set it
        return
    value = _plain(node[name])
    if not key.rule.ok(value):
        raise ConfigError(path, value, f"must be {key.rule.text}", fix)
    if key.used and not key.used.test(cfg):
        if key.used.off is not ANY and value != key.used.off:
            raise ConfigError(path, value, f"is not read here: {key.used.why}",
                              f"{path}={show(key.used.off)}, or remove it")
    elif key.needed and value is None:
        raise ConfigError(path, None, f"is required{_with(cfg, key)}", fix)


def _with(cfg, key: Key) -> str:
    if key.path.split(".")[0] != "dataset":
        return ""
    return f" with dataset={cfg.dataset.name}" if not _user_data(cfg) else " with dataset.class_path"


def fill_defaults(cfg: DictConfig) -> None:
    """Keys absent from the config that have a documented default (Key.default) take it, in place: a user's
    dataset YAML holds only class_path, init_args and the keys it changes."""
    from omegaconf import open_dict

    for key in KEYS:
        if key.default is REQUIRED:
            continue
        node, name = _parent(cfg, key.path)
        if node is not None and name not in node.keys() and not OmegaConf.is_missing(node, name):
            with open_dict(node):
                node[name] = key.default


def _parent(cfg, path: str):
    *sections, name = path.split(".")
    node = cfg
    for s in sections:
        if not isinstance(node, DictConfig) or s not in node:
            return None, name
        node = node[s]
    return (node if isinstance(node, DictConfig) else None), name


def _hydra_interpolation(node, name) -> bool:
    raw = node._get_node(name)._value()
    return OmegaConf.is_interpolation(node, name) and str(raw).startswith("${hydra:")


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def declared(path: str) -> str:
    """The KEYS path of a config path: an entry of a NAMED section stands for `<name>`."""
    for section in NAMED:
        if path.startswith(section + "."):
            name, *rest = path[len(section) + 1:].split(".")
            if f"{section}.{name}" not in BY_PATH:
                return ".".join([section, "<name>", *rest])
    return path


def _concrete(cfg, path: str) -> list[str]:
    """A KEYS path as the config's paths: one per named entry present for `<name>`."""
    if "<name>" not in path:
        return [path]
    section = path.split(".<name>")[0]
    node = OmegaConf.select(cfg, section, default=None)
    names = [n for n in node if f"{section}.{n}" not in BY_PATH] if isinstance(node, DictConfig) else []
    return [path.replace("<name>", str(n)) for n in names]


def _check_known(node: DictConfig, prefix: str) -> None:
    """Every key of the config is declared: a misspelled or invented key would otherwise be ignored."""
    for name in node:
        path = f"{prefix}{name}"
        if declared(path) in BY_PATH:
            continue
        if declared(path) in SECTIONS:
            child = node._get_node(name)
            if not isinstance(child, DictConfig) and declared(path) != path:  # logger.kind=wandb (older shape)
                section, value = path.rsplit(".", 1)[0], _plain(node[name])
                option = f"choose an option, e.g. {section}={value} (conf/{section}/), or " if "." not in section else ""
                raise ConfigError(path, value, f"is not an entry of {section}: each entry is a named "
                                  "class_path + init_args mapping",
                                  f"{option}+{path}={{class_path: <class>, init_args: {{}}}}")
            if not isinstance(child, DictConfig):
                raise ConfigError(path, _plain(node[name]), "is a group of keys, not a value",
                                  f"set one of its keys, e.g. {_first_key(declared(path))}")
            _check_known(child, path + ".")
            continue
        while isinstance(node._get_node(name), DictConfig) and len(node[name]):  # name the first leaf: +optimzer.lr
            node, name, path = node[name], next(iter(node[name])), f"{path}.{next(iter(node[name]))}"
        raise ConfigError(path, "???" if OmegaConf.is_missing(node, name) else _plain(node[name]),
                          "is not a trainlab config key, so nothing would read it", _unknown_fix(path))


def _first_key(section: str) -> str:
    return next(k.fix for k in KEYS if k.path.startswith(section + "."))


def _unknown_fix(path: str) -> str:
    path = declared(path)
    close = difflib.get_close_matches(path, list(BY_PATH), n=3, cutoff=0.6)
    section = path.rsplit(".", 1)[0] if "." in path else ""
    siblings = sorted({k.path[len(section) + 1:].split(".")[0] for k in KEYS if k.path.startswith(section + ".")})
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    if section.split(".")[0] in ("model", "module", "optimizer", "scheduler") and section.count(".") == 0:
        hint += f"a class argument goes in {section}.init_args.{path.rsplit('.', 1)[-1]}; "
    where = f"{section} takes {', '.join(siblings)}" if siblings else "see README \"Configuration reference\""
    return f"{hint}remove it ({where})"


# ---------------------------------------------------------------- class_path + init_args
def locate(key: str, path: str):
    """The class (or function) a dotted path names. Not hydra.utils.get_class: it logs its own multi-line
    error before raising, which would print beside trainlab's one line."""
    import importlib

    module_name, _, attr = str(path).rpartition(".")
    try:
        if not module_name:
            raise ImportError(f"{path!r} has no module part")
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        reason = f"no {attr!r} in module {module_name}" if isinstance(err, AttributeError) else str(err)
        example = {"model.class_path": "trainlab.models.SeedCNN", "scheduler.class_path":
                   "torch.optim.lr_scheduler.StepLR", "module.class_path": "trainlab.module.TrainModule"
                   }.get(key, "torch.optim.SGD")
        fix = f"a full, importable class path such as {example}"
        if isinstance(err, ModuleNotFoundError) and err.name == module_name.split(".")[0]:  # a package not installed
            fix = f"pip install {err.name}, or {fix}"
        raise ConfigError(key, path, f"cannot be imported ({reason})", fix) from None
    except Exception as err:  # the module's own import-time code failed
        raise ConfigError(key, path, f"cannot be imported ({type(err).__name__}: {err})",
                          "check that module imports on its own: python -c 'import <module>'") from None
    return obj


def check_init_args(key: str, cls, init_args, reserved: tuple[str, ...]) -> None:
    """`<key>.init_args` against the class's signature: unknown names, names trainlab sets, and values whose
    type differs from the parameter's default (bool, number, text, sequence) fail here, naming the key."""
    if not isinstance(init_args, dict):
        raise ConfigError(f"{key}.init_args", init_args, "must be a mapping of the class's arguments",
                          f"{key}.init_args={{}} (the class's defaults)")
    params = inspect.signature(cls).parameters  # a class's __init__ (without self), or a factory function
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for name, value in init_args.items():
        full = f"{key}.init_args.{name}"
        if name in reserved:
            raise ConfigError(full, value, "is set by trainlab, not in init_args", f"remove {full}")
        if name not in params:
            if accepts_any:
                continue
            known = [p for p in params if p not in ("params", "optimizer") + reserved]
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(full, value, f"is not an argument of {cls.__name__}",
                              (f"did you mean {key}.init_args.{close[0]}? " if close else "")
                              + f"use one of {', '.join(known)}")
        expected = _expected_type(params[name])
        if expected and value is not None and not _fits(value, expected[0]):
            raise ConfigError(full, value, f"must be {expected[1]}, like {cls.__name__}'s default "
                              f"{show(params[name].default)}", f"{full}={show(params[name].default)}")


def _expected_type(param) -> tuple[type, str] | None:
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return None
    for kind, words in ((bool, "true or false"), (int, "a number"), (float, "a number"), (str, "a text"),
                        (tuple, "a list"), (list, "a list")):
        if isinstance(default, kind):
            return kind, words
    return None


def _fits(value, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return _is_number(value)
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, (list, tuple))


# ---------------------------------------------------------------- README tables
def markdown(group: str) -> str:
    """The README key table of one group ("top" for the keys of conf/train.yaml)."""
    rows = ["| key | values | example | meaning |", "|---|---|---|---|"]
    for key in KEYS:
        top = key.path.split(".")[0] not in GROUPS
        if (group == "top") != top or (not top and not key.path.startswith(group + ".")):
            continue
        doc = key.doc if key.default is REQUIRED else f"{key.doc}; absent: `{show(key.default)}`"
        rows.append(f"| `{key.path}` | {key.rule.text} | `{key.fix}` | {doc} |"
                    if "=" in key.fix else f"| `{key.path}` | {key.rule.text} | {key.fix} | {doc} |")
    return "\n".join(rows)


GROUPS = ("model", "module", "optimizer", "scheduler", "dataset", "augmentation", "trainer", "logger", "callbacks")

if __name__ == "__main__":
    import sys

    if "--markdown" not in sys.argv:
        sys.exit("usage: python -m trainlab.schema --markdown [group]")
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")] or ["top", *GROUPS]
    print("\n\n".join(markdown(g) for g in wanted))
