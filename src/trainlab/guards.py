"""What keeps a run's work when it stops early: per-epoch seeding (exact resume at epoch boundaries),
a non-finite-loss guard, and a graceful stop on SIGTERM / Ctrl-C that saves last.ckpt first."""
from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from trainlab.resume import RunStopped, command


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
        self._lr = pl_module.current_lr() if trainer.optimizers else float("nan")

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


class GracefulStop(L.Callback):
    """SIGTERM or Ctrl-C: finish the current batch, save checkpoints/last.ckpt, then stop.

    Ctrl-C is turned into Lightning's SIGTERM flag so both stop at a batch boundary (a consistent state);
    a second Ctrl-C interrupts at once."""

    def __init__(self, last_ckpt: Path):
        self.last_ckpt, self.saved = last_ckpt, False
        self._previous_sigint = None

    def on_fit_start(self, trainer, pl_module) -> None:
        def on_sigint(signum, frame):
            signal.signal(signal.SIGINT, self._previous_sigint or signal.default_int_handler)
            trainer._signal_connector.received_sigterm = True

        self._previous_sigint = signal.signal(signal.SIGINT, on_sigint)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore()
        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            trainer.save_checkpoint(self.last_ckpt)  # atomic: temporary file, then rename (fsspec transaction)
            self.saved = True

    def _restore(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None


def build(seed: int, run_dir: Path) -> list[L.Callback]:
    return [EpochSeeding(seed), DivergenceGuard(), GracefulStop(run_dir / "checkpoints" / "last.ckpt")]


def fit(trainer, module, datamodule, ckpt_path: str | None, run_dir: Path) -> None:
    """trainer.fit, with SIGTERM / Ctrl-C turned into RunStopped("interrupted") once last.ckpt is saved."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        raise RunStopped("interrupted", f"stopped by a signal at step {trainer.global_step} (epoch "
                         f"{trainer.current_epoch}); checkpoint saved. Resume with: {command(run_dir)}",
                         exit_code=130) from None
