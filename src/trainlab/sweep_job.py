"""A multirun job that fails is recorded, not raised: Hydra's BasicSweeper would re-raise it after the
batch and skip on_multirun_end, hiding the other jobs' results. The sweep report lists it and exits 1."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("trainlab")


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(cfg, err: BaseException) -> float:
    """metrics.json with status "failed" and the error's first line; the traceback goes to the job's log."""
    log.exception("Job failed: %s", err)
    first_line = (str(err).strip().splitlines() or [""])[0]
    _write_failed(Path(cfg.paths.output_dir), f"{type(err).__name__}: {first_line}", assigned_device())
    return float("nan")


def record_dead_job(run_dir: Path, error: str, device: str | None) -> None:
    """The launcher's record of a job whose process died; whatever the job wrote itself is kept."""
    if not (run_dir / "metrics.json").exists():
        _write_failed(run_dir, error, {} if device is None else {"cuda_visible_devices": device})


def assigned_device() -> dict:
    """The CUDA device the parallel launcher gave this job (src/hydra_plugins/trainlab_launcher), for metrics.json."""
    if os.environ.get("TRAINLAB_ASSIGNED_DEVICE") is None:
        return {}
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _write_failed(run_dir: Path, error: str, extra: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(
        {"status": "failed", "error": error, "run_dir": str(run_dir), **extra}, indent=2))
