"""A multirun job that fails is recorded, not raised: Hydra's BasicSweeper would re-raise it after the
batch and skip on_multirun_end, hiding the other jobs' results. The sweep report lists it and exits 1."""
from __future__ import annotations

import json
import logging
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
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(
        {"status": "failed", "error": f"{type(err).__name__}: {first_line}", "run_dir": str(run_dir)}, indent=2))
    return float("nan")
