"""A Lightning callback of one's own, added by config (callbacks.extra)."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class BestSoFar(L.Callback):
    """Writes <file> in the run folder after each validation: the epoch and the best value of `monitor` so far."""

    def __init__(self, monitor: str = "val/acc", file: str = "best_so_far.json"):
        self.monitor, self.file, self.best = monitor, file, None

    def on_validation_end(self, trainer, pl_module):  # after the module has logged the epoch's metrics
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or trainer.sanity_checking:
            return
        self.best = float(value) if self.best is None else max(self.best, float(value))
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / self.file
            path.write_text(json.dumps({"epoch": trainer.current_epoch, self.monitor: self.best}))
