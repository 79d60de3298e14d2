"""Whole runs: the default run's accuracy, reproducibility, what lands in the run folder, a real multirun."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from tensorboard.backend.event_processing import event_accumulator

from trainlab.train import run


def test_default_run_reaches_95_percent(cfg_factory, tmp_path):
    # The full default (15 epochs) reaches ~99% (README); 8 epochs already pass 95% on the held-out test split.
    metrics = run(cfg_factory("trainer.max_epochs=8", "callbacks.progress_bar.enabled=false", tiny=False))
    assert metrics["test"]["test/acc"] >= 0.95
    assert metrics["epochs"] == 8 and metrics["best_checkpoint"].endswith(".ckpt")


def test_same_command_gives_same_metrics(cfg_factory, tmp_path):
    short = ["trainer.max_epochs=2", "trainer.limit_train_batches=5", "augmentation=flip_crop"]
    first = run(cfg_factory(*short, name="a"))
    second = run(cfg_factory(*short, name="b"))
    assert first["test"] == second["test"] and first["val"] == second["val"]


def test_progress_bar_redraws_at_most_once_per_min_seconds(cfg_factory, capfd):
    """refresh_rate=1 on a fast epoch redraws every batch; min_seconds caps it, and the last batch is still drawn."""
    def redraws(min_seconds: float, name: str) -> tuple[int, str]:
        run(cfg_factory("trainer.limit_train_batches=15", "callbacks.progress_bar.enabled=true",
                        "callbacks.progress_bar.refresh_rate=1", f"callbacks.progress_bar.min_seconds={min_seconds}",
                        name=name))
        out = capfd.readouterr()
        err = out.out + out.err
        return err.count("Epoch 0:"), err

    every, _ = redraws(0, "every")
    capped, err = redraws(1000, "capped")
    assert every >= 15 and capped <= 8, (every, capped)
    assert "15/15" in err and "7/15" not in err  # only the epoch's last batch, whatever the cap


def test_run_folder_holds_config_metrics_and_tensorboard(cfg_factory, tmp_path):
    run(cfg_factory("trainer.max_epochs=2", "logger.histograms=true", "trainer.limit_train_batches=3",
                    "trainer.log_every_n_steps=1"))
    run_dir = tmp_path / "run"
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["status"] == "ok" and set(saved["val"]) == {"val/loss", "val/acc", "val/top2"}
    assert len(saved["history"]) == 2 and (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "val/top2", "lr", "test/acc", "train/loss_step"):
        assert tag in tags["scalars"], tag
    assert "train/augmented_batch" in tags["images"]
    assert any(t.startswith("weights/") for t in tags["histograms"])
    # The HPARAMS tab: the config with the final metrics.
    assert "hparam/test/acc" in tags["scalars"]
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins


def test_regression_on_image_csv_learns(cfg_factory, image_csv, tmp_path):
    root, csv_file = image_csv
    metrics = run(cfg_factory("dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={csv_file}",
                              "dataset.target_column=score", "dataset.image_size=16", "task=regression",
                              "augmentation=none", "model=mlp", "trainer.max_epochs=30", "optimizer.lr=0.01",
                              "dataset.batch_size=8", "dataset.num_workers=0", "logger=csv", tiny=False))
    assert set(metrics["test"]) == {"test/loss", "test/mae", "test/r2"}
    assert metrics["monitor"] == "val/loss" and metrics["monitor_mode"] == "min"
    assert metrics["val"]["val/r2"] > 0.5  # brightness -> score is learnable
    assert (tmp_path / "run" / "metrics.csv").is_file()


def test_multirun_runs_four_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("train.py", "-m", "optimizer=sgd,adam", "scheduler=step,plateau", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                     "callbacks.progress_bar.enabled=false", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    found = sorted(sweep.glob("*/metrics.json"))
    assert len(found) == 4
    choices = {(json.loads(p.read_text())["status"], (p.parent / ".hydra" / "overrides.yaml").read_text()) for p in found}
    assert len(choices) == 4 and all(status == "ok" for status, _ in choices)


@pytest.mark.parametrize("flag", ["--help", "--cfg job"])
def test_help_and_cfg_answer_without_torch(flag):
    probe = (f"import sys, runpy; sys.argv = ['train.py', *{flag.split()!r}];\n"
             "try:\n    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))")
    result = run_cli("-c", probe)
    assert "HEAVY []" in result.stdout, result.stdout[-500:] + result.stderr[-500:]
    assert "optimizer:" in result.stdout and "class_path: torch.optim.Adam" in result.stdout
    if flag == "--help":
        assert "optimizer: adagrad, adam, adamw, asgd, momentum, nesterov, rmsprop, rprop, sgd" in result.stdout
