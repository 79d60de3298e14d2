"""Bad config values get one clear message naming key, value and fix, before any heavy work."""
from __future__ import annotations

import pytest
from conftest import run_cli

from trainlab.config import ConfigError
from trainlab.train import run

CASES = [
    (["optimizer.lr=0"], "optimizer.lr", "Fix: optimizer.lr=0.001"),
    (["optimizer.lr=-0.1"], "optimizer.lr", "Fix: optimizer.lr=0.001"),
    (["dataset.batch_size=0"], "dataset.batch_size", "dataset.batch_size=64"),
    (["dataset.val_fraction=1.5"], "dataset.val_fraction", "a number in (0, 1)"),
    (["dataset.val_fraction=0"], "dataset.val_fraction", "a number in (0, 1)"),
    (["scheduler=plateau", "scheduler.monitor=val/accuracy"], "scheduler.monitor", "val/acc"),
    (["monitor=val/f1"], "monitor", "val/loss"),
    (["dataset=image_folder", "dataset.root=/nonexistent/images"], "dataset.root", "folder does not exist"),
    (["augmentation.crop_size=40"], "augmentation.crop_size", "dataset.image_size=28"),
    (["optimizer=rprop", "optimizer.weight_decay=0.1"], "optimizer.weight_decay", "Rprop has no weight decay"),
    (["+optimizer.init_args.momentum=0.9"], "optimizer.init_args.momentum", "not an argument of Adam"),
    (["task=regression"], "task", "dataset=image_csv"),
    (["model=torchvision", "model.init_args.name=resnet9000"], "model.init_args.name", "list_models"),
    (["callbacks.progress_bar.min_seconds=-1"], "callbacks.progress_bar.min_seconds", "min_seconds=0.5"),
]


@pytest.mark.parametrize("overrides,key,fix", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_value_is_named_with_its_fix(overrides, key, fix, cfg_factory, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(cfg_factory(*overrides))
    assert err.value.key == key and fix in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before any training


def test_csv_column_missing(cfg_factory, image_csv):
    root, csv_file = image_csv
    with pytest.raises(ConfigError) as err:
        run(cfg_factory("dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={csv_file}",
                        "dataset.target_column=beauty", "task=regression"))
    assert err.value.key == "dataset.target_column" and "path, score, label" in str(err.value)


def test_csv_target_not_numeric_for_regression(cfg_factory, image_csv):
    root, csv_file = image_csv
    with pytest.raises(ConfigError) as err:
        run(cfg_factory("dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={csv_file}",
                        "dataset.target_column=label", "task=regression"))
    assert err.value.key == "dataset.target_column" and "line 2" in str(err.value)
    assert "'dark'" in str(err.value) and "task=classification" in str(err.value)


def test_csv_file_missing(cfg_factory, image_csv):
    root, _ = image_csv
    with pytest.raises(ConfigError) as err:
        run(cfg_factory("dataset=image_csv", f"dataset.root={root}", "dataset.csv_file=/nope.csv"))
    assert err.value.key == "dataset.csv_file"


def test_pretrained_weights_offline_name_the_cache_folder(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(ConfigError) as err:
        run(cfg_factory("model=torchvision", "model.init_args.pretrained=true"))
    message = str(err.value)
    assert err.value.key == "model.init_args.pretrained"
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message and "resnet18-" in message


def test_cli_prints_one_clear_line_and_exits_2(tmp_path):
    result = run_cli("train.py", "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("Config error: optimizer.lr=-1: must be a number in (0, 3.4e+38]. Fix: optimizer.lr=0.001")
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_cli_unknown_option_lists_the_choices(tmp_path):
    result = run_cli("train.py", "optimizer=adamax", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and result.stdout == ""
    assert "optimizer='adamax': is not an option of config group optimizer" in result.stderr
    assert "nesterov" in result.stderr and len(result.stderr.splitlines()) == 1
