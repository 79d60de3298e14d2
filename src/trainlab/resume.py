"""resume=<folder>: continue a run (or every unfinished job of a sweep) from its checkpoints/last.ckpt
with the config it was started with; finished jobs are skipped. Imports omegaconf only (torch on use)."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.config import ConfigError
from trainlab.sweep_job import in_multirun
from trainlab.trust import SESSION_KEYS, load_stored_config

log = logging.getLogger("trainlab")
RUN_FILES = ("config.yaml", "metrics.json", "checkpoints")  # what makes a folder a run's
# Config keys added after runs already existed: filled in from the current config when such a run resumes.
LATER_KEYS = ("callbacks.progress_bar.min_seconds",)


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
    if not cfg.get("resume"):
        from trainlab.distributed import launched_as_rank_zero

        taken = [name for name in RUN_FILES if (run_dir / name).exists()]
        if taken and launched_as_rank_zero():  # DDP's other ranks join rank 0's folder on purpose
            raise ConfigError("paths.output_dir", str(run_dir), f"already holds a run ({', '.join(taken)})",
                              f"resume={run_dir} to continue it, or let trainlab pick a new folder")
        return Start(cfg)
    metrics = _read_metrics(run_dir)
    if metrics.get("status") == "ok":
        log.info("resume: %s finished (status ok): skipped, best %s = %s", run_dir, metrics.get("monitor"),
                 metrics.get("best_score"))
        return Start(cfg, finished=metrics)
    stored = run_dir / "config.yaml"
    if not stored.is_file():
        if in_multirun():  # a job of the sweep that had not started yet
            return Start(cfg)
        raise ConfigError("resume", cfg.resume, "is not a trainlab run folder (no config.yaml in it)",
                          "give the folder of the run to continue, e.g. resume=outputs/2026-01-31/12-00-00")
    cfg = _stored_config(cfg, stored)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        log.warning("resume: %s has no checkpoints/last.ckpt yet: training starts again from epoch 0", run_dir)
        return Start(cfg)
    from trainlab import checkpoint_io

    checkpoint_io.load(last, "resume")  # a clear error now for a truncated or foreign file
    log.info("resume: continuing %s from %s", run_dir, last)
    return Start(cfg, ckpt_path=str(last))


def _read_metrics(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _stored_config(cfg: DictConfig, stored: Path) -> DictConfig:
    """The run's own config.yaml, with this session's paths; an override that contradicts it is an error
    (a resumed run must continue with the settings it started with)."""
    old = load_stored_config(stored)  # literal data: no resolver, no _target_, trusted class paths only
    for key, value in _overrides():
        if key.split(".")[0] in ("resume", "paths", "hydra") or key.startswith(("+", "~")):
            continue
        before = OmegaConf.select(old, key, default=None)
        now = OmegaConf.select(cfg, key, default=None)
        if isinstance(before, DictConfig) or before == now:
            continue
        raise ConfigError(key, value, f"differs from the resumed run's config.yaml ({before!r})",
                          f"drop {key}=... to continue the run as it was, or start a new run without resume=")
    with open_dict(old):
        old.paths = cfg.paths
        old.resume = cfg.resume
        for key in SESSION_KEYS:  # e.g. the Optuna trial handle: this session's, never the stored one
            if key in cfg:
                old[key] = cfg[key]
        for key in LATER_KEYS:  # a run from before the key existed continues with today's default
            if OmegaConf.select(old, key, default=None) is None:
                OmegaConf.update(old, key, OmegaConf.select(cfg, key), force_add=True)
    return old


def _overrides() -> list[tuple[str, str]]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [tuple(o.split("=", 1)) for o in HydraConfig.get().overrides.task if "=" in o]


def command(run_dir: Path) -> str:
    """The exact command that continues this run (or, in a sweep, the whole sweep)."""
    from hydra.core.hydra_config import HydraConfig

    if in_multirun():
        hc = HydraConfig.get()
        overrides = [o for o in hc.overrides.task if not o.startswith("resume=")]
        return f"python train.py -m {' '.join(overrides)} resume={hc.sweep.dir}"
    return f"python train.py resume={run_dir}"
