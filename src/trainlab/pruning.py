"""Optuna pruning inside a job of `-m hparams_search=optuna`: report each epoch's monitored value to the trial.

The trial is rebuilt from the study's storage (the sweeper passes `optuna_trial.*`, the storage redacted and its
real URL in trainlab.search.STORAGE_ENV), so this works in whatever process the Hydra launcher runs the job.
"""
from __future__ import annotations

import lightning as L


class OptunaPruning(L.Callback):
    def __init__(self, trial, monitor: str):
        self.trial, self.monitor, self.pruned = trial, monitor, False

    @classmethod
    def from_config(cls, cfg) -> OptunaPruning | None:
        spec = cfg.get("optuna_trial")
        if not spec:
            return None
        import optuna

        from trainlab.search import job_storage, optuna_object

        pruner = optuna_object(spec.pruner, "optuna_trial.pruner", "pruners")  # optuna.pruners.* only
        study = optuna.load_study(study_name=spec.study, storage=job_storage(spec.storage), pruner=pruner)
        return cls(optuna.trial.Trial(study, spec.trial_id), cfg.monitor)

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = trainer.should_stop = True
