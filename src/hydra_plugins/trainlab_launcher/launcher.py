"""The launcher class Hydra instantiates for hydra/launcher=parallel; the work is in _processes.py, which Hydra's
plugin scan skips (a leading underscore), so `python train.py` does not import it unless a sweep runs."""

import logging
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)


class ParallelLauncher(Launcher):
    def __init__(self, n_jobs: Optional[int] = None, devices: Optional[Sequence[Any]] = None) -> None:
        self.n_jobs, self.devices = n_jobs, devices
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from trainlab.config import ConfigError

        from . import _processes

        try:
            return _processes.launch(self, job_overrides, initial_job_idx)
        except ConfigError as err:  # one line, as train.py reports a bad value, not a traceback
            logging.getLogger("trainlab").error("Config error: %s", err)
            raise SystemExit(2) from None
