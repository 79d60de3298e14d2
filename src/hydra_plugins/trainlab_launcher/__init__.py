"""Hydra launcher `trainlab_parallel` (conf/hydra/launcher/parallel.yaml): sweep jobs in parallel processes,
one GPU each, where a job whose process dies is recorded as failed and the sweep goes on (launcher.py).

No `from __future__ import annotations`: Hydra executes this module outside sys.modules, where dataclasses
cannot resolve string annotations."""

from dataclasses import dataclass
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class TrainlabParallelLauncherConf:
    _target_: str = "hydra_plugins.trainlab_launcher.launcher.ParallelLauncher"
    n_jobs: Optional[int] = None         # jobs at a time; null: one per device when there are GPUs, else 2
    devices: Optional[List[Any]] = None  # CUDA devices handed out one per job; null: detected, []: none


ConfigStore.instance().store(group="hydra/launcher", name="trainlab_parallel", node=TrainlabParallelLauncherConf,
                             provider="trainlab")
