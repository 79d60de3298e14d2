"""Faults tried on real subprocess runs: SIGKILL then resume (exact), SIGTERM, divergence, a truncated
checkpoint, an interrupted sweep resumed."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, finished_run, run_cli
from trainlab import checkpoint_io
from trainlab.config import ConfigError

# Three epochs of three batches on digits: the first end-of-epoch checkpoint comes after 3 steps.
RUN = ["trainer.accelerator=cpu", "trainer.max_epochs=3", "trainer.limit_train_batches=3",
       "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "callbacks.progress_bar.enabled=false",
       "callbacks.model_summary.max_depth=0", "logger.image_grid=false", "logger.histograms=false"]


def popen(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path.name} appeared:\n{proc.stdout.read()[-3000:]}"
        assert time.time() < end, f"no {path} after {timeout} s"
        time.sleep(0.02)


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def comparable(m: dict) -> dict:
    history = [{k: v for k, v in row.items() if k != "train_seconds"} for row in m["history"]]
    return {"best_score": m["best_score"], "best_epoch": m["best_epoch"], "val": m["val"], "test": m["test"],
            "epochs": m["epochs"], "global_step": m["global_step"], "history": history}


def weights(run_dir: Path) -> dict:
    return checkpoint_io.load(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory, "plain", *RUN)


def test_sigkill_mid_run_then_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    proc = popen(*RUN, f"hydra.run.dir={run_dir}")
    wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()  # killed before the end
    first_hydra = (run_dir / ".hydra" / "config.yaml").read_text()

    result = run_cli("train.py", f"resume={run_dir}")  # no other override: the run's own config is used
    assert result.returncode == 0, result.stderr[-3000:]
    assert comparable(metrics(run_dir)) == comparable(metrics(uninterrupted))
    resumed, plain = weights(run_dir), weights(uninterrupted)
    assert resumed.keys() == plain.keys()
    assert all(torch.equal(resumed[k], plain[k]) for k in plain)
    # Same folder, original Hydra records kept, the resumed session's beside them.
    assert (run_dir / ".hydra" / "config.yaml").read_text() == first_hydra
    assert list(run_dir.glob(".hydra-resumed-*/config.yaml"))


def test_sigterm_saves_checkpoint_and_records_interrupted(tmp_path):
    run_dir = tmp_path / "term"
    proc = popen(*[a for a in RUN if "max_epochs" not in a], "trainer.max_epochs=50", f"hydra.run.dir={run_dir}")
    wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out[-3000:]
    m = metrics(run_dir)
    assert m["status"] == "interrupted"
    assert f"python train.py resume={run_dir}" in out
    assert checkpoint_io.load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == m["global_step"]
    assert "Traceback" not in out


def test_huge_learning_rate_stops_with_status_diverged(tmp_path):
    run_dir = tmp_path / "nan"
    result = run_cli("train.py", *RUN, "optimizer=sgd", "optimizer.lr=1e12", f"hydra.run.dir={run_dir}")
    assert result.returncode == 3, result.stderr[-3000:]
    m = metrics(run_dir)
    assert m["status"] == "diverged"
    assert "at step" in m["error"] and "learning rate 1e+12" in m["error"] and "gradient_clip_val" in m["error"]
    assert "Traceback" not in result.stdout + result.stderr
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):  # whatever was kept holds finite weights only
        assert all(torch.isfinite(t).all() for t in checkpoint_io.load(ckpt)["state_dict"].values())


def test_divergence_is_caught_before_a_mid_epoch_checkpoint_and_names_the_first_bad_step(tmp_path):
    """The guard reads losses in batches (no per-step sync); a checkpoint due every step still never
    holds broken weights: the check runs before each one is written."""
    run_dir = tmp_path / "nan-mid"
    # lr 0.01 in epoch 0, 1e12 in epoch 1: the loss turns NaN a few batches into epoch 1.
    result = run_cli("train.py", *RUN, "trainer.limit_train_batches=5", "trainer.log_every_n_steps=50",
                     "callbacks.checkpoint.every_n_train_steps=1", "optimizer=sgd", "optimizer.lr=0.01",
                     "scheduler=exponential", "scheduler.init_args.gamma=1e14", f"hydra.run.dir={run_dir}")
    assert result.returncode == 3, result.stderr[-3000:]
    error = metrics(run_dir)["error"]
    step = int(error.split("at step ")[1].split()[0])
    assert "(epoch 1, batch" in error and "learning rate 1e+12" in error
    last = checkpoint_io.load(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == step - 1  # every step before the bad one was saved, the bad one was not
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_run_from_before_a_config_key_existed_resumes(uninterrupted, tmp_path):
    run_dir = tmp_path / "older"
    shutil.copytree(uninterrupted, run_dir)
    (run_dir / "metrics.json").unlink()  # unfinished, so resume reads config.yaml and last.ckpt
    config = run_dir / "config.yaml"
    stored = yaml.safe_load(config.read_text())
    del stored["callbacks"]["progress_bar"]["min_seconds"]
    for step in ("affine", "color", "policy", "erasing", "mixup", "cutmix"):
        del stored["augmentation"][step]
    config.write_text(yaml.safe_dump(stored, sort_keys=False))
    result = run_cli("train.py", f"resume={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert metrics(run_dir)["status"] == "ok"


def test_truncated_or_foreign_checkpoint_gets_a_clear_error(uninterrupted, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(uninterrupted, run_dir)
    (run_dir / "metrics.json").unlink()  # unfinished, so resume reads last.ckpt
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    result = run_cli("train.py", f"resume={run_dir}")
    out = result.stdout + result.stderr
    assert result.returncode == 2
    assert "cannot be read as a checkpoint" in out and "Traceback" not in out

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError, match="not a trainlab/Lightning checkpoint"):
        checkpoint_io.load(foreign)
    with pytest.raises(ConfigError, match="no such checkpoint"):
        checkpoint_io.load(tmp_path / "missing.ckpt")


def test_resumed_sweep_recomputes_only_the_unfinished_job(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *RUN, "trainer.max_epochs=1", "optimizer.lr=0.001,0.002,0.003", f"hydra.sweep.dir={sweep}"]
    assert run_cli("train.py", *args).returncode == 0
    done, unfinished = sweep / "0", sweep / "1"
    (unfinished / "metrics.json").unlink()  # as if the sweep had been killed during job 1,
    shutil.rmtree(sweep / "2")  # before job 2 started
    stamp = (done / "metrics.json").stat().st_mtime_ns
    before = (done / "checkpoints" / "last.ckpt").stat().st_mtime_ns

    result = run_cli("train.py", *args, f"resume={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (done / "metrics.json").stat().st_mtime_ns == stamp
    assert (done / "checkpoints" / "last.ckpt").stat().st_mtime_ns == before
    assert metrics(unfinished)["status"] == "ok"
    assert (unfinished / "metrics.json").stat().st_mtime_ns > stamp
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2"]
    # job 2's records are the resumed session's (.hydra-resumed-*/): the report still names its overrides
    assert not (sweep / "2" / ".hydra").exists() and list((sweep / "2").glob(".hydra-resumed-*/overrides.yaml"))
    with open(sweep / "summary.csv", newline="") as f:
        overrides = {row["job"]: row["overrides"] for row in csv.DictReader(f)}
    assert overrides == {"0": "optimizer.lr=0.001", "1": "optimizer.lr=0.002", "2": "optimizer.lr=0.003"}


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path, monkeypatch):
    from trainlab import config

    fresh = str(tmp_path / "outputs" / "16-40-00")
    first = config._run_folder(None, fresh)
    assert config._run_folder(None, fresh) == first  # Hydra resolves the key again in the same process
    monkeypatch.setattr(config, "_CLAIMED", {})  # a second process, same second
    second = config._run_folder(None, fresh)
    assert (first, second) == (fresh, fresh + "-1")
    assert config._run_folder(str(tmp_path / "old"), fresh) == str(tmp_path / "old")


def test_a_claimed_folder_left_empty_is_removed_at_exit(tmp_path):
    """OmegaConf resolves the default run/sweep dir while merging a config that replaces it (an experiment's
    own sweep dir), and a failed start writes nothing: such claims must not litter outputs/ with empty folders."""
    code = ("import sys; from pathlib import Path; from trainlab import config; "
            "unused = config._run_folder(None, sys.argv[1] + '/multirun/day/12-00-00'); "
            "used = config._run_folder(None, sys.argv[1] + '/outputs/day/12-00-00'); "
            "(Path(used) / 'config.yaml').write_text('x')")
    result = run_cli("-c", code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "multirun").exists()  # the claim and the parents it made are gone
    assert (tmp_path / "outputs" / "day" / "12-00-00" / "config.yaml").is_file()
