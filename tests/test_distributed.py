"""Scaling out: 2-process DDP on the CPU (gloo) through the real train.py command, and a sweep through
submitit's local executor (the SLURM launcher's code path) that matches Hydra's basic launcher."""
from __future__ import annotations

import json

import lightning as L
import pytest
import yaml
from hydra import compose, initialize_config_dir
from conftest import CONF, TINY, make_cfg, run_cli

from trainlab import config
from trainlab.config import ConfigError
from trainlab.data import ImageDataModule
from trainlab.module import TrainModule
from trainlab.seams import build_network
from trainlab.train import run

# A few training batches, full validation and test splits (so the rank shards cover every sample).
DDP_RUN = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "callbacks.progress_bar.enabled=false",
           "callbacks.model_summary.max_depth=0"]


def _one_process_test(overrides: list[str], checkpoint: str, tmp_path) -> dict:
    """Test metrics of a checkpoint evaluated by a single process on the same data."""
    cfg = make_cfg([*overrides, "trainer=cpu"], tmp_path / "eval")
    data = ImageDataModule(cfg.dataset, cfg.augmentation, cfg.task, cfg.seed)
    data.setup("fit")
    net = build_network(config.plain(cfg)["model"], data.input_shape, data.num_outputs)
    module = TrainModule.load_from_checkpoint(checkpoint, net=net)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)
    return trainer.test(module, datamodule=data, verbose=False)[0]


def test_ddp_cpu_two_processes_write_one_run_folder(tmp_path):
    run_dir = tmp_path / "runs" / "ddp"
    result = run_cli("train.py", "trainer=ddp_cpu", *DDP_RUN, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    # One run folder: rank 1 joined rank 0's (its own log is the proof that it ran), and wrote no files of its own.
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]
    assert "MEMBER: 2/2" in (run_dir / "train_ddp_process_1.log").read_text()
    assert "distributed_backend=gloo" in (run_dir / "train.log").read_text()
    assert result.stdout.count("trainlab results") == 1  # only rank 0 prints the table
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["global_step"] == 3
    saved = config.plain(make_cfg(["trainer=ddp_cpu", *DDP_RUN], run_dir))["trainer"]
    assert saved == yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]
    # Sharded evaluation, sums reduced across ranks: the numbers one process gets on the whole test split.
    single = _one_process_test(DDP_RUN, metrics["best_checkpoint"], tmp_path)
    assert metrics["test"]["test/acc"] == pytest.approx(single["test/acc"], abs=1e-6)
    assert metrics["test"]["test/loss"] == pytest.approx(single["test/loss"], rel=1e-5)


def test_ddp_is_refused_inside_a_multirun_and_outside_the_command(tmp_path, cfg_factory):
    result = run_cli("train.py", "-m", "trainer=ddp_cpu", "seed=1,2", *TINY, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    # Each job fails before any training, is recorded as failed, and the sweep exits 1 (see the sweep report).
    assert result.returncode == 1
    jobs = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    assert len(jobs) == 2 and all(j["status"] == "failed" and j["error"].startswith("ConfigError: trainer=")
                                  and "multirun" in j["error"] for j in jobs)
    assert not list((tmp_path / "sweep").glob("*/checkpoints"))
    with pytest.raises(ConfigError, match="train.py command line"):
        run(cfg_factory("trainer=ddp_cpu"))


def test_submitit_local_sweep_matches_the_basic_launcher(tmp_path):
    local = run_cli("train.py", "-m", "seed=1,2", *TINY, "hydra/launcher=local", f"hydra.sweep.dir={tmp_path / 'local'}")
    assert local.returncode == 0, local.stderr[-3000:]
    jobs = [p for p in (tmp_path / "local" / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2 and all(list(p.glob("*_result.pkl")) for p in jobs)  # both really ran in submitit
    for job, seed in (("0", 1), ("1", 2)):
        assert (tmp_path / "local" / job / "config.yaml").is_file()
        got = json.loads((tmp_path / "local" / job / "metrics.json").read_text())
        # Hydra's basic launcher calls the task in-process on the same composed config: do just that.
        want = run(make_cfg([*TINY, f"seed={seed}"], tmp_path / "basic" / job))
        assert got["status"] == want["status"] == "ok"
        assert got["test"] == pytest.approx(want["test"], rel=1e-4)
        assert got["best_score"] == pytest.approx(want["best_score"], rel=1e-4)


def test_slurm_launcher_composes_with_the_documented_knobs():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.tasks_per_node == 1
    for key in ("gpus_per_node", "timeout_min", "mem_gb", "cpus_per_task"):
        assert key in launcher
