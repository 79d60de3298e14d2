"""What keeps a run's work when it stops early: per-epoch seeding (exact resume at epoch boundaries),
a non-finite-loss guard, checkpoints/last.ckpt at every epoch end, a graceful stop on SIGTERM / Ctrl-C,
and a full disk turned into a stop that keeps the last good checkpoint."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import RunningStage, TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from trainlab.checkpoint_io import is_disk_full
from trainlab.module import learning_rate
from trainlab.resume import RunStopped, command

DISK_FULL_EXIT = 4  # beside 2 (config error), 3 (diverged), 130 (interrupted)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63)


class EpochSeeding(L.Callback):
    """Re-seeds the global RNG (dropout, per-sample shuffling) and the augmentation generator from
    (seed, epoch) at each epoch start, so an epoch's randomness does not depend on what ran before it:
    a run resumed from an end-of-epoch checkpoint continues exactly as the uninterrupted run."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch)
        torch.manual_seed(seed)
        augment = getattr(trainer.datamodule, "augment", None)
        if augment is not None:
            augment.reseed(seed)


class DivergenceGuard(L.Callback):
    """Stops at the first non-finite training loss, before any checkpoint holds the broken weights.

    Reading the loss every step would make the host wait for the device each step (a sync). Instead
    the losses stay on the device and are checked together, with one read: after every
    log_every_n_steps steps, before validation and epoch end, and before any checkpoint is written
    (on_save_checkpoint runs before the file is). The message still names the first bad step."""

    def __init__(self):
        self._pending: list[tuple[torch.Tensor, int, int, int, float]] = []  # loss, step, epoch, batch, lr
        self._lr = float("nan")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Read here: by on_train_batch_end of an epoch's last batch, Lightning has stepped epoch schedulers.
        self._lr = learning_rate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._pending.append((loss.detach(), trainer.global_step, trainer.current_epoch, batch_idx, self._lr))
        if len(self._pending) >= trainer.log_every_n_steps:
            self.check()

    def on_validation_start(self, trainer, pl_module) -> None:
        self.check()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.check()

    def check(self) -> None:
        if not self._pending:
            return
        losses = torch.stack([p[0] for p in self._pending])
        bad = (~torch.isfinite(losses)).nonzero()  # the one host read
        pending, self._pending = self._pending, []
        if len(bad):
            loss, step, epoch, batch_idx, lr = pending[int(bad[0])]
            raise RunStopped("diverged", f"training loss is {float(loss)} at step {step} (epoch {epoch}, batch "
                             f"{batch_idx}) with learning rate {lr:.3g}. Hint: lower optimizer.lr, or clip gradients "
                             "(trainer.gradient_clip_val=1.0); the last good checkpoint is kept", exit_code=3)


class LastCheckpoint(Checkpoint):
    """checkpoints/last.ckpt: the end of every epoch, every `every_n_train_steps` steps when set, and the
    batch boundary where a SIGTERM / Ctrl-C stopped training.

    ModelCheckpoint's save_last writes last.ckpt only when it also saves a top-k checkpoint, so after a run's
    best epoch last.ckpt fell behind. As a Checkpoint, Lightning runs this after the module's and the other
    callbacks' epoch-end hooks (and after ModelCheckpoint), where ModelCheckpoint saved: the file holds the
    same state, from which a resumed run continues exactly."""

    def __init__(self, path: Path, periodic: bool, every_n_train_steps: int | None):
        self.path, self.periodic, self.every_n_train_steps = path, periodic, every_n_train_steps or 0
        self._saved_step: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # A resumed run's last.ckpt already holds this step: a stop before the next one keeps it as it is.
        self._saved_step = trainer.global_step if trainer.ckpt_path else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_train_steps
        if self.periodic and n and trainer.global_step % n == 0 and not trainer.is_last_batch:
            self._save(trainer)  # the epoch's last batch is saved at epoch end, after validation

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.periodic:
            self._save(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        # Only while fitting (a stopped final test leaves the trained weights' last.ckpt alone), and never in
        # the middle of validation (GracefulStop lets validation finish; a half-run one is not resumable).
        if (isinstance(exception, (SIGTERMException, KeyboardInterrupt)) and trainer.state.fn == TrainerFn.FITTING
                and trainer.state.stage == RunningStage.TRAINING):
            self._save(trainer)

    def _save(self, trainer) -> None:
        if self._saved_step != trainer.global_step and not trainer.fast_dev_run:
            trainer.save_checkpoint(self.path, weights_only=False)  # atomic (checkpoint_io.plugin)
            self._saved_step = trainer.global_step


class GracefulStop(L.Callback):
    """SIGTERM or Ctrl-C, from before training to the end of the final test: stop at the next batch boundary
    (Lightning's SIGTERM flag); a second Ctrl-C interrupts at once.

    Lightning watches SIGTERM only inside trainer.fit and trainer.test (and clears its flag when each
    starts): `catching` covers the whole span, so a signal between them (loading the best weights) still
    stops the run with its record instead of killing it.

    A signal during training's validation is held until validation ends: the epoch then ends as usual and
    LastCheckpoint saves it, so a resumed run continues with the next epoch. (Lightning would stop mid-
    validation, and a resumed run would skip that epoch's validation and best-checkpoint choice.)"""

    def __init__(self):
        self.received, self._held = False, False
        self._previous: dict = {}

    @contextmanager
    def catching(self, trainer):
        def on_signal(signum, frame):
            if signum == signal.SIGINT:
                signal.signal(signal.SIGINT, self._previous[signal.SIGINT] or signal.default_int_handler)
            self.received = True
            trainer._signal_connector.received_sigterm = True

        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            self._previous = {}

    def on_train_start(self, trainer, pl_module) -> None:
        if self.received:  # before Lightning's handler was in place
            trainer._signal_connector.received_sigterm = True

    def on_test_start(self, trainer, pl_module) -> None:
        if self.received:  # after training ended: the test has not started, resume runs it
            raise SIGTERMException()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and trainer.received_sigterm:
            trainer._signal_connector.received_sigterm, self._held = False, True

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._held:
            trainer._signal_connector.received_sigterm, self._held = True, False


def build(cfg, run_dir: Path) -> list[L.Callback]:
    last = LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", cfg.callbacks.checkpoint.save_last,
                          cfg.callbacks.checkpoint.every_n_train_steps)
    return [EpochSeeding(cfg.seed), DivergenceGuard(), GracefulStop(), last]


@contextmanager
def stops(trainer, run_dir: Path):
    """Training and the final test, with a signal turned into RunStopped("interrupted") and a full disk (or a
    file-size limit) into RunStopped("disk_full"): each one line for the user, the checkpoints kept."""
    graceful = next(cb for cb in trainer.callbacks if isinstance(cb, GracefulStop))
    try:
        with graceful.catching(trainer):
            yield
    except SIGTERMException:
        if trainer.state.fn == TrainerFn.TESTING:
            message = (f"stopped by a signal during the final test; training is complete (checkpoints/last.ckpt "
                       f"holds its last epoch), resume runs the test only. Resume with: {command(run_dir)}")
        else:
            message = (f"stopped by a signal at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                       f"checkpoint saved. Resume with: {command(run_dir)}")
        raise RunStopped("interrupted", message, exit_code=130) from None
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise RunStopped("disk_full", f"cannot write {err.filename or 'a file'}: {err.strerror} (a full disk or a "
                         "file-size limit); the checkpoints written before are kept. Free space, then resume "
                         f"with: {command(run_dir)}", exit_code=DISK_FULL_EXIT) from None
