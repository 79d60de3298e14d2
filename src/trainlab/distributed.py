"""Several processes per run (Lightning DDP): which process owns the run folder, per-rank data shards,
and the launch checks.

trainlab uses Lightning's subprocess launcher (strategy `ddp`): rank 0 re-runs the same `train.py`
command for the other local ranks, adding `hydra.run.dir=<rank 0's folder> hydra.output_subdir=null`,
so every process runs this whole task and there is one run folder. Spawn- and fork-based strategies
(ddp_spawn, ddp_fork, ddp_notebook) are refused: their children's callbacks and history never return to the
process that writes metrics.json.
"""
from __future__ import annotations

import os
import warnings

from trainlab.config import ConfigError

# Set by Lightning's launcher, torchrun or SLURM in every process but the first.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def launched_as_rank_zero() -> bool:
    """Whether this process owns the run folder; read before the Trainer (which knows for sure) exists."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def process_count(trainer_cfg) -> int:
    """Processes the Trainer will start for this config (1 unless several devices or nodes)."""
    devices, nodes = trainer_cfg.devices, trainer_cfg.num_nodes or 1
    if isinstance(devices, str) and devices not in ("auto", "-1"):
        devices = len([d for d in devices.split(",") if d.strip()])  # "0,1": a device list
    elif not isinstance(devices, int) and devices not in ("auto", "-1"):
        devices = len(devices)  # [0, 1]
    if devices in (-1, "-1") or (devices == "auto" and trainer_cfg.accelerator != "cpu"):
        import torch

        devices = torch.cuda.device_count() if trainer_cfg.accelerator in ("gpu", "cuda", "auto") else 1
    devices = 1 if devices == "auto" else max(int(devices), 1)
    return devices * nodes


def check_launch(cfg) -> None:
    """Refuse multi-process training where its launcher would re-run the wrong command, or lose the results."""
    if spawns_processes(cfg.trainer.strategy):
        raise ConfigError("trainer.strategy", cfg.trainer.strategy, "trains in processes started by spawn or fork, "
                          "whose callbacks and epoch history never return to the process that writes metrics.json "
                          "(the run would end with 0 epochs recorded)",
                          "trainer.strategy=ddp (Lightning re-runs the train.py command for each extra process)")
    count = process_count(cfg.trainer)
    if count == 1:
        return
    # The module reduces its epoch sums across ranks itself (EpochStats): Lightning's advice is moot.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(.*sync_dist=True")
    from hydra.core.hydra_config import HydraConfig

    from trainlab.sweep_job import in_multirun

    setting = f"devices={cfg.trainer.devices} num_nodes={cfg.trainer.num_nodes} ({count} processes)"
    if in_multirun():
        raise ConfigError("trainer", setting, "runs several processes per job, which a multirun (-m) cannot "
                          "host: the extra processes would re-launch the sweep into duplicate folders",
                          "sweep with one device per job (trainer=cpu or trainer=gpu; hydra/launcher=slurm "
                          "spreads the jobs over GPUs and nodes), or run the DDP training without -m")
    if not HydraConfig.initialized() and launched_as_rank_zero():
        raise ConfigError("trainer", setting, "needs the train.py command line: Lightning starts the extra "
                          "processes by re-running the command that started this one",
                          "run `python train.py trainer=ddp` (or ddp_cpu), or launch with torchrun / srun")


def spawns_processes(strategy) -> bool:
    """Lightning's registered strategies that start their processes with spawn or fork (ddp_spawn, ddp_fork,
    ddp_notebook and their find_unused_parameters variants)."""
    if not isinstance(strategy, str) or strategy in ("auto", "ddp"):
        return False
    from lightning.pytorch.strategies import StrategyRegistry

    entry = StrategyRegistry[strategy] if strategy in StrategyRegistry else {}  # .get() would build the strategy
    return entry.get("init_params", {}).get("start_method") in ("spawn", "fork", "forkserver")


def index_sampler(size: int, train: bool, trainer, seed: int):
    """Indices this process reads: all of them on one process; on several, a disjoint shard per rank.

    Training shards come from a seeded DistributedSampler (equal lengths, so every rank takes the same
    number of steps; it repeats a few samples to get there). Evaluation shards are strided and never
    padded, so the epoch sums reduced across ranks equal the one-process numbers.
    """
    from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

    world = trainer.world_size if trainer is not None else 1
    if world == 1:
        return RandomSampler(range(size)) if train else SequentialSampler(range(size))
    if train:
        return DistributedSampler(range(size), num_replicas=world, rank=trainer.global_rank, shuffle=True,
                                  seed=seed, drop_last=False)
    return range(trainer.global_rank, size, world)
