"""`python train.py tune=lr_find | tune=batch_size`: Lightning's Tuner on the run's data and model, instead of
training. The run folder gets the result (lr_find.png + lr_find.json, or batch_size.json) and the command that
trains with it is printed; nothing is trained and no checkpoint is left (the Tuner's temporary one in the run
folder is removed by Lightning once it has restored the weights).

Imports omegaconf only (Lightning on use): `check` runs in the command line's pre-check.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from omegaconf import OmegaConf

from trainlab.config import ConfigError
from trainlab.distributed import process_count

log = logging.getLogger("trainlab")
# Per mode: the setting the result is for, as it is typed on the command line.
RESULT_KEY = {"lr_find": "optimizer.lr", "batch_size": "dataset.batch_size"}


def check(cfg, multirun: bool) -> None:
    """Refuse a tune where the Tuner cannot apply; called before any folder or data exists."""
    tune = cfg.get("tune")
    if not tune:
        return
    mode = tune.get("mode")
    fix = f"run `python train.py tune={mode}` alone (one process, a new run folder)"
    if multirun:
        raise ConfigError("tune", mode, "tunes one configuration and trains nothing, so a sweep (-m) of it has "
                          "nothing to compare", f"{fix}; sweep afterwards with the value it prints")
    if cfg.get("resume"):
        raise ConfigError("tune", mode, "cannot run in a resumed run: it would restore the run's checkpoint and "
                          "write its files into that run's folder", fix)
    if cfg.trainer.fast_dev_run:
        raise ConfigError("trainer.fast_dev_run", cfg.trainer.fast_dev_run, f"and tune={mode}: Lightning's Tuner "
                          "skips its search under fast_dev_run", "trainer.fast_dev_run=false (remove debug=fdr)")
    processes = process_count(cfg.trainer)
    if processes > 1:
        raise ConfigError("trainer.devices", cfg.trainer.devices, f"runs {processes} processes, and Lightning's "
                          f"Tuner does not support distributed strategies (tune={mode})",
                          f"tune on one device: trainer.devices=1 trainer.num_nodes=1 tune={mode}")
    low, high = tune.get("min_lr"), tune.get("max_lr")
    if mode == "lr_find" and all(isinstance(v, (int, float)) for v in (low, high)) and low >= high:
        raise ConfigError("tune.min_lr", low, f"must be below tune.max_lr={high}", "tune.min_lr=1e-8 tune.max_lr=1.0")


def run(cfg, parts, run_dir: Path) -> dict:
    """Tune on `parts` (build.build_parts); writes and returns the result, prints the command that uses it."""
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    from trainlab import checkpoint_io

    args = {**parts.trainer_args, "max_epochs": -1, "max_steps": -1}  # the search's own step count ends it
    trainer = L.Trainer(**args, logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(run_dir), use_distributed_sampler=False,
                        plugins=[checkpoint_io.plugin()])
    tuner, tune = Tuner(trainer), cfg.tune
    if tune.mode == "lr_find":
        parts.module.warmup_steps = 0  # warm-up would scale down the first learning rates of the range
        finder = tuner.lr_find(parts.module, datamodule=parts.datamodule, min_lr=tune.min_lr, max_lr=tune.max_lr,
                               num_training=tune.num_training, early_stop_threshold=tune.early_stop_threshold,
                               update_attr=False)
        result = _lr_result(cfg, finder, run_dir)
    else:
        found = tuner.scale_batch_size(parts.module, datamodule=parts.datamodule, mode="power",
                                       steps_per_trial=tune.steps_per_trial, init_val=tune.init_val,
                                       max_trials=tune.max_trials, batch_arg_name="batch_size")
        samples = len(parts.datamodule.train_set)
        # Lightning stops doubling once a batch holds the whole split, and returns that last (larger) size.
        result = {"batch_size": min(found, samples), "tried": found, "device": str(trainer.strategy.root_device),
                  "train_samples": samples, **OmegaConf.to_container(tune)}
        (run_dir / "batch_size.json").write_text(json.dumps(result, indent=2))
        print(f"trainlab tune=batch_size: the largest batch that ran on {result['device']}: {result['batch_size']} "
              f"(the search stops at an out-of-memory error, after tune.max_trials={tune.max_trials} doublings, or at "
              f"the training split's {samples} samples) -> {run_dir / 'batch_size.json'}", flush=True)
    value = result["batch_size" if tune.mode == "batch_size" else "suggested_lr"]
    if value is not None:
        print(f"Train with it: {_command(RESULT_KEY[tune.mode], value)}", flush=True)
    return result


def _lr_result(cfg, finder, run_dir: Path) -> dict:
    from trainlab.figures import pyplot

    pyplot()  # the Agg backend before Lightning's plot imports pyplot
    suggestion = finder.suggestion()
    lrs, losses = finder.results["lr"], finder.results["loss"]
    result = {"suggested_lr": suggestion, "optimizer": cfg.optimizer.class_path, "configured_lr": cfg.optimizer.lr,
              "steps_run": len(lrs), **OmegaConf.to_container(cfg.tune),
              "lr": [_finite(v) for v in lrs], "loss": [_finite(v) for v in losses]}
    fig = finder.plot(suggest=suggestion is not None, show=False)
    fig.axes[0].set_title(f"LR range test: suggested lr {suggestion:.3g}" if suggestion else "LR range test")
    fig.savefig(run_dir / "lr_find.png", dpi=100)
    (run_dir / "lr_find.json").write_text(json.dumps(result, indent=2))
    if suggestion is None:
        log.warning("lr_find: no suggestion from %d steps (the loss curve is too short); raise tune.num_training "
                    "or tune.early_stop_threshold", len(lrs))
    shown = f"{suggestion:.3g}" if suggestion is not None else "none"
    print(f"trainlab tune=lr_find: suggested optimizer.lr={shown} (steepest descent of the loss over {len(lrs)} "
          f"steps, {cfg.tune.min_lr:g} to {cfg.tune.max_lr:g}) -> {run_dir / 'lr_find.png'}, lr_find.json",
          flush=True)
    return result


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None  # JSON has no NaN or Infinity


def _command(key: str, value) -> str:
    """`python train.py <this run's overrides, less tune and key> key=value`."""
    from hydra.core.hydra_config import HydraConfig

    typed = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in typed if o.split("=", 1)[0].lstrip("+~") not in ("tune", key)
            and not o.lstrip("+~").startswith("tune.")]
    shown = f"{value:.3g}" if isinstance(value, float) else str(value)
    return " ".join(["python train.py", *kept, f"{key}={shown}"])
