"""Checks of a config before any heavy work, with messages that name key, value and fix: the per-key
contract is declared in schema.py; here are the checks across keys, the data files named, and the group
options chosen. Only omegaconf is imported here: these checks run before torch loads.
"""
from __future__ import annotations

import atexit
import csv
import os
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

FILE_DATASETS = ("image_folder", "image_csv")
# Where each torchvision data set's files must be when there is no internet.
TORCHVISION_FOLDERS = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}


class ConfigError(ValueError):
    """A bad config value: names the key, the value, what is wrong and how to fix it."""

    def __init__(self, key: str, value, problem: str, fix: str):
        self.key, self.value, self.problem, self.fix = key, value, _one_line(problem), _one_line(fix)
        super().__init__(_one_line(f"{key}={value!r}: {self.problem}. Fix: {self.fix}"))


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _default_monitor(task: str) -> str:
    return "val/loss" if task == "regression" else "val/acc"


def _default_mode(monitor: str) -> str:
    name = str(monitor).rsplit("/", 1)[-1]
    return "max" if name in ("acc", "r2") or name.startswith("top") else "min"


_CLAIMED: dict[str, str] = {}
_MADE: list[Path] = []  # folders the claims created (parents first): removed at exit if still empty


def _run_folder(resume, fresh: str) -> str:
    """hydra.run.dir / hydra.sweep.dir: the folder being resumed, else `fresh` claimed (claim_folder).
    Memoised: Hydra resolves the key more than once per process. OmegaConf also resolves the default while
    merging a config that replaces it (an experiment's sweep dir): such a claim stays empty, and is removed
    when the process ends, as is a run folder that a failed start left empty."""
    if resume:
        return str(resume)
    if fresh not in _CLAIMED:
        _CLAIMED[fresh] = claim_folder(fresh)
    return _CLAIMED[fresh]


def claim_folder(fresh: str) -> str:
    """`fresh` made with an exclusive mkdir (`fresh-1`, `fresh-2`... when another run took it in the same
    second): no two runs share a folder. Removed at exit if nothing was written into it."""
    if not _MADE:
        atexit.register(_release_empty_claims)
    candidate, n = fresh, 0
    while True:
        try:
            missing = [p for p in (*reversed(Path(candidate).parents), Path(candidate)) if not p.exists()]
            Path(candidate).parent.mkdir(parents=True, exist_ok=True)
            Path(candidate).mkdir()
            _MADE.extend(p for p in missing if p not in _MADE)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{fresh}-{n}"


def _release_empty_claims() -> None:
    for folder in reversed(_MADE):  # children before parents
        try:
            folder.rmdir()  # only succeeds when empty: a folder a run wrote into stays
        except OSError:
            pass


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


def validate(cfg: DictConfig, choices: dict | None = None) -> None:
    """Raise ConfigError for the first bad key or value: the schema's per-key contract (schema.py), then the
    relations between keys and the data files named. Cheap: reads at most a CSV header and column.
    `choices` (Hydra's runtime.choices), when given, are checked first. Keys absent from the config that
    have a documented default (a user's dataset YAML) are added to `cfg` first (schema.fill_defaults)."""
    from trainlab import schema

    if choices is not None:
        check_choices(choices)
    schema.fill_defaults(cfg)
    schema.check(cfg)
    # monitor names a metric the module logs: checked by the pre-flight, which knows module.class_path.
    if cfg.optimizer.class_path == "torch.optim.Rprop" and cfg.optimizer.weight_decay:
        raise ConfigError("optimizer.weight_decay", cfg.optimizer.weight_decay, "torch's Rprop has no weight decay",
                          "optimizer.weight_decay=0, or pick another optimizer")
    _check_trainer(cfg)
    _check_data(cfg)
    _check_augmentation(cfg)


def check_choices(choices: dict) -> None:
    """Every chosen option of trainlab's groups is one YAML file on Hydra's config search path (trainlab's conf/
    and the user's folders, config_folders.py). Hydra refuses an unknown option of a plain group itself, but
    ignores one of an `optional` group (experiment=<typo>); and it silently takes the first of two files of the
    same name, so a user's option named like one of trainlab's would never be used."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():  # no config search path to look in (tests' own Hydra state)
        return
    from hydra.core.object_type import ObjectType

    from trainlab.config_folders import folder_names, label, searched

    sources = searched()
    for group, option in choices.items():
        if option is None or group.startswith("hydra/"):  # Hydra checks its own groups
            continue
        holders = [s for s in sources if s.is_config(f"{group}/{option}")]
        if len(holders) > 1:
            first, other = (label(s) for s in holders[:2])
            raise ConfigError(group, option, f"is both {first}/{group}/{option}.yaml and {other}/{group}/{option}.yaml, "
                              "and Hydra uses the first folder on its search path, so the second is never read",
                              f"rename the file in your folder, e.g. {group}/my_{option}.yaml, and choose "
                              f"{group}=my_{option}")
        if not holders:
            import difflib

            options = sorted({o for s in sources if s.is_group(group) for o in s.list(group, ObjectType.CONFIG)})
            close = difflib.get_close_matches(str(option), options, n=1)
            raise ConfigError(group, option, f"is not an option of the {group} group",
                              (f"did you mean {group}={close[0]}? " if close else "")
                              + f"use one of {', '.join(options)} (folders searched: {folder_names(sources)})")


@contextmanager
def stored_file(path: Path | None):
    """Errors in a resumed run's stored config.yaml: the fix is an edit of that file (a `key=value` override
    that contradicts it is refused on resume)."""
    try:
        yield
    except ConfigError as err:
        if path is None:
            raise
        raise ConfigError(err.key, err.value, f"{err.problem}, in the resumed run's {path}",
                          f"edit {err.key} in {path} (e.g. {err.fix}); an override on the command line is "
                          "refused on resume") from None


def _check_trainer(cfg) -> None:
    tr = cfg.trainer
    if tr.max_epochs is not None and tr.max_epochs < 1 and tr.max_steps == -1:
        raise ConfigError("trainer.max_epochs", tr.max_epochs, "must be >= 1 when max_steps is -1",
                          "trainer.max_epochs=15, or set trainer.max_steps")
    if tr.limit_val_batches == 0 and not str(cfg.monitor).startswith("train/"):
        raise ConfigError("trainer.limit_val_batches", 0, f"skips validation, so monitor={cfg.monitor} is never logged",
                          "trainer.limit_val_batches=null, or monitor=train/loss")
    if tr.limit_test_batches == 0 and cfg.test_after_fit:
        raise ConfigError("trainer.limit_test_batches", 0, "tests nothing, but test_after_fit=true",
                          "trainer.limit_test_batches=null, or test_after_fit=false")


def _check_augmentation(cfg) -> None:
    aug, size = cfg.augmentation, cfg.dataset.image_size
    if aug.crop_size is not None and size is not None and aug.crop_size > size:  # null: a user's source, checked once loaded
        raise ConfigError("augmentation.crop_size", aug.crop_size,
                          f"must be an integer between 1 and dataset.image_size={size}",
                          f"augmentation.crop_size={min(24, size)} or null (no crop)")
    for mix in ("mixup", "cutmix"):
        if cfg.task == "regression" and aug[mix].alpha > 0:
            raise ConfigError(f"augmentation.{mix}.alpha", aug[mix].alpha,
                              "mixes class labels, and task=regression has numeric targets",
                              f"augmentation.{mix}.alpha=0")
    if cfg.dataset.channels == 1:
        for name in ("saturation", "hue"):
            if aug.color[name] > 0:
                raise ConfigError(f"augmentation.color.{name}", aug.color[name],
                                  "changes colour, and dataset.channels=1 images have none",
                                  f"augmentation.color.{name}=0, or dataset.channels=3")


def _check_data(cfg) -> None:
    ds = cfg.dataset
    if ds.get("class_path") is not None:
        _check_user_data(cfg)
        return
    from trainlab.schema import BY_PATH

    for key in ("dataset.image_size", "dataset.channels"):  # null only for a user's image source (keeps its own)
        if OmegaConf.select(cfg, key) is None:
            raise ConfigError(key, None, f"is required with dataset={ds.name}", BY_PATH[key].fix)
    if ds.in_memory is not True and ds.name not in FILE_DATASETS:
        raise ConfigError("dataset.in_memory", ds.in_memory, f"dataset {ds.name} is an array file, always held in memory",
                          "dataset.in_memory=true (use augmentation.per_sample=true for a per-sample pipeline)")
    if ds.test_fraction is None:
        if ds.name not in TORCHVISION_FOLDERS:
            raise ConfigError("dataset.test_fraction", None, f"dataset {ds.name} has no test split of its own",
                              "dataset.test_fraction=0.15")
    elif ds.val_fraction + ds.test_fraction >= 1:
        raise ConfigError("dataset.val_fraction", ds.val_fraction,
                          f"with test_fraction={ds.test_fraction} leaves no training data",
                          "keep val_fraction + test_fraction below 1, e.g. 0.15 and 0.15")
    oversample = OmegaConf.select(ds, "oversample", default="none")
    if oversample != "none" and OmegaConf.select(ds, "class_weights", default="none") != "none":
        raise ConfigError("dataset.class_weights", ds.class_weights, f"corrects the same imbalance as "
                          f"dataset.oversample={oversample}: together the rare classes would count twice over",
                          "dataset.class_weights=none, or dataset.oversample=none")
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


def _check_user_data(cfg) -> None:
    """What can be told of a user's data class before it is imported; the rest is checked when it is built
    (trainlab.data.user_data), still before training."""
    ds = cfg.dataset
    if ds.val_fraction + (ds.test_fraction or 0) >= 1:
        raise ConfigError("dataset.val_fraction", ds.val_fraction,
                          f"with test_fraction={ds.test_fraction} leaves no training data",
                          "keep val_fraction + test_fraction below 1, e.g. 0.15 and 0.15")


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


def plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python containers (safe in checkpoints: no OmegaConf pickles)."""
    return OmegaConf.to_container(cfg, resolve=True)


def data_root_hint(name: str, root: str) -> str:
    return os.path.join(root, TORCHVISION_FOLDERS[name])
