"""The trust boundary: a run folder is data, never code (design decision 14).

What `resume=`, evaluate.py and predict.py read back from a run folder's config.yaml is loaded as plain YAML
(no resolver runs: `${...}` stays literal text), may hold no `_target_` (nothing is ever instantiated from it),
and may name classes only under trusted module prefixes. Class paths the user types for a fresh run are the
user's own choice and are not checked here. Imports omegaconf only (yaml on use).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trainlab.config import ConfigError

TRUSTED_MODULES = ("trainlab", "torch.optim", "torch.nn", "torchvision.models", "lightning")
TRUSTED_ENV = "TRAINLAB_TRUSTED_MODULES"  # more prefixes, from the user's environment, never from a folder
# Per-session handles: the current session passes them again (the Optuna sweeper: optuna_trial.*), so a stored
# copy is never read back, and config.yaml does not keep them.
SESSION_KEYS = ("optuna_trial",)
# OmegaConf 2.3: `\${` is a literal `${`; k backslashes before it stand for k/2 backslashes, so k literal
# backslashes followed by a literal `${` take 2k+1.
_BEFORE_INTERPOLATION = re.compile(r"(\\*)\$\{")


def load_stored_config(path) -> DictConfig:
    """A stored config.yaml as literal data, or one ConfigError naming the file or the key."""
    import yaml
    from omegaconf._utils import get_yaml_loader  # OmegaConf.load's SafeLoader: same numbers, no timestamps

    path = Path(path)
    fix = f"fix {path} or restore it from a copy of the run"
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=get_yaml_loader())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = " ".join(str(err).split())[:200]
        raise ConfigError("config.yaml", str(path), f"is not valid YAML ({first})", fix) from None
    if not isinstance(data, dict):
        raise ConfigError("config.yaml", str(path), f"holds a {type(data).__name__}, not a mapping of keys", fix)
    data = _literal(data, "", path)
    for key in SESSION_KEYS:
        data.pop(key, None)
    _upgrade(data)
    check_class_paths(data, path)
    try:
        return OmegaConf.create(data)
    except Exception as err:  # e.g. a !!binary or !!set value, which a config cannot hold
        raise ConfigError("config.yaml", str(path), f"holds a value a config cannot hold ({err})", fix) from None


def _literal(node, key: str, path: Path):
    """node with every `${` escaped; refuses `_target_` anywhere (the whole file, session handles included)."""
    if isinstance(node, dict):
        out = {}
        for name, value in node.items():
            child = f"{key}.{name}" if key else str(name)
            if name == "_target_":
                raise ConfigError(child, value, f"in {path}: a stored config is data and trainlab never builds "
                                  "an object from it", "delete it from config.yaml if the folder is your own (older "
                                  "trainlab wrote optuna_trial there in Optuna jobs); a folder from elsewhere that sets "
                                  "it is not safe to use")
            out[name] = _literal(value, child, path)
        return out
    if isinstance(node, list):
        return [_literal(value, f"{key}[{i}]", path) for i, value in enumerate(node)]
    if isinstance(node, str):
        return _BEFORE_INTERPOLATION.sub(lambda m: "\\" * (2 * len(m.group(1)) + 1) + "${", node)
    return node


# Runs stored before the logger seam: logger.kind named one of these (today's conf/logger entries).
OLD_LOGGER_KINDS = {
    "tensorboard": {"class_path": "trainlab.callbacks.TensorBoardLogger",
                    "init_args": {"name": "", "version": "", "default_hp_metric": False}},
    "csv": {"class_path": "trainlab.loggers.CSVLogger", "init_args": {"name": "", "version": ""}},
}


# Runs stored before the network and training-step seams: the keys they lack, with the values they ran with.
OLD_MODULE = {"class_path": "trainlab.module.TrainModule", "init_args": {}}
OLD_MODEL_KEYS = {"num_outputs_arg": None, "in_channels_arg": None}


def _upgrade(data: dict) -> None:
    """An older config.yaml's `logger: {kind: csv, ...}` as today's `logger: {csv: {class_path, ...}, ...}`;
    one without a `module` section (or model.num_outputs_arg) ran TrainModule (and passed no such argument)."""
    logger = data.get("logger")
    if isinstance(logger, dict) and logger.get("kind") in OLD_LOGGER_KINDS:
        kind = logger.pop("kind")
        logger[kind] = OLD_LOGGER_KINDS[kind]
    if isinstance(data.get("model"), dict):  # a run's config (not a fragment)
        data.setdefault("module", dict(OLD_MODULE, init_args={}))
        for key, value in OLD_MODEL_KEYS.items():
            data["model"].setdefault(key, value)


def load_stored_overrides(path) -> list[str]:
    """A job's .hydra/overrides.yaml as the strings that were typed: plain YAML (iterating OmegaConf's list
    would resolve a `${...}` in them, a shared folder's too)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    return [str(o) for o in data] if isinstance(data, list) else []


def trusted_prefixes() -> tuple[str, ...]:
    extra = os.environ.get(TRUSTED_ENV, "")
    return TRUSTED_MODULES + tuple(p.strip().rstrip(".") for p in extra.split(",") if p.strip().rstrip("."))


def is_trusted(class_path: str, prefixes: tuple[str, ...]) -> bool:
    """On module boundaries: `torch.optim` admits torch.optim.SGD, not torch.optimx.Evil."""
    return any(class_path == p or class_path.startswith(p + ".") for p in prefixes)


def check_class_paths(data: dict, path: Path) -> None:
    """Every `class_path` in the tree (whatever the seam) must be under a trusted prefix, checked before any
    of them is imported."""
    prefixes = trusted_prefixes()
    for key, value in _class_paths(data, ""):
        if value is not None and not (isinstance(value, str) and is_trusted(value, prefixes)):
            module = str(value).rsplit(".", 1)[0]
            raise ConfigError(key, value, f"read back from {path} is outside the trusted modules "
                              f"({', '.join(prefixes)}), and importing it would run its code",
                              f"export {TRUSTED_ENV}={module} if you trust this run folder and that module")


def _class_paths(node, key: str):
    if isinstance(node, dict):
        for name, value in node.items():
            child = f"{key}.{name}" if key else str(name)
            if name == "class_path":
                yield child, value
            else:
                yield from _class_paths(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _class_paths(value, f"{key}[{i}]")
