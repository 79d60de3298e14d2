"""Optuna search through Hydra's launcher: ask trials -> job overrides -> launch -> tell each result.

ask()/tell() on a shared storage means several sweep processes never run the same trial: every ask creates a
new trial in the database. Each job gets the storage, study and trial id as `optuna_trial.*` overrides so that
trainlab.pruning can report its per-epoch value to the same trial from any process.

A storage URL's password is never written: jobs get it redacted (`user:***@host`, what Hydra records in their
overrides and config) and the real URL in the environment variable STORAGE_ENV. Samplers and pruners are built
only from classes of optuna.samplers / optuna.pruners, never through hydra's instantiate.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import time
import warnings
import zlib
from pathlib import Path

from omegaconf import OmegaConf

from trainlab.config import ConfigError

log = logging.getLogger("trainlab.search")
STORAGE_ENV = "TRAINLAB_OPTUNA_STORAGE"  # the real storage URL, set by the sweeper for the jobs it launches
# Everything between `user:` and the last `@` is the password (a raw `@` in it included): nothing of it shows.
_PASSWORD = re.compile(r"^(?P<head>[\w+.-]+://[^:@/]*:)(?P<password>.*)@(?P<tail>[^@]*)$")


def redact(url: str) -> str:
    """A database URL with its password replaced by ***: what logs and job records may show."""
    match = _PASSWORD.match(url)
    return f"{match['head']}***@{match['tail']}" if match else url


def job_storage(storage: str) -> str:
    """The real URL of a job's (redacted) optuna_trial.storage, from the sweeper's environment."""
    real = os.environ.get(STORAGE_ENV)
    if real and redact(real) == storage:
        return real
    match = _PASSWORD.match(storage)
    if match and match["password"] == "***":
        raise ConfigError("optuna_trial.storage", storage, f"is redacted and {STORAGE_ENV} does not hold its URL",
                          "run the job through its sweep (python train.py -m hparams_search=optuna ...), which "
                          f"sets {STORAGE_ENV}")
    return storage


def optuna_object(spec, key: str, kind: str):
    """An Optuna sampler (kind "samplers") or pruner ("pruners") from `_target_` + keyword arguments, nested
    specs (e.g. PatientPruner's wrapped_pruner) likewise; None stays None (Optuna's default). Only classes of
    optuna.<kind> are built: a `_target_` elsewhere (torch.load, numpy.load, ...) is refused, never imported."""
    import optuna

    if OmegaConf.is_config(spec):
        spec = OmegaConf.to_container(spec, resolve=True)
    if spec is None:
        return None
    example = {"samplers": "TPESampler", "pruners": "MedianPruner"}[kind]
    target = spec.get("_target_") if isinstance(spec, dict) else None
    prefix = f"optuna.{kind}."
    name = target[len(prefix):] if isinstance(target, str) and target.startswith(prefix) else ""
    base = optuna.samplers.BaseSampler if kind == "samplers" else optuna.pruners.BasePruner
    cls = getattr(getattr(optuna, kind), name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}._target_", target, f"is not a class of optuna.{kind} (nothing else is built "
                          "here)", f"{key}._target_={prefix}{example}")
    kwargs = {k: optuna_object(v, f"{key}.{k}", kind) if isinstance(v, dict) and "_target_" in v else v
              for k, v in spec.items() if k != "_target_"}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(key, spec, f"{cls.__name__} does not take these arguments ({err})",
                          f"give only arguments of {target}") from None


def search_space(params: dict | None, arguments: list[str]) -> tuple[dict, list[str]]:
    """Optuna distributions from Hydra sweep syntax (YAML params, then the command line, which wins for a key)
    and the fixed overrides every job gets."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = {o.get_key_element(): o for o in parser.parse_overrides([f"{k}={v}" for k, v in (params or {}).items()])}
    parsed.update({o.get_key_element(): o for o in parser.parse_overrides(list(arguments))})
    space, fixed = {}, []
    for key, override in parsed.items():
        if override.is_sweep_override():
            space[key] = _distribution(key, override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def _distribution(key: str, override):
    from hydra.core.override_parser.types import ChoiceSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(value.list))
    if override.is_range_sweep():
        return CategoricalDistribution(list(override.sweep_iterator()))
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(value.start, value.end, log=log_scale)
    raise ConfigError(key, override.input_line.split("=", 1)[1], "this sweep kind has no Optuna distribution",
                      "choice(a,b), range(1,5), interval(0.1,1) or tag(log,interval(1e-4,1e-1))")


def _value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir.resolve() / 'optuna.db'}"


def create_study(settings, sweep_dir: Path):
    import optuna

    if settings.direction not in ("minimize", "maximize", "min", "max"):
        raise ConfigError("hydra.sweeper.direction", settings.direction, "must say which way is better",
                          "min or max (follows monitor_mode by default)")
    direction = {"min": "minimize", "max": "maximize"}.get(settings.direction, settings.direction)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = settings.storage or default_storage(sweep_dir)
    sampler = OmegaConf.to_container(settings.sampler, resolve=True)
    if settings.storage and sampler.get("seed") is not None:
        # Workers of a shared study started with one seed would sample the same points: give each its own.
        sampler["seed"] = (sampler["seed"] * 1_000_003 + os.getpid() + zlib.crc32(socket.gethostname().encode())) % 2**31
        log.info("shared storage: this worker's sampler seed is %d", sampler["seed"])
    study = optuna.create_study(study_name=settings.study_name, storage=_rdb(storage), direction=direction,
                                sampler=optuna_object(sampler, "hydra.sweeper.sampler", "samplers"),
                                pruner=optuna_object(settings.pruner, "hydra.sweeper.pruner", "pruners"),
                                load_if_exists=True)
    return study, storage


def _rdb(url: str, attempts: int = 5):
    """The study's database; workers started together race to create its tables, so the loser retries."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())


def run_search(launcher, settings, sweep_dir: Path, arguments: list[str]):
    """Runs settings.n_trials more trials of the study, settings.n_jobs at a time; returns the study."""
    from optuna.trial import TrialState

    params = settings.params and OmegaConf.to_container(settings.params, resolve=True)
    space, fixed = search_space(params, arguments)
    if not space:
        raise ConfigError("hydra.sweeper.params", None, "declares no parameter to search",
                          "e.g. hydra.sweeper.params with optimizer.lr: tag(log,interval(1e-4,1e-1))")
    study, storage = create_study(settings, sweep_dir)
    before = len(study.trials)
    pruner = OmegaConf.to_container(settings.pruner, resolve=True)
    log.info("Optuna study %r (%s): %d trials so far, %d to run", study.study_name, redact(storage), before,
             settings.n_trials)
    os.environ[STORAGE_ENV] = storage  # before launching: job processes inherit it (local, joblib, SLURM)
    done = 0
    while done < settings.n_trials:
        trials = [study.ask(space) for _ in range(min(settings.n_jobs, settings.n_trials - done))]
        jobs = [[*fixed, *(f"{k}={_value(v)}" for k, v in t.params.items()), *_trial_overrides(t, storage, pruner,
                                                                                          sweep_dir)]
                for t in trials]
        returns = launcher.launch(jobs, initial_job_idx=trials[0].number)
        for trial, ret in zip(trials, returns):
            state, value = _outcome(ret)
            study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
            log.info("trial %d %s %s %s", trial.number, state.name.lower(), value, trial.params)
        done += len(trials)
    _finish(study, sweep_dir)
    return study


def _trial_overrides(trial, storage: str, pruner: dict, sweep_dir: Path) -> list[str]:
    # Folders named by trial number never collide between invocations or workers of one study; a folder left
    # by another study in the same sweep dir gets the storage-wide trial id appended instead of being reused.
    subdir = str(trial.number)
    if (sweep_dir / subdir).exists():
        subdir = f"{trial.number}-{trial._trial_id}"
    pruner_args = ",".join(f"{k}:{_value(v)}" for k, v in pruner.items())
    return [f"hydra.sweep.subdir={subdir}", f"++optuna_trial.storage={_value(redact(storage))}",
            f"++optuna_trial.study={_value(trial.study.study_name)}", f"++optuna_trial.trial_id={trial._trial_id}",
            f"++optuna_trial.pruner={{{pruner_args}}}"]


def _outcome(ret):
    """(TrialState, value) of one job: pruned per its metrics.json; failed when it raised, when train.main
    recorded a failure (status failed or diverged, NaN returned) or when it has no score."""
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    if ret.status != JobStatus.COMPLETED:
        return TrialState.FAIL, None
    metrics = Path(ret.hydra_cfg.hydra.runtime.output_dir) / "metrics.json"
    status = json.loads(metrics.read_text()).get("status") if metrics.exists() else None
    if status == "pruned":
        return TrialState.PRUNED, None
    if status in ("failed", "diverged") or ret.return_value is None:
        return TrialState.FAIL, None
    return TrialState.COMPLETE, float(ret.return_value)


def _finish(study, sweep_dir: Path) -> None:
    """Best-trial line in the log, and Optuna's history and importance plots as PNG in the sweep folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    import optuna.visualization.matplotlib as ovm
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        log.warning("Optuna study %r has no completed trial yet", study.study_name)
        return
    best = study.best_trial
    log.info("best trial %d: %s %s (%d trials: %d complete)", best.number, best.value, best.params,
             len(study.trials), len(complete))
    plots = {"optuna_history.png": ovm.plot_optimization_history}
    if len(complete) >= 2:
        plots["optuna_importance.png"] = ovm.plot_param_importances
    else:
        log.info("parameter importance needs 2 completed trials: no optuna_importance.png yet")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name, plot in plots.items():
        try:
            ax = plot(study)
        except (ValueError, RuntimeError, ImportError) as err:  # e.g. all trials share one value
            log.info("no %s: %s", name, err)
            continue
        ax.figure.savefig(sweep_dir / name, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
