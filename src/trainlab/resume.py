"""resume=<folder>: continue a run (or every unfinished job of a sweep) from its checkpoints/last.ckpt
with the config it was started with; finished jobs are skipped, or continued when the run length grows.
Imports omegaconf only (hydra, torch on use)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import Container, DictConfig, OmegaConf, open_dict

from trainlab import sweep_checks, trust
from trainlab.config import ConfigError
from trainlab.sweep_job import in_multirun

log = logging.getLogger("trainlab")
RUN_FILES = ("config.yaml", "metrics.json", "checkpoints")  # what makes a folder a run's
# Config keys added after runs already existed: filled in from the current config when such a run resumes.
LATER_KEYS = ("callbacks.progress_bar.min_seconds", "tags", "print_config", "trainer.profiler",
              "trainer.detect_anomaly", "figures", "dataset.oversample", "dataset.oversample_bins",
              "dataset.class_weights", "optimizer.backbone_lr_mult", "finetune.unfreeze_after_epochs",  # off by default
              *(f"augmentation.{step}" for step in ("affine", "color", "policy", "erasing", "mixup", "cutmix")))
# What `resume=` may change (README "Resume"): how the run is shown and labelled, how often it logs, and how long it
# runs (to continue it, finished or not). None of these changes what a training step computes. Every other
# difference from the run's config.yaml is refused by name. Each entry covers the key and everything under it.
MAY_CHANGE = ("callbacks.progress_bar", "callbacks.model_summary", "print_config", "tags", "trainer.log_every_n_steps",
              "trainer.max_epochs", "trainer.max_steps", "trainer.min_epochs")
RUN_LENGTH = ("trainer.max_epochs", "trainer.max_steps")  # the limits that end a run
# Keys each session sets for itself (its folders, the resume flag, Hydra's and Optuna's bookkeeping).
SESSION_KEYS = ("resume", "paths", "hydra", *trust.SESSION_KEYS)
_ABSENT = object()


class RunStopped(Exception):
    """A run that ended before its last epoch; `status` goes to metrics.json, `exit_code` to the shell."""

    def __init__(self, status: str, message: str, exit_code: int):
        self.status, self.message, self.exit_code = status, message, exit_code
        super().__init__(message)


@dataclass
class Start:
    cfg: DictConfig
    ckpt_path: str | None = None       # checkpoint to continue from
    finished: dict | None = None        # metrics of a run that already ended ok: nothing to do


def prepare(cfg: DictConfig) -> Start:
    run_dir = Path(cfg.paths.output_dir)
    if in_multirun():
        sweep_checks.check_experiment_sweep()
    if not cfg.get("resume"):
        from trainlab.distributed import launched_as_rank_zero

        taken = [name for name in RUN_FILES if (run_dir / name).exists()]
        if taken and launched_as_rank_zero():  # DDP's other ranks join rank 0's folder on purpose
            raise ConfigError("paths.output_dir", str(run_dir), f"already holds a run ({', '.join(taken)})",
                              f"resume={run_dir} to continue it, or let trainlab pick a new folder")
        return Start(cfg)
    if in_multirun():
        sweep_checks.check_job_identity(run_dir)
    stored = run_dir / "config.yaml"
    if not stored.is_file():
        if in_multirun():  # a job of the sweep that had not started yet
            return Start(cfg)
        raise ConfigError("resume", cfg.resume, "is not a trainlab run folder (no config.yaml in it)",
                          "give the folder of the run to continue, e.g. resume=outputs/2026-01-31/12-00-00")
    cfg, changed = _stored_config(cfg, stored)
    length = {key: change for key, change in changed.items() if key in RUN_LENGTH}
    if length:
        _check_scheduler_length(cfg, length)
    metrics = _read_metrics(run_dir)
    finished = metrics.get("status") == "ok"
    if finished and not length:
        log.info("resume: %s finished (status ok): skipped, best %s = %s (a larger trainer.max_epochs "
                 "continues it)", run_dir, metrics.get("monitor"), metrics.get("best_score"))
        return Start(cfg, finished=metrics)
    if finished:
        _check_trains_more(cfg, length, metrics)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        if finished:
            key, (_, now) = next(iter(length.items()))
            raise ConfigError(key, now, f"the finished run {run_dir} has no checkpoints/last.ckpt to continue from",
                              "start a new run with this length")
        log.warning("resume: %s has no checkpoints/last.ckpt yet: training starts again from epoch 0", run_dir)
        return Start(cfg)
    from trainlab import checkpoint_io

    checkpoint_io.load(last, "resume")  # a clear error now for a truncated or foreign file
    if finished:
        _keep_metrics(run_dir, metrics)
    log.info("resume: continuing %s from %s", run_dir, last)
    return Start(cfg, ckpt_path=str(last))


def _read_metrics(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _stored_config(cfg: DictConfig, stored: Path) -> tuple[DictConfig, dict]:
    """The run's own config.yaml with this session's paths and the changes MAY_CHANGE allows (also returned,
    as {key: (stored, new)}); any other override that contradicts it is an error."""
    old = trust.load_stored_config(stored)  # literal data: no resolver, no _target_, trusted class paths only
    changed = changes(old, cfg, _overrides(), _groups())
    with open_dict(old):
        old.paths = cfg.paths
        old.resume = cfg.resume
        for key in SESSION_KEYS:  # e.g. the Optuna trial handle: this session's, never the stored one
            if key in cfg:
                old[key] = cfg[key]
        for key in LATER_KEYS:  # a run from before the key existed continues with today's default
            if OmegaConf.select(old, key, default=None) is None:
                OmegaConf.update(old, key, OmegaConf.select(cfg, key), force_add=True)
        for key, (_, now) in changed.items():
            OmegaConf.update(old, key, now, force_add=True)
    return old, changed


def changes(stored: DictConfig, cfg: DictConfig, overrides: list[str], groups) -> dict[str, tuple]:
    """{key: (stored value, new value)} for each key the overrides change from the stored run, all of them
    in MAY_CHANGE; any other change raises ConfigError naming the override, the stored value and the new one.

    cfg is the config composed with the overrides (as Hydra did); groups are the config group names. An
    override touches its key; a group override (optimizer=sgd) the group's whole subtree, or every key for
    an option of the global package (experiment=...): a group option equal to the stored one is no change."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        for touched in _touched(override, cfg, stored, groups):
            before, now = _leaves(stored, touched), _leaves(cfg, touched)
            for key in sorted(before.keys() | now.keys()):
                old, new = before.get(key, _ABSENT), now.get(key, _ABSENT)
                if old == new or (old is _ABSENT and key in LATER_KEYS):
                    continue
                if new is _ABSENT or not any(key == k or key.startswith(k + ".") for k in MAY_CHANGE):
                    change = f"removes {key}" if new is _ABSENT else f"sets {key} to {new!r}"
                    raise ConfigError(override.get_key_element(), override.value(),
                                      f"{change}, but the resumed run's config.yaml has {_show(old)} (a resumed "
                                      f"run may change only {', '.join(MAY_CHANGE)})",
                                      f"drop {override.input_line} to continue the run as it was, or start a new "
                                      "run without resume=")
                found[key] = (old, new)
    return found


def _touched(override, cfg: DictConfig, stored: DictConfig, groups) -> list[str]:
    """Config keys an override sets: "" is every key."""
    key = override.key_or_group
    if key.replace("/", ".").split(".")[0] in SESSION_KEYS:
        return []
    if key not in groups:
        return [key]
    node = (override.package or key).replace("/", ".").removeprefix("_global_").lstrip(".")
    present = node and any(OmegaConf.select(c, node, default=None) is not None for c in (cfg, stored))
    return [node] if present else [""]


def _leaves(conf: DictConfig, key: str) -> dict:
    """{dotted key: resolved value} of every leaf under key (lists are leaves; "" is the whole config)."""
    if not key:
        return {k: v for top in conf if top not in SESSION_KEYS for k, v in _leaves(conf, str(top)).items()}
    value = OmegaConf.select(conf, key, default=_ABSENT)
    if isinstance(value, Container):
        value = OmegaConf.to_container(value, resolve=True)
    return _flat(key, value)


def _flat(prefix: str, value) -> dict:
    if isinstance(value, dict) and value:
        return {k: v for name, item in value.items() for k, v in _flat(f"{prefix}.{name}", item).items()}
    return {} if value is _ABSENT else {prefix: value}


def _show(value) -> str:
    return "no such key" if value is _ABSENT else repr(value)


def _check_scheduler_length(cfg: DictConfig, length: dict) -> None:
    """A scheduler whose length is the run's (cosine T_max, OneCycle total_steps) was built for the old one."""
    from trainlab.optim import RUNTIME_LENGTH

    arg = RUNTIME_LENGTH.get(cfg.scheduler.class_path)
    if arg:
        key, (before, now) = next(iter(length.items()))
        raise ConfigError(key, now, f"the run's {cfg.scheduler.class_path.rsplit('.', 1)[-1]} took its {arg} from "
                          f"the run's length ({key}={before}) when it started: its schedule cannot be stretched "
                          "(OneCycleLR cannot step past its total)",
                          f"resume without {key}=... to finish the run as planned, or start a new run with "
                          f"{key}={now}")


def _check_trains_more(cfg: DictConfig, length: dict, metrics: dict) -> None:
    """A finished run continues only when its new limits allow more epochs and steps than it trained."""
    epochs, steps = metrics.get("epochs", 0), metrics.get("global_step", 0)
    max_epochs, max_steps = cfg.trainer.max_epochs, cfg.trainer.max_steps
    if (max_epochs in (None, -1) or max_epochs > epochs) and (max_steps in (None, -1) or max_steps > steps):
        return
    key, (_, now) = next(iter(length.items()))
    raise ConfigError(key, now, f"the run already finished after {epochs} epochs ({steps} steps), which "
                      f"trainer.max_epochs={max_epochs} trainer.max_steps={max_steps} leave nothing to train",
                      f"a larger length continues it (e.g. trainer.max_epochs={epochs + 5}), or start a new run")


def _keep_metrics(run_dir: Path, metrics: dict) -> None:
    """The finished run's metrics.json moves aside (metrics-<epochs>ep.json) before training continues."""
    from trainlab.distributed import launched_as_rank_zero

    if not launched_as_rank_zero():
        return
    name, n = f"metrics-{metrics.get('epochs')}ep", 0
    target = run_dir / f"{name}.json"
    while target.exists():
        n += 1
        target = run_dir / f"{name}-{n}.json"
    (run_dir / "metrics.json").rename(target)
    log.info("resume: %s finished after %s epochs; its metrics moved to %s, training continues", run_dir,
             metrics.get("epochs"), target.name)


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _groups() -> set[str]:
    from hydra.core.hydra_config import HydraConfig

    return set(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else set()


def command(run_dir: Path) -> str:
    """The exact command that continues this run (or, in a sweep, the whole sweep)."""
    from hydra.core.hydra_config import HydraConfig

    if in_multirun():
        hc = HydraConfig.get()
        overrides = [o for o in hc.overrides.task if not o.startswith("resume=")]
        return f"python train.py -m {' '.join(overrides)} resume={hc.sweep.dir}"
    return f"python train.py resume={run_dir}"
