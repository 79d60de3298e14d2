"""Figures at the end of a run, tune=lr_find|batch_size through Lightning's Tuner, and export.py, on tiny real runs:
PNGs read back as images, TensorBoard tags read back from the event files, exported models run by onnxruntime and
torch.jit and compared with torch on the run's test split."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from conftest import CONF, TINY, make_cfg
from trainlab.config import ConfigError
from trainlab.export import export
from trainlab.inference import cli
from trainlab.train import run

SMALL = ["model=mlp", "model.init_args.hidden=[16]", "trainer.limit_train_batches=2", "figures=true"]


def _images(folder: Path) -> dict[str, tuple[int, int]]:
    """{file name: (width, height)} of the PNGs in folder, each decoded in full."""
    sizes = {}
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            image.load()
            sizes[path.name] = image.size
    return sizes


@pytest.fixture(scope="module")
def classified(tmp_path_factory) -> Path:
    """One tiny digits run with the TensorBoard logger, shared by the figure and export tests."""
    run_dir = tmp_path_factory.mktemp("figures") / "run"
    run(make_cfg([*TINY, *SMALL], run_dir))
    return run_dir


def test_classification_figures_as_pngs_and_in_tensorboard(classified):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sizes = _images(classified / "figures")
    assert set(sizes) == {"curves.png", "confusion_matrix.png", "confidently_wrong.png"}
    assert all(w > 200 and h > 200 for w, h in sizes.values()), sizes
    tags = EventAccumulator(str(classified)).Reload().Tags()["images"]
    assert {"figures/curves", "figures/confusion_matrix", "figures/confidently_wrong"} <= set(tags), tags


def test_regression_figures_without_tensorboard(cfg_factory, image_csv, tmp_path):
    root, csv_file = image_csv
    run(cfg_factory(*SMALL, "task=regression", "dataset=image_csv", f"dataset.root={root}",
                    f"dataset.csv_file={csv_file}", "dataset.path_column=path", "dataset.target_column=score",
                    "dataset.image_size=16", "dataset.channels=3", "augmentation.crop_size=null", "logger=csv"))
    assert set(_images(tmp_path / "run" / "figures")) == {"curves.png", "predicted_vs_true.png"}


def test_without_a_final_test_only_the_curves(cfg_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="trainlab")
    run(cfg_factory(*SMALL, "test_after_fit=false", "logger=none"))
    assert set(_images(tmp_path / "run" / "figures")) == {"curves.png"}
    assert "no final test (test_after_fit=false)" in caplog.text


def _no_checkpoint_left(run_dir: Path) -> None:
    assert not list(run_dir.rglob("*.ckpt")) and not (run_dir / "checkpoints").exists()
    assert not (run_dir / "metrics.json").exists()  # nothing was trained


def test_lr_find_writes_curve_and_suggestion_and_trains_nothing(cfg_factory, tmp_path, capsys):
    result = run(cfg_factory("model=mlp", "model.init_args.hidden=[16]", "tune=lr_find", "tune.num_training=20",
                             "tune.early_stop_threshold=null"))
    run_dir = tmp_path / "run"
    written = json.loads((run_dir / "lr_find.json").read_text())
    assert written["suggested_lr"] == result["suggested_lr"]
    assert 1e-8 <= written["suggested_lr"] <= 1 and math.isfinite(written["suggested_lr"])
    assert written["steps_run"] == len(written["lr"]) == 20
    assert _images(run_dir)["lr_find.png"][0] > 200
    assert f"optimizer.lr={written['suggested_lr']:.3g}" in capsys.readouterr().out
    _no_checkpoint_left(run_dir)


def test_batch_size_finder_writes_the_largest_batch_tried(cfg_factory, tmp_path, capsys):
    run(cfg_factory("model=mlp", "model.init_args.hidden=[16]", "tune=batch_size", "tune.init_val=2",
                    "tune.max_trials=3", "tune.steps_per_trial=1"))
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "batch_size.json").read_text())["batch_size"] == 8  # 2, 4, 8: three trials
    assert "dataset.batch_size=8" in capsys.readouterr().out
    _no_checkpoint_left(run_dir)


@pytest.mark.parametrize("args,key", [
    (["-m", "tune=lr_find"], "tune"),
    (["tune=lr_find", "trainer.devices=2"], "trainer.devices"),
    (["tune=batch_size", "debug=fdr"], "trainer.fast_dev_run"),
    (["tune=lr_find", "resume=outputs/some-run"], "tune"),
])
def test_tune_is_refused_where_it_cannot_apply(args, key, tmp_path, monkeypatch, capsys):
    """Through train.py's entry point (in-process): exit 2, one line, before Hydra's task or any folder."""
    from trainlab.cli import check_train, launch

    monkeypatch.setattr("sys.argv", ["train.py", *args, f"hydra.run.dir={tmp_path / 'run'}",
                                     f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    with pytest.raises(SystemExit) as stop:
        launch(CONF, "train", lambda: pytest.fail("Hydra's task started"), checks=check_train)
    lines = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith(f"Config error: {key}="), lines
    assert not list(tmp_path.iterdir())


def _export_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("export", overrides=list(overrides))


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_agrees_with_torch_on_the_test_split(fmt, classified):
    ckpt = next((classified / "checkpoints").glob("best-*.ckpt"))
    record = export(_export_cfg(f"ckpt={ckpt}", f"format={fmt}"))
    model = classified / "export" / record["model"]
    assert model.is_file() and model.suffix == {"onnx": ".onnx", "torchscript": ".pt"}[fmt]
    assert json.loads((model.parent / f"{model.name}.json").read_text()) == record
    check = record["check"]
    assert check["max_abs_diff"] < 1e-4 and check["same_predictions"] == 1.0 and check["samples"] > 100
    pre = record["preprocessing"]
    assert record["classes"] == [str(c) for c in range(10)] and record["task"] == "classification"
    assert len(pre["mean"]) == len(pre["std"]) == 1 and pre["input_shape"] == [1, 24, 24]


def test_export_never_overwrites_and_refuses_bad_input(classified, capsys):
    ckpt = next((classified / "checkpoints").glob("best-*.ckpt"))
    first = export(_export_cfg(f"ckpt={ckpt}", "format=torchscript"))["model"]
    second = export(_export_cfg(f"ckpt={ckpt}", "format=torchscript"))["model"]
    assert first != second and (classified / "export" / first).is_file()  # a new name, the first one kept
    taken = classified / "export" / first
    before = taken.read_bytes()
    for overrides, key in ([f"ckpt={ckpt}", "format=torchscript", f"output={taken}"], "output"), \
                          ([f"ckpt={ckpt}", "format=tflite"], "format"), \
                          ([f"ckpt={classified / 'checkpoints' / 'nope.ckpt'}"], "ckpt"):
        with pytest.raises(SystemExit) as stop:
            cli(export, _export_cfg(*overrides))  # export.py's entry point: one line, exit 2
        assert stop.value.code == 2
        with pytest.raises(ConfigError) as err:
            export(_export_cfg(*overrides))
        assert err.value.key == key, err.value
    assert taken.read_bytes() == before
