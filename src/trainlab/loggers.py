"""The logger seam: the logger group is a mapping of named loggers ({name: {class_path, init_args}}, one per
conf/logger option, so `logger=[tensorboard,csv]` composes several) beside two switches, `histograms` and
`image_grid`. trainlab passes save_dir=<run folder> to each logger class that takes it.

The switches need a logger that can draw them (TensorBoard's add_histogram/add_image, i.e. a subclass of
Lightning's TensorBoardLogger); asked for with none of those, they are refused before any data loads.
"""
from __future__ import annotations

import csv
import inspect
import os
from pathlib import Path

from lightning.pytorch import loggers as lightning_loggers
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from trainlab.config import ConfigError
from trainlab.schema import check_init_args, locate

SWITCHES = ("histograms", "image_grid")
RUN_FOLDER_ARG = "save_dir"


class CSVLogger(lightning_loggers.CSVLogger):
    """Lightning's CSV logger, except that a resumed run's metrics.csv is continued: Lightning's deletes a
    metrics.csv it finds in its folder, and with it the rows of the epochs before the interruption."""

    @property
    def experiment(self):
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return self._experiment


class _ContinuedWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:  # keep the rows; new columns rewrite the file with all of them
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


def entries(logger: dict) -> dict:
    """{name: {class_path, init_args}} of the chosen loggers (none: logger=none)."""
    return {name: spec for name, spec in logger.items() if name not in SWITCHES}


def classes(logger: dict) -> dict:
    """{name: class} of the chosen loggers, each a Lightning Logger whose init_args fit its signature."""
    found = {}
    for name, spec in entries(logger).items():
        key = f"logger.{name}"
        cls = locate(f"{key}.class_path", spec["class_path"])
        if not (inspect.isclass(cls) and issubclass(cls, lightning_loggers.Logger)):
            raise ConfigError(f"{key}.class_path", spec["class_path"], "is not a Lightning logger class",
                              "a subclass of lightning.pytorch.loggers.Logger, e.g. lightning.pytorch.loggers.CSVLogger")
        check_init_args(key, cls, spec["init_args"], (RUN_FOLDER_ARG,))
        found[name] = cls
    return found


def draws(cls) -> bool:
    """Whether the logger can draw histograms and images (a TensorBoard SummaryWriter as its experiment)."""
    return issubclass(cls, lightning_loggers.TensorBoardLogger)


def features(logger: dict) -> set[str]:
    """The switches on for this config ("image_grid": auto is on when a chosen logger draws); a switch set to
    true without such a logger is a ConfigError."""
    drawing = [name for name, cls in classes(logger).items() if draws(cls)]
    on = set()
    for switch in SWITCHES:
        if logger[switch] is True and not drawing:
            chosen = ", ".join(entries(logger)) or "none"
            raise ConfigError(f"logger.{switch}", True, f"needs a TensorBoard logger, and the chosen loggers "
                              f"({chosen}) cannot draw {switch.replace('_', ' ')}s",
                              f"logger.{switch}=false, or add TensorBoard: logger=[tensorboard,...]")
        if logger[switch] is True or (logger[switch] == "auto" and drawing):
            on.add(switch)
    return on


def build(logger: dict, run_dir: Path) -> list:
    """The chosen loggers, writing into the run folder. wandb runs offline unless WANDB_API_KEY is set."""
    built = []
    for name, cls in classes(logger).items():
        args = dict(entries(logger)[name]["init_args"])
        if RUN_FOLDER_ARG in inspect.signature(cls).parameters:
            args[RUN_FOLDER_ARG] = str(run_dir / _store_folder(cls))
        if _is("WandbLogger", cls) and "WANDB_API_KEY" not in os.environ:
            os.environ.setdefault("WANDB_MODE", "offline")  # a mode the user set is kept
        if _is("MLFlowLogger", cls) and not args.get("tracking_uri") and not os.environ.get("MLFLOW_TRACKING_URI"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses its file store without it
        built.append(cls(**args))
    return built


def _store_folder(cls) -> str:
    # MLflow's file store lays out experiment folders where it is pointed: keep them out of the run folder's top
    return "mlruns" if _is("MLFlowLogger", cls) else ""


def _is(name: str, cls) -> bool:
    return hasattr(lightning_loggers, name) and issubclass(cls, getattr(lightning_loggers, name))


def flat_hparams(config: dict, prefix: str = "") -> dict:
    """Config flattened to scalar values (TensorBoard's HPARAMS tab, MLflow params, wandb config)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, name + "."))
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[name] = "null" if value is None else value
        else:
            out[name] = str(value)
    return out


def log_final_hparams(built: list, config: dict, metrics: dict, step: int) -> None:
    """Every logger gets the flattened config and the run's final val/test metrics as hparam/<metric>:
    TensorBoard in its HPARAMS tab, the others as params plus one last metrics row."""
    params = flat_hparams({k: v for k, v in config.items() if k not in ("paths",)})
    final = {f"hparam/{k}": v for k, v in metrics.items()}
    for logger in built:
        if draws(type(logger)):
            logger.log_hyperparams(params, metrics=final)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(final, step=step)
        if hasattr(logger, "flush"):  # trainlab's TensorBoardLogger throttles its saves
            logger.flush()
        else:
            logger.save()


def close(built: list) -> None:
    """A wandb run stays open in the process after fit (a later run in it would write into it): finish it."""
    for logger in built:
        if _is("WandbLogger", type(logger)) and logger._experiment is not None:
            logger.experiment.finish()
