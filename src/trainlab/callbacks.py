"""Lightning callbacks built from conf/callbacks (trainlab's own and the user's `callbacks.extra`), plus the
TensorBoard logger trainlab builds for logger=tensorboard."""
from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import lightning as L
from lightning.pytorch import callbacks as lc
from lightning.pytorch import loggers

import trainlab
from trainlab.checkpoint_io import is_disk_full
from trainlab.config import ConfigError
from trainlab.module import learning_rate, train_metrics


def process_start() -> float:
    """When this process started (Linux: the kernel's start time), else when trainlab was imported.

    /proc/self/stat field 22 is the start in clock ticks since boot; measured against CLOCK_BOOTTIME
    (the clock it counts on) rather than /proc/stat's btime, which is whole seconds.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # after the command name
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22; fields[0] is field 3
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        return trainlab.IMPORTED_AT
    return time.time() - age if age >= 0 else trainlab.IMPORTED_AT


class EpochHistory(L.Callback):
    """Each epoch's validation and training metrics, lr and seconds, and the time from command to first step.

    Rows are complete when a checkpoint is written (at validation end) and are saved in it, so a resumed
    run's metrics.json keeps the epochs before the interruption.
    """

    def __init__(self):
        self.rows: list[dict] = []
        self.first_step_seconds: float | None = None
        self._epoch_start = self._train_seconds = self._epoch_lr = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step_seconds is None:
            self.first_step_seconds = round(time.time() - process_start(), 2)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start, self._train_seconds = time.perf_counter(), None
        # The value the module logs as "lr" for this epoch (the event files' lr curve).
        self._epoch_lr = float(learning_rate(trainer, pl_module)) if trainer.optimizers else None

    def on_validation_start(self, trainer, pl_module) -> None:
        # Validation runs inside the training epoch: stop the epoch's clock here.
        if not trainer.sanity_checking and self._epoch_start is not None and self._train_seconds is None:
            self._train_seconds = time.perf_counter() - self._epoch_start

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        # The epoch's train/* are logged only at epoch end, after this: read the module's running sums.
        row.update({f"train/{k}": float(v) for k, v in train_metrics(pl_module).items()})
        if self._epoch_lr is not None:
            row["lr"] = self._epoch_lr
        if self._train_seconds is not None:
            row["train_seconds"] = round(self._train_seconds, 4)
        self.rows.append(row)

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])


class ImageGrid(L.Callback):
    """Writes a grid of augmented training images (as the network sees them) to TensorBoard, once."""

    def __init__(self, count: int = 64):
        self.count, self.done = count, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.done or getattr(trainer.datamodule, "augment", None) is None:  # a user's tensors: not images
            return
        import torchvision

        images = trainer.datamodule.augment.denormalize(batch[0][: self.count].detach().float())
        grid = torchvision.utils.make_grid(images.cpu(), nrow=8, padding=2)
        for writer in _drawing(trainer):
            writer.add_image("train/augmented_batch", grid, trainer.global_step)
        self.done = True


def _network(pl_module):
    """TrainModule's network (histogram names without a `net.` prefix); a plain LightningModule as a whole."""
    return getattr(pl_module, "net", pl_module)


def _drawing(trainer) -> list:
    """The SummaryWriters of the run's TensorBoard loggers (not trainer.logger: with logger=[csv,tensorboard]
    that is the CSV logger)."""
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, loggers.TensorBoardLogger)]


class WeightHistograms(L.Callback):
    """Seed 000: a histogram of every parameter each epoch, and of its gradient at the epoch's last optimizer
    step (read before the step: Lightning zeroes gradients before any epoch-end hook could see them)."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.is_last_batch:
            for writer in _drawing(trainer):
                for name, p in _network(pl_module).named_parameters():
                    if p.grad is not None:
                        writer.add_histogram(f"grads/{name}", p.grad.detach().cpu(), trainer.current_epoch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for writer in _drawing(trainer):
            for name, p in _network(pl_module).named_parameters():
                writer.add_histogram(f"weights/{name}", p.detach().cpu(), trainer.current_epoch)


class RunCheckpoint(lc.ModelCheckpoint):
    """ModelCheckpoint whose stored paths follow the run folder: a copied or moved run resumes and tests
    from its own checkpoints/. (Lightning stores absolute paths; when the folder changed it keeps only
    best_model_path, the old location's, and forgets the scores of the top k.)"""

    def load_state_dict(self, state_dict: dict) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and old != self.dirpath:
            def here(path):
                return os.path.join(self.dirpath, os.path.basename(path)) if path else path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          "best_k_models": {here(k): v for k, v in state_dict.get("best_k_models", {}).items()},
                          **{key: here(state_dict.get(key)) for key in
                             ("best_model_path", "kth_best_model_path", "last_model_path")}}
        super().load_state_dict(state_dict)


class ProgressBar(lc.TQDMProgressBar):
    """Lightning's bar, redrawn every `refresh_rate` batches but at most once per `min_seconds`, and always
    at an epoch's last batch. A fast epoch (1000 batches/s) otherwise redraws 100 times a second, and each
    redraw is a line in a log file when stderr is not a terminal (SLURM, CI)."""

    def __init__(self, refresh_rate: int, min_seconds: float):
        super().__init__(refresh_rate=refresh_rate)
        self.min_seconds = min_seconds
        self._drawn_at = -math.inf

    def _should_update(self, current: int, total: int) -> bool:  # Lightning's test, used by every bar
        if not super()._should_update(current, total):
            return False
        now = time.monotonic()
        if current != total and now - self._drawn_at < self.min_seconds:
            return False
        self._drawn_at = now
        return True


def build_callbacks(cfg, resolved: dict, run_dir: Path, features: set[str]) -> tuple[list[L.Callback], RunCheckpoint,
                                                                                   EpochHistory]:
    """trainlab's callbacks, the logger switches that are on (`features`), then the user's callbacks.extra."""
    cb = cfg.callbacks
    # The best checkpoints, chosen at validation; last.ckpt is guards.LastCheckpoint's.
    checkpoint = RunCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best-epoch{epoch:03d}", auto_insert_metric_name=False,
        monitor=cfg.monitor, mode=cfg.monitor_mode, save_top_k=cb.checkpoint.save_top_k, save_last=False)
    history = EpochHistory()
    callbacks: list[L.Callback] = [checkpoint, history, lc.ModelSummary(max_depth=cb.model_summary.max_depth)]
    if cb.early_stopping.enabled:
        callbacks.append(lc.EarlyStopping(monitor=cfg.monitor, mode=cfg.monitor_mode,
                                          patience=cb.early_stopping.patience, min_delta=cb.early_stopping.min_delta))
    if cb.progress_bar.enabled:
        callbacks.append(ProgressBar(cb.progress_bar.refresh_rate, cb.progress_bar.min_seconds))
    if "image_grid" in features:
        callbacks.append(ImageGrid())
    if "histograms" in features:
        callbacks.append(WeightHistograms())
    return callbacks + extra_callbacks(resolved["callbacks"]), checkpoint, history


def extra_callbacks(cb: dict) -> list[L.Callback]:
    return [cls(**args) for _, cls, args in extra_callback_classes(cb)]


def extra_callback_classes(cb: dict) -> list[tuple[str, type, dict]]:
    """callbacks.extra: {name: {class_path, init_args}} as (key, class, init_args), each a Lightning Callback
    whose init_args fit its signature (the pre-flight also builds each one, before any data loads)."""
    from trainlab.schema import check_init_args, locate

    found = []
    for name, spec in (cb.get("extra") or {}).items():
        key = f"callbacks.extra.{name}"
        cls = locate(f"{key}.class_path", spec["class_path"])
        if not (isinstance(cls, type) and issubclass(cls, L.Callback)):
            raise ConfigError(f"{key}.class_path", spec["class_path"], "is not a Lightning callback class",
                              "a subclass of lightning.pytorch.Callback, e.g. "
                              "lightning.pytorch.callbacks.LearningRateMonitor")
        check_init_args(key, cls, spec["init_args"], ())
        found.append((key, cls, spec["init_args"]))
    return found


FLUSH_SECONDS = 5.0


class TensorBoardLogger(loggers.TensorBoardLogger):
    """Lightning calls save() after every log call, and TensorBoard's save waits until the event file
    is written (every trainer.log_every_n_steps steps: ~0.7 ms, 5% of a small MLP's epoch). Here the
    event file is flushed at most every FLUSH_SECONDS, and always at the end (finalize, flush).

    On a full disk TensorBoard's writer thread dies with the OSError, prints it, and raises it again at
    every later write, flush and close; Lightning's log_metrics turns it into "you tried to log <value> which
    is currently not supported". Here the thread stays quiet (_quiet_writer_thread), the next write in the
    training process raises the OSError itself once (the run stops with status disk_full), and closing the
    writer after a failed run does not raise it again."""

    def __init__(self, save_dir, **kwargs):  # save_dir named: trainlab passes the run folder to loggers taking it
        super().__init__(save_dir, **kwargs)
        self._flushed_at = -math.inf
        if threading.excepthook is not _quiet_writer_thread:
            global _thread_hook
            _thread_hook, threading.excepthook = threading.excepthook, _quiet_writer_thread

    def log_metrics(self, metrics, step=None) -> None:
        try:
            super().log_metrics(metrics, step)
        except ValueError as err:
            if is_disk_full(err.__cause__):
                raise err.__cause__ from None
            raise

    def save(self) -> None:
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        super().save()
        self._flushed_at = time.monotonic()

    def finalize(self, status: str) -> None:
        try:
            super().finalize(status)
            self.flush()
        except OSError as err:
            if status == "success" or not is_disk_full(err):
                raise  # a failed run's own error is already on its way


_thread_hook = threading.excepthook


def _quiet_writer_thread(args) -> None:
    # TensorBoard keeps the error and raises it in the training process at its next write: no second report.
    if is_disk_full(args.exc_value) and type(args.thread).__name__ == "_AsyncWriterThread":
        args.exc_value.filename = args.exc_value.filename or "a TensorBoard event file"  # for the one line
        return
    _thread_hook(args)
