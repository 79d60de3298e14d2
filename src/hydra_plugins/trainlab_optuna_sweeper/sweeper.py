"""Hydra sweeper `trainlab_optuna` (Hydra only loads sweepers from the hydra_plugins package); the search itself
lives in trainlab.search.

No `from __future__ import annotations`: Hydra executes this module outside sys.modules, where dataclasses
cannot resolve string annotations."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper


@dataclass
class TrainlabOptunaSweeperConf:
    _target_: str = "hydra_plugins.trainlab_optuna_sweeper.sweeper.TrainlabOptunaSweeper"
    _recursive_: bool = False  # sampler and pruner are built by trainlab.search, not when Hydra loads the plugin
    params: Optional[Dict[str, Any]] = field(default_factory=dict)
    n_trials: int = 10
    n_jobs: int = 1
    direction: str = "${monitor_mode}"
    study_name: str = "trainlab"
    storage: Optional[str] = None
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 42})
    pruner: Any = field(default_factory=lambda: {"_target_": "optuna.pruners.MedianPruner"})


ConfigStore.instance().store(group="hydra/sweeper", name="trainlab_optuna", node=TrainlabOptunaSweeperConf,
                             provider="trainlab")


class TrainlabOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.config = self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from trainlab.config import ConfigError
        from trainlab.search import run_search

        try:
            return run_search(self.launcher, self.config.hydra.sweeper, Path(self.config.hydra.sweep.dir), arguments)
        except ConfigError as err:  # one line, as train.py reports a bad value, not a traceback
            logging.getLogger("trainlab").error("Config error: %s", err)
            raise SystemExit(2) from None
