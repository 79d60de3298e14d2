"""examples/ (the trainlab_example package) installed as a user installs it, then run through every seam with
its own config folder from pkg://: a tensor Dataset, a network, a training step, a callback, two loggers; its run
then re-tested from the stored config alone, and refused by predict.py (its inputs are not images)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import CONF, ROOT
from trainlab.cli_help import fast_help
from trainlab.config import ConfigError
from trainlab.config_folders import ENV
from trainlab.inference import evaluate, predict
from trainlab.trust import TRUSTED_ENV

PACKAGE_CONF = "pkg://trainlab_example.conf"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip install --target of a copy of examples/ (pip builds in the source tree; the checkout stays clean)."""
    source = tmp_path_factory.mktemp("source") / "examples"
    shutil.copytree(ROOT / "examples", source)
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--no-index", "--target", str(target), str(source)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (target / "trainlab_example" / "conf" / "experiment" / "wine.yaml").is_file()  # the config ships
    return target


@pytest.fixture(scope="module")
def wine_run(installed, tmp_path_factory):
    """python train.py experiment=wine, from outside the checkout, with the installed package's config folder."""
    workdir = tmp_path_factory.mktemp("work")
    run_dir = workdir / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(installed)]), ENV: PACKAGE_CONF}
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "experiment=wine", "trainer.max_epochs=5",
                             "trainer.accelerator=cpu", "logger=[tensorboard,csv]", "callbacks.progress_bar.enabled=false",
                             f"hydra.run.dir={run_dir}"], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_the_package_runs_through_every_seam(wine_run):
    metrics = json.loads((wine_run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 5 and metrics["tags"] == ["example", "wine"]
    assert metrics["test"]["test/acc"] >= 0.85  # 3 cultivars from 13 measurements: easy once the inputs are scaled
    stored = yaml.safe_load((wine_run / "config.yaml").read_text())
    assert stored["dataset"]["class_path"] == "trainlab_example.data.Wine"
    assert stored["model"]["class_path"] == "trainlab_example.nets.FeatureNet"
    assert stored["module"] == {"class_path": "trainlab_example.module.NoisyFeatures",
                                "init_args": {"noise": 0.1, "label_smoothing": 0.05}}
    best = json.loads((wine_run / "best_so_far.json").read_text())  # the package's own callback
    assert best == {"epoch": 4, "val/acc": pytest.approx(max(r["val/acc"] for r in metrics["history"]))}
    assert list(wine_run.glob("events.out.tfevents.*")) and (wine_run / "metrics.csv").is_file()
    import torch

    checkpoint = torch.load(wine_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["noise"] == 0.1  # the package's training step was the module trained


def test_its_run_evaluates_from_the_stored_config_and_predict_refuses_vectors(wine_run, installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.delenv(ENV, raising=False)  # no config folder: the run's config.yaml is all it needs
    monkeypatch.setenv(TRUSTED_ENV, "trainlab_example")
    metrics = json.loads((wine_run / "metrics.json").read_text())
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        result = evaluate(compose("evaluate", [f"ckpt={metrics['tested_checkpoint']}"]))
        (wine_run / "inputs").mkdir()
        (wine_run / "inputs" / "a.png").write_bytes(b"")
        with pytest.raises(ConfigError, match="not images") as err:
            predict(compose("predict", [f"ckpt={metrics['tested_checkpoint']}", f"input={wine_run / 'inputs'}"]))
    assert result["test"] == pytest.approx(metrics["test"], rel=1e-6)
    assert err.value.key == "ckpt"


def test_help_lists_the_packages_options(installed, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setenv(ENV, PACKAGE_CONF)
    assert fast_help(CONF, "train", ["--help"])
    out = capsys.readouterr().out
    for line in ("dataset: wine", "model: feature_net", "module: noisy_features", "experiment: wine"):
        assert f"{line}  [your folder {PACKAGE_CONF}]" in out
