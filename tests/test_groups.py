"""Every option of every config group composes, and a real Trainer runs one batch of fit and test with it."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import CONF, write_cifar10_like, write_mnist_like
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from trainlab import schema
from trainlab.train import run

GROUPS = ["model", "optimizer", "scheduler", "dataset", "augmentation", "trainer", "logger", "callbacks"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def composed(group: str, option: str) -> dict:
    """The group's keys as `python train.py group=option` composes them (an option may extend another)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=[f"{group}={option}"])[group], resolve=False)


def test_every_option_in_a_group_has_the_same_keys():
    """The same keys, besides the named entries of a logger option (logger.tensorboard, logger.csv, ...)."""
    for group in GROUPS:
        keys = {option: {k for k in composed(group, option) if "<name>" not in schema.declared(f"{group}.{k}")}
                for g, option in OPTIONS if g == group}
        first = next(iter(keys.values()))
        assert all(k == first for k in keys.values()), f"{group}: {keys}"


def _changes(own: dict, default: dict) -> dict:
    return {k: _changes(v, default[k]) if isinstance(v, dict) else v for k, v in own.items() if v != default[k]}


def test_options_extend_the_group_default_and_set_only_what_differs():
    for group, option in [("trainer", "cpu"), ("trainer", "gpu"), ("trainer", "ddp"), ("trainer", "ddp_cpu"),
                          ("callbacks", "early_stopping")]:
        written = yaml.safe_load((CONF / group / f"{option}.yaml").read_text())
        assert written.pop("defaults") == ["default", "_self_"]
        default, own = composed(group, "default"), composed(group, option)
        assert _changes(own, default) == written, f"{group}={option}"
    assert composed("trainer", "cpu") == {**composed("trainer", "default"), "accelerator": "cpu"}


def _data_overrides(option: str, tmp_path, image_folder, image_csv) -> list[str]:
    if option in ("mnist", "fashion_mnist"):
        write_mnist_like(tmp_path / "data", "MNIST" if option == "mnist" else "FashionMNIST")
        return [f"paths.data_dir={tmp_path / 'data'}", "dataset.download=false"]
    if option == "cifar10":
        write_cifar10_like(tmp_path / "data")
        return [f"paths.data_dir={tmp_path / 'data'}", "dataset.download=false", "augmentation.crop_size=24"]
    if option == "image_folder":
        return [f"dataset.root={image_folder}", "dataset.image_size=28"]
    if option == "image_csv":
        root, csv_file = image_csv
        return [f"dataset.root={root}", f"dataset.csv_file={csv_file}", "dataset.target_column=score",
                "dataset.image_size=28", "task=regression"]
    return []


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_trains_one_batch(group, option, cfg_factory, tmp_path, image_folder, image_csv):
    if group == "trainer" and option in ("gpu", "ddp") and not torch.cuda.is_available():
        pytest.skip(f"trainer={option} needs a CUDA GPU")
    if group == "trainer" and option == "ddp_cpu":
        pytest.skip("DDP re-runs the train.py command per process: tests/test_distributed.py runs it")
    overrides = [f"{group}={option}"]
    if group == "dataset":
        overrides += _data_overrides(option, tmp_path, image_folder, image_csv)
    if group == "trainer" and option not in ("gpu", "ddp"):
        overrides.append(f"trainer.accelerator={'cpu' if option == 'cpu' else 'auto'}")
    cfg = cfg_factory(*overrides)
    metrics = run(cfg)
    run_dir = tmp_path / "run"
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["status"] == "ok" and saved["global_step"] == 1
    test_keys = {"test/loss", "test/mae", "test/r2"} if cfg.task == "regression" else {"test/loss", "test/acc", "test/top2"}
    assert set(metrics["test"]) == test_keys
    assert all(v == v for v in metrics["test"].values())  # no NaN
    saved_group = yaml.safe_load((run_dir / "config.yaml").read_text())[group]
    option = composed(group, option)
    assert set(saved_group) == set(option)
    if group in ("model", "optimizer", "scheduler", "augmentation", "logger"):
        assert saved_group == option
