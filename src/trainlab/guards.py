"""What keeps a run's work when it stops early: per-epoch seeding (exact resume at epoch boundaries),
a non-finite-loss guard, and a graceful stop on SIGTERM / Ctrl-C that saves last.ckpt first."""
from __future__ import annotations

import math
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
    """Stops at the first non-finite training loss, before any checkpoint holds the broken weights
    (checkpoint callbacks run after this one)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or math.isfinite(float(loss)):
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        raise RunStopped("diverged", f"training loss is {float(loss)} at step {trainer.global_step} "
                         f"(epoch {trainer.current_epoch}, batch {batch_idx}) with learning rate {lr:.3g}. "
                         "Hint: lower optimizer.lr, or clip gradients (trainer.gradient_clip_val=1.0); "
                         "the last good checkpoint is kept", exit_code=3)


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
