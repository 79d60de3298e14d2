"""The training task: validate config -> build data, model, trainer -> fit -> test -> metrics on disk.

Module import is cheap (omegaconf only) so the Hydra CLI answers --help and --cfg at once; torch,
Lightning and torchvision load inside run().
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trainlab import build, checkpoint_io, config, distributed, preflight, resume, run_lock, tune
from trainlab.config import ConfigError
from trainlab.resume import RunStopped
from trainlab.sweep_checks import SweepError
from trainlab.sweep_job import assigned_device, in_multirun, record_failure
from trainlab.trust import SESSION_KEYS

log = logging.getLogger("trainlab")


def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: returns the best monitored value (what sweepers optimise)."""
    try:
        metrics = run(cfg)
    except RunStopped as stop:  # run() has written metrics.json with the status
        log.error("Run %s: %s", stop.status, stop.message)
        if stop.status == "diverged" and in_multirun():
            return float("nan")  # one diverged job does not stop the sweep; the report lists it
        raise SystemExit(stop.exit_code) from None
    except SweepError as err:  # the sweep itself is wrong: stop it, write nothing into the job's folder
        log.error("Config error: %s", err)
        raise SystemExit(2) from None
    except Exception as err:
        if not in_multirun():
            if isinstance(err, ConfigError):
                log.error("Config error: %s", err)
                raise SystemExit(2) from None
            raise
        return record_failure(cfg, err)  # the sweep goes on; its report lists the failure and sets the exit code
    return metrics.get("best_score")


def run(cfg: DictConfig) -> dict:
    cfg = _composed(cfg)
    tune.check(cfg, in_multirun())  # before resume.prepare reads a stored config in its place
    start = resume.prepare(cfg)  # resume=: the run's own config and last.ckpt; a finished job is skipped
    if start.finished is not None:
        return start.finished
    cfg = start.cfg
    run_dir = Path(cfg.paths.output_dir)
    stored = run_dir / "config.yaml" if cfg.get("resume") and (run_dir / "config.yaml").is_file() else None
    with config.stored_file(stored):  # a resumed run's mistakes are fixed in its config.yaml
        config.validate(cfg, _hydra_choices())
        resolved = config.plain(cfg)
        preflight.check(resolved)  # network, optimizer, scheduler, Trainer: built before any data loads
    distributed.check_launch(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_lock.hold(run_dir, "resume" if cfg.get("resume") else "paths.output_dir")  # one trainer per run folder
    if distributed.launched_as_rank_zero():  # DDP: only rank 0 writes the run's files
        # Without per-session handles (trust.SESSION_KEYS): config.yaml holds the run's settings only.
        settings = {k: v for k, v in resolved.items() if k not in SESSION_KEYS}
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(settings))
        if cfg.print_config:
            from trainlab.config_tree import show_tree

            show_tree(settings)
    started = time.time()

    import lightning as L

    from trainlab.console import quiet_lightning

    quiet_lightning()

    from trainlab.build import build_parts
    from trainlab.callbacks import build_callbacks
    from trainlab import finetune, guards, loggers
    from trainlab.figures import FinalFigures
    from trainlab.pruning import OptunaPruning

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build_parts(cfg, resolved)  # datamodule (set up), network, TrainModule: shared with inference.py
    if cfg.get("tune"):  # tune=lr_find | batch_size: Lightning's Tuner instead of training
        return tune.run(cfg, parts, run_dir)
    datamodule, module, trainer_args = parts.datamodule, parts.module, parts.trainer_args

    callbacks, checkpoint, history = build_callbacks(cfg, resolved, run_dir, loggers.features(resolved["logger"]))
    callbacks += guards.build(cfg, run_dir) + finetune.callbacks(cfg)
    built_loggers = loggers.build(resolved["logger"], run_dir)
    if trainer_args["profiler"]:  # its report in the run folder whatever the logger (appended on resume)
        trainer_args["profiler"] = _profiler(trainer_args["profiler"], run_dir)
    pruning = OptunaPruning.from_config(cfg)  # only in jobs of `-m hparams_search=optuna`
    callbacks += [pruning] if pruning else []
    drawing = FinalFigures.from_config(cfg)  # figures: true
    callbacks += [drawing] if drawing else []
    trainer = L.Trainer(**trainer_args, logger=built_loggers or False, callbacks=callbacks,
                        default_root_dir=str(run_dir), enable_progress_bar=cfg.callbacks.progress_bar.enabled,
                        plugins=[checkpoint_io.plugin()],  # atomic checkpoint files in their own folder
                        use_distributed_sampler=False)  # the datamodule shards per rank (distributed.py)
    if distributed.launched_as_rank_zero():  # the lock holder: a SIGKILL mid-write left its temporary file
        for folder in (run_dir, run_dir / "checkpoints"):
            checkpoint_io.remove_partial_writes(folder)
    test, tested = {}, {}
    try:
        with guards.stops(trainer, run_dir):  # to the last file written: a full disk there is a stop too
            trainer.fit(module, datamodule=datamodule, ckpt_path=start.ckpt_path, weights_only=True)
            if cfg.test_after_fit:
                tested = _tested_weights(module, checkpoint, run_dir, trainer.fast_dev_run)
                test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
            metrics = _summary(cfg, checkpoint, history.rows, test, trainer, run_dir, time.time() - started,
                               history.first_step_seconds, tested)
            if pruning and pruning.pruned:
                metrics["status"] = "pruned"
            if trainer.is_global_zero:
                _write_metrics(run_dir, metrics)
                if drawing:
                    drawing.write(run_dir, cfg.task, metrics["history"], datamodule, built_loggers, trainer.global_step)
                loggers.log_final_hparams(built_loggers, resolved, {**metrics["val"], **metrics["test"]},
                                          trainer.global_step)
    except RunStopped as stop:  # interrupted, diverged or disk full: record it, keep the checkpoints
        if stop.status == "disk_full":
            logging.raiseExceptions = False  # log files on the full disk fail quietly: the one line is below
        metrics = _summary(cfg, checkpoint, history.rows, test, trainer, run_dir, time.time() - started,
                           history.first_step_seconds, tested)
        metrics.update(status=stop.status, error=stop.message)
        if trainer.is_global_zero:  # as for a finished run: one writer under DDP
            _write_metrics(run_dir, metrics, stop)
            print(f"trainlab: run {stop.status}: {stop.message}", flush=True)
        raise
    finally:
        loggers.close(built_loggers)
    if trainer.is_global_zero:
        _print_table(metrics)
    return metrics


def _composed(cfg: DictConfig) -> DictConfig:
    """A config from Hydra's compose API (a notebook, a test) rather than train.py: there is no run folder yet
    (paths.output_dir reads Hydra's, unset: a new one under outputs/ is claimed, as train.py would), and
    `compose(..., return_hydra_config=True)` leaves Hydra's own section in it (not the run's settings)."""
    from omegaconf.errors import InterpolationResolutionError

    if "hydra" in cfg:
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        output_dir = cfg.paths.output_dir
    except InterpolationResolutionError:  # HydraConfig not set: not under hydra.main
        output_dir = None
    if output_dir is not None:
        return cfg
    cfg = cfg.copy()
    folder = cfg.resume or config.claim_folder(time.strftime("outputs/%Y-%m-%d/%H-%M-%S"))
    OmegaConf.update(cfg, "paths.output_dir", str(folder), force_add=True)
    return cfg


def _profiler(kind: str, run_dir: Path):
    from lightning.pytorch.profilers import AdvancedProfiler, SimpleProfiler

    cls = SimpleProfiler if kind == "simple" else AdvancedProfiler
    return cls(dirpath=str(run_dir), filename="profiler")  # fit-profiler.txt, test-profiler.txt


def _tested_weights(module, checkpoint, run_dir: Path, fast_dev_run: int) -> dict:
    """Put the best checkpoint's weights in the module for the final test, and say which were tested.

    Only the weights: Lightning's ckpt_path="best" would also restore the callbacks' states from that older
    checkpoint (the epoch history would end at the best epoch)."""
    if checkpoint.best_model_path:
        module.load_state_dict(checkpoint_io.load(checkpoint.best_model_path, "best_checkpoint")["state_dict"])
        log.info("Final test with the best weights (%s)", checkpoint.best_model_path)
        return {"tested": "best", "tested_checkpoint": checkpoint.best_model_path}
    last = run_dir / "checkpoints" / "last.ckpt"
    if fast_dev_run:
        log.info("fast_dev_run writes no checkpoint: the final test uses the last weights")
        return {"tested": "last", "tested_checkpoint": None}
    log.warning("No best checkpoint (callbacks.checkpoint.save_top_k=0, or the monitor was never logged): the "
                "final test uses the last weights")
    return {"tested": "last", "tested_checkpoint": str(last) if last.is_file() else None}


def _write_metrics(run_dir: Path, metrics: dict, stop: RunStopped | None = None) -> None:
    try:
        checkpoint_io.write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
    except OSError as err:
        if stop is None or stop.status != "disk_full":
            raise
        stop.message += f" (metrics.json could not be written either: {err.strerror})"


def _hydra_choices() -> dict | None:
    from hydra.core.hydra_config import HydraConfig

    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else None


def _best_row(cfg, rows: list[dict]) -> dict:
    scored = [r for r in rows if cfg.monitor in r]
    if not scored:
        return rows[-1] if rows else {}
    pick = max if cfg.monitor_mode == "max" else min
    return pick(scored, key=lambda r: r[cfg.monitor])


def _summary(cfg, checkpoint, rows, test, trainer, run_dir: Path, seconds: float, first_step,
             tested: dict) -> dict:
    best = _best_row(cfg, rows)
    score = checkpoint.best_model_score
    best_file = checkpoint.best_model_path
    return {
        "status": "ok",
        "monitor": cfg.monitor,
        "monitor_mode": cfg.monitor_mode,
        "best_score": float(score) if score is not None else best.get(cfg.monitor),
        "best_epoch": best.get("epoch"),
        "best_checkpoint": best_file if best_file and Path(best_file).is_file() else None,  # a failed write: none
        "val": {k: v for k, v in best.items() if k.startswith("val/")},
        "test": {k: float(v) for k, v in test.items()},
        **tested,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "seconds": round(seconds, 2),
        "preprocessing": build.preprocessing(trainer.datamodule),  # what evaluate, predict and an export apply
        "first_step_seconds": first_step,
        "run_dir": str(run_dir),
        "run_name": cfg.run_name,
        "tags": list(cfg.tags),
        **_debug(trainer),
        **assigned_device(),  # the CUDA device the parallel launcher gave this sweep job
        "history": rows,
    }


def _debug(trainer) -> dict:
    """A fast_dev_run is a smoke test, not a result: metrics.json and the results table say so."""
    if not trainer.fast_dev_run:
        return {}
    n = int(trainer.fast_dev_run)
    return {"debug": f"fast_dev_run={n}: {n} batch(es) of fit, validation and test, no checkpoint written, "
                     "Lightning's metric logging off; a smoke test, not a result"}


def _print_table(metrics: dict) -> None:
    lines = [f"trainlab results ({metrics['run_dir']})"]
    if "debug" in metrics:
        lines.append(f"  {metrics['debug']}")
    if metrics["best_score"] is not None:
        lines.append(f"  best {metrics['monitor']:<14} {metrics['best_score']:.4f}  (epoch {metrics['best_epoch']})")
    for key, value in metrics["test"].items():
        lines.append(f"  {key:<19} {value:.4f}")
    lines.append(f"  epochs {metrics['epochs']}, {metrics['seconds']:.1f} s in the run, "
                 f"first training step {metrics['first_step_seconds']} s after the command")
    print("\n".join(lines), flush=True)
