"""No run exits 0 without doing what was asked: what resume= may change, continuing a finished run,
a resumed sweep's job identity, spawn-based DDP, sweeps over experiments, trainer.overfit_batches."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from conftest import CONF, TINY, run_cli
from trainlab import checkpoint_io, config
from trainlab.config import ConfigError
from trainlab.distributed import check_launch
from trainlab import resume
from trainlab.train import run

# Three epochs of three batches; val/acc improves every epoch, so last.ckpt and the best are the last epoch.
SHORT = [o for o in TINY if not o.startswith(("trainer.max_epochs", "trainer.limit_train_batches"))] + [
    "trainer.max_epochs=3", "trainer.limit_train_batches=3", "logger.image_grid=false"]


@contextmanager
def session(run_dir: Path, *overrides: str):
    """The config and HydraConfig of `python train.py <overrides>` as Hydra's task function gets them."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        yield cfg
    finally:
        HydraConfig.instance().cfg = None


def stored_run(run_dir: Path, *overrides: str) -> Path:
    """A run folder as run() leaves it before its first checkpoint: the resolved config.yaml."""
    with session(run_dir, *SHORT, *overrides) as cfg:
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config.plain(cfg)))
    return run_dir


def resumed(run_dir: Path, *overrides: str):
    with session(run_dir, f"resume={run_dir}", *overrides) as cfg:
        return resume.prepare(cfg)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# ---------------------------------------------------------------- what resume= may change
@pytest.mark.parametrize("overrides, named", [
    (["optimizer=sgd"], "optimizer='sgd': sets optimizer.class_path to 'torch.optim.SGD', but the resumed run's "
                        "config.yaml has 'torch.optim.Adam'"),
    (["+optimizer.init_args.foreach=true"], "optimizer.init_args.foreach to True, but the resumed run's config.yaml "
                                            "has no such key"),
    (["~optimizer.init_args.amsgrad"], "removes optimizer.init_args.amsgrad, but the resumed run's config.yaml has "
                                       "False"),
    (["optimizer.lr=0.3"], "optimizer.lr=0.3: sets optimizer.lr to 0.3, but the resumed run's config.yaml has 0.001"),
    (["seed=7"], "seed=7: sets seed to 7"),
])
def test_resume_refuses_every_change_outside_the_allowed_keys_by_name(tmp_path, overrides, named):
    run_dir = stored_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="Fix: drop ") as err:
        resumed(run_dir, *overrides)
    assert named in str(err.value)


def test_a_group_option_is_compared_whole_and_may_repeat_the_runs_own(tmp_path):
    run_dir = stored_run(tmp_path / "run", "optimizer=sgd", "optimizer.lr=0.1")
    assert resumed(run_dir, "optimizer=sgd", "optimizer.lr=0.1").cfg.optimizer.lr == 0.1
    with pytest.raises(ConfigError, match="optimizer='sgd': sets optimizer.lr to 0.001, but .* has 0.1"):
        resumed(run_dir, "optimizer=sgd")


def test_an_option_of_the_global_package_is_compared_on_every_key(tmp_path):
    """experiment=... may set any key: all of them are compared (this is the comparison prepare() runs; a
    session with an experiment is a multirun, whose other checks come first)."""
    stored = OmegaConf.load(stored_run(tmp_path / "run") / "config.yaml")
    with session(tmp_path / "run", "experiment=optimizer_comparison") as cfg:
        groups = set(HydraConfig.get().runtime.choices)
    with pytest.raises(ConfigError, match="experiment='optimizer_comparison': sets augmentation.crop_size to None"):
        resume.changes(stored, cfg, ["experiment=optimizer_comparison"], groups)


def test_display_logging_and_run_length_may_change_on_resume(tmp_path):
    run_dir = stored_run(tmp_path / "run")
    start = resumed(run_dir, "callbacks.progress_bar.enabled=true", "callbacks.model_summary.max_depth=2",
                    "trainer.log_every_n_steps=5", "trainer.max_epochs=9", "trainer.min_epochs=2",
                    "trainer.max_steps=500", "optimizer=adam")
    cfg = start.cfg
    assert (cfg.callbacks.progress_bar.enabled, cfg.callbacks.model_summary.max_depth) == (True, 2)
    assert (cfg.trainer.log_every_n_steps, cfg.trainer.max_epochs, cfg.trainer.min_epochs,
            cfg.trainer.max_steps) == (5, 9, 2, 500)
    assert cfg.trainer.limit_train_batches == 3 and start.ckpt_path is None  # the rest is the stored run's


def test_resume_refuses_a_cli_group_change_with_exit_2(tmp_path):
    run_dir = stored_run(tmp_path / "run")
    result = run_cli("train.py", f"resume={run_dir}", "optimizer=sgd")
    assert result.returncode == 2
    assert "optimizer='sgd': sets optimizer.class_path to 'torch.optim.SGD'" in result.stdout + result.stderr


# ---------------------------------------------------------------- continuing a finished run
def test_finished_run_continues_exactly_to_a_larger_max_epochs(tmp_path):
    run_dir = tmp_path / "run"  # not a copy: Lightning writes last-v1.ckpt into a moved run's folder
    with session(run_dir, *SHORT, "model=mlp") as cfg:
        before = run(cfg)
    assert checkpoint_io.load(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 2  # last.ckpt is the last epoch
    assert resumed(run_dir).finished == before  # the same length: skipped, as before

    with session(run_dir, f"resume={run_dir}", "trainer.max_epochs=5") as cfg:
        after = run(cfg)
    assert after == metrics(run_dir) and after["status"] == "ok" and after["epochs"] == 5
    assert [row["epoch"] for row in after["history"]] == [0, 1, 2, 3, 4]
    assert after["global_step"] == 15 > before["global_step"] == 9
    assert json.loads((run_dir / "metrics-3ep.json").read_text()) == before  # the finished run's record is kept

    with session(tmp_path / "five", *SHORT, "model=mlp", "trainer.max_epochs=5") as cfg:
        straight = run(cfg)
    drop = lambda m: [{k: v for k, v in row.items() if k != "train_seconds"} for row in m["history"]]  # noqa: E731
    assert drop(after) == drop(straight) and after["test"] == straight["test"]
    ours, theirs = (checkpoint_io.load(d / "checkpoints" / "last.ckpt")["state_dict"] for d in (run_dir, tmp_path / "five"))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)

    with pytest.raises(ConfigError, match="trainer.max_epochs=4: the run already finished after 5 epochs"):
        resumed(run_dir, "trainer.max_epochs=4")


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_run_length_of_a_run_length_scheduler_cannot_change(tmp_path, scheduler):
    run_dir = stored_run(tmp_path / "run", f"scheduler={scheduler}")
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=5: the run's (CosineAnnealingLR took its T_max|"
                                          r"OneCycleLR took its total_steps) from the run's length \(trainer.max_epochs=3\)"):
        resumed(run_dir, "trainer.max_epochs=5")


# ---------------------------------------------------------------- sweeps
def test_resumed_sweep_with_other_values_stops_before_touching_the_old_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "logger.image_grid=false", f"hydra.sweep.dir={sweep}"]
    assert run_cli("train.py", *args, "optimizer.lr=0.001").returncode == 0
    job = sweep / "0"
    kept = {p: p.stat().st_mtime_ns for p in [job / "metrics.json", job / "config.yaml", *job.glob("checkpoints/*")]}

    result = run_cli("train.py", *args, "optimizer.lr=0.3", f"resume={sweep}")
    out = result.stdout + result.stderr
    assert result.returncode == 2, out[-3000:]
    assert (f"resume='{job}': this job folder was run with optimizer.lr=0.001, this sweep gives it optimizer.lr=0.3"
            in out)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept and metrics(job)["status"] == "ok"


def test_sweep_over_experiments_is_refused_before_any_job_trains(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("train.py", "-m", *TINY, "experiment=glob(*)", f"hydra.sweep.dir={sweep}")
    out = result.stdout + result.stderr
    assert result.returncode == 2, out[-3000:]
    assert "defines its own sweep (optimizer=sgd,momentum,rmsprop,adam seed=1,2,3)" in out
    assert "Fix: run each study on its own: python train.py experiment=optimizer_comparison" in out
    assert not list(sweep.glob("*/config.yaml")) and not list(sweep.glob("*/metrics.json"))


# ---------------------------------------------------------------- spawn-based DDP
@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_spawn_find_unused_parameters_true",
                                      "ddp_notebook_find_unused_parameters_false"])
def test_spawn_based_strategies_are_refused(cfg_factory, strategy):
    cfg = cfg_factory(f"trainer.strategy={strategy}")
    with pytest.raises(ConfigError, match="never return to the process that writes metrics.json.*trainer.strategy=ddp"):
        run(cfg)
    assert not (Path(cfg.paths.output_dir) / "config.yaml").exists()
    check_launch(cfg_factory("trainer.strategy=ddp_find_unused_parameters_true"))  # popen-based: one process here


# ---------------------------------------------------------------- overfit_batches
def test_overfit_batches_trains_and_validates_on_the_same_first_training_batches(cfg_factory):
    from trainlab.build import build_parts

    cfg = cfg_factory("trainer.overfit_batches=2", "trainer.max_epochs=12", "dataset.batch_size=16", "model=mlp",
                      "optimizer.lr=0.01", "augmentation=none", "test_after_fit=false")
    result = run(cfg)
    history = result["history"]
    assert result["global_step"] == 24  # 2 batches an epoch, whatever limit_train_batches says
    assert history[-1]["train/loss"] < history[0]["train/loss"] / 4
    assert max(row["val/acc"] for row in history) == 1.0

    # Validation saw the first 2 x 16 training images: recompute the last epoch's val/acc on them.
    parts = build_parts(cfg, config.plain(cfg), compile_net=False)
    parts.module.load_state_dict(checkpoint_io.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")["state_dict"])
    images, targets = parts.datamodule.train_set[torch.arange(32)]
    with torch.no_grad():
        predicted = parts.module.net(parts.datamodule.augment(images, train=False)).argmax(1)
    assert (predicted == targets).float().mean().item() == pytest.approx(history[-1]["val/acc"])
