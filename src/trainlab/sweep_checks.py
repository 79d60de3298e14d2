"""Checks that stop a whole multirun (exit 2) instead of being recorded as one job's failure: the sweep
itself is wrong, so every job would be, and an old job's folder must not receive another job's results."""
from __future__ import annotations

from pathlib import Path

from trainlab.config import ConfigError
from trainlab.trust import SESSION_KEYS, load_stored_overrides

# Job overrides that are no part of a job's identity: the resume flag, Hydra's and Optuna's bookkeeping.
NOT_IDENTITY = ("resume", "hydra", *SESSION_KEYS)


class SweepError(ConfigError):
    """A config error that stops the sweep: train.main turns it into exit code 2, not a recorded job failure."""


def check_job_identity(job_dir: Path) -> None:
    """A resumed sweep's job folders are numbered: job N must have been started with job N's overrides, or
    its old result would be handed to the sweeper as the new values'."""
    from hydra.core.hydra_config import HydraConfig

    stored = job_overrides_file(job_dir)
    if stored is None:  # a job the interrupted sweep never started
        return
    before, now = _identity(load_stored_overrides(stored)), _identity(HydraConfig.get().overrides.task)
    if before != now:
        raise SweepError("resume", str(job_dir), f"this job folder was run with {' '.join(before - now) or '(none)'}, "
                         f"this sweep gives it {' '.join(now - before) or '(none)'}",
                         "rerun the original command with resume=, or start a new sweep without resume=")


def job_overrides_file(job_dir: Path) -> Path | None:
    """The overrides a job folder was started with: .hydra/overrides.yaml, or for a job that a resumed sweep
    started, the first .hydra-resumed-<time>/ (config._hydra_subdir) of that session."""
    first = job_dir / ".hydra" / "overrides.yaml"
    resumed = sorted(job_dir.glob(".hydra-resumed-*/overrides.yaml"))
    return first if first.is_file() else (resumed[0] if resumed else None)


def _identity(overrides) -> frozenset[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from trainlab.resume import MAY_CHANGE  # checked against the job's config.yaml by the resume policy

    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    return frozenset(f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in parsed
                     if o.key_or_group.replace("/", ".").split(".")[0] not in NOT_IDENTITY
                     and not any(o.key_or_group == k or o.key_or_group.startswith(k + ".") for k in MAY_CHANGE))


def check_experiment_sweep() -> None:
    """`-m experiment=a,b` runs each study once with its defaults: an experiment's own sweep
    (hydra.sweeper.params) only applies when it is chosen for the whole multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hc = HydraConfig.get()
    choice, params = hc.runtime.choices.get("experiment"), hc.sweeper.get("params") or {}
    swept = {o.key_or_group for o in OverridesParser.create().parse_overrides(list(hc.overrides.task))}
    if choice and "experiment" in swept and not set(params) <= swept:
        raise SweepError("experiment", choice, f"is one value of a sweep over experiments, but it defines its own "
                         f"sweep ({' '.join(f'{k}={v}' for k, v in params.items())}), which Hydra runs only when "
                         "the experiment is chosen for the whole multirun",
                         f"run each study on its own: python train.py experiment={choice}")
