"""One LightningModule for classification and regression: loss, metrics, optimizer, warm-up; its hooks are
the seam for a training step of your own (README "Bring your own network and training step")."""
from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from trainlab import optim


class EpochStats:
    """Per-epoch sums kept on the device: a few small tensor ops per step, no host sync, no per-step
    self.log (each costs ~0.1 ms in Lightning). Summed across processes once, at epoch end.

    Sums: loss*n; then hits at each of the top-k ranks (classification; rank 0 alone when top_k is 0)
    or |err|, err^2, y, y^2 (regression). Cross-entropy takes mixup's (N, C) probability targets as they are.
    """

    def __init__(self, task: str, top_k: int):
        self.task, self.top_k = task, top_k
        self.loss_sum: torch.Tensor | None = None
        self.extra: torch.Tensor | None = None
        self.count = 0  # samples, on the host: no device round trip per step

    def reset(self) -> None:
        self.loss_sum = self.extra = None
        self.count = 0

    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        out, n = out.detach(), len(y)
        if y.ndim == 2:  # mixup / cutmix probabilities: a hit is the top class of the mixed target
            y = y.argmax(1)
        if self.task == "regression":
            err, yd = (out - y).double(), y.double()
            extra = torch.stack([err.abs().sum(), err.square().sum(), yd.sum(), yd.square().sum()])
        elif self.top_k:
            extra = out.topk(self.top_k, dim=1).indices.eq(y[:, None]).sum(0)  # top-k accuracy: their sum
        else:
            extra = out.argmax(1).eq(y).sum().view(1)
        if self.loss_sum is None:
            self.loss_sum, self.extra = loss.detach().double() * n, extra
        else:
            self.loss_sum.add_(loss.detach(), alpha=n)
            self.extra.add_(extra)
        self.count += n

    def compute(self, reduce, reset: bool = True) -> dict[str, torch.Tensor]:
        """Epoch metrics from the sums; `reduce` sums them across processes (identity on one)."""
        if self.loss_sum is None:
            return {}
        s = reduce(torch.cat([self.loss_sum.new_tensor([self.count]), self.loss_sum.view(1), self.extra.double()]))
        if reset:
            self.reset()
        n = s[0]
        out = {"loss": s[1] / n}
        if self.task == "regression":
            ss_tot = s[5] - s[4] ** 2 / n
            out.update(mae=s[2] / n, r2=1 - s[3] / ss_tot)
        else:
            out["acc"] = s[2] / n
            if self.top_k:
                out[f"top{self.top_k}"] = s[2:].sum() / n
        return {k: v.float() for k, v in out.items()}


class TrainModule(L.LightningModule):
    """Wraps a network with its loss and metrics.

    Logs per epoch: {train,val,test}/loss plus acc and top-k (classification) or mae and r2
    (regression), and `lr` (the learning rate the optimizer used, warm-up included); every
    trainer.log_every_n_steps steps: train/loss_step (and lr_step when the schedule moves within
    an epoch or warms up).

    Hooks a subclass overrides (`module.class_path`), keeping metrics, logging, checkpoints, resume and reports
    (seed 003's custom trainer functions in brackets):
      training_batch(batch) -> batch        the batch a training step uses (mixup, cutmix)
      compute_loss(out, y) -> loss          the loss of every stage (label smoothing, a custom loss)
      train_step(x, y) -> (out, loss)       one training batch [__train_func__] (distillation)
      eval_step(x, y) -> (out, loss)        one validation or test batch [__eval_function__]
      forward(x) -> out                     outputs for predict.py and predict_step [__predict_func__]
    A subclass's own __init__ arguments come from module.init_args (after trainlab's, as keywords); it adds
    state as attributes (a submodule's weights go into checkpoints). Metrics are computed from the `out` and
    `y` a step returns: y as class indices, or (N, C) probabilities whose top class counts for accuracy.
    """

    def __init__(self, net: nn.Module, task: str, num_outputs: int, optimizer: dict, scheduler: dict,
                 top_k: int = 0, no_decay_norm_and_bias: bool = True, channels_last: bool = False,
                 class_weights: list[float] | None = None):
        super().__init__()
        # Plain dicts only: checkpoints then load with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.task, self.channels_last = task, channels_last
        self.loss_fn = F.mse_loss if task == "regression" else F.cross_entropy
        # dataset.class_weights: weigh the training loss only, so val/loss stays comparable between runs.
        self.register_buffer("class_weights", torch.tensor(class_weights) if class_weights else None)
        self.stats = {stage: EpochStats(task, top_k) for stage in ("train", "val", "test")}
        self.warmup_steps = scheduler["warmup_steps"]
        self.log_lr_steps = scheduler["interval"] == "step" or self.warmup_steps > 0

    @classmethod
    def logged_metrics(cls, task: str, top_k: int) -> list[str]:
        """What `monitor` may name; a subclass that logs more per epoch adds its names."""
        from trainlab.config import logged_metrics

        return logged_metrics(task, top_k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.net(x)
        return out.squeeze(-1) if self.task == "regression" else out

    # ---------------------------------------------------------------- hooks
    def training_batch(self, batch):
        return batch

    def compute_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.class_weights is not None and self.training:  # dataset.class_weights: the training loss only
            return self.loss_fn(out, y, weight=self.class_weights)
        return self.loss_fn(out, y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(x)
        return out, self.compute_loss(out, y)

    def eval_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(x)
        return out, self.compute_loss(out, y)

    # ---------------------------------------------------------------- Lightning's steps, around the hooks
    def _eval(self, batch, stage: str) -> None:
        x, y = batch
        out, loss = self.eval_step(x, y)
        self.stats[stage].update(out, y, loss)

    def _log_epoch(self, stage: str) -> None:
        metrics = self.stats[stage].compute(self._reduce)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, on_step=False, on_epoch=True)

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(t, reduce_op="sum")

    def epoch_metrics(self, stage: str) -> dict[str, float]:
        """The stage's metrics so far this epoch, without resetting them (collective under DDP: all ranks call it)."""
        return {k: float(v) for k, v in self.stats[stage].compute(self._reduce, reset=False).items()}

    def _should_log_step(self) -> bool:
        # Lightning writes step metrics only every log_every_n_steps; logging in between costs time.
        return self.trainer._logger_connector.should_update_logs

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = self.training_batch(batch)
        out, loss = self.train_step(x, y)
        self.stats["train"].update(out, y, loss)
        if self._should_log_step():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, "test")

    def predict_step(self, batch, batch_idx: int):
        return self(batch[0] if isinstance(batch, (list, tuple)) else batch)

    def on_train_epoch_start(self) -> None:
        self.stats["train"].reset()
        self.log("lr", self.current_lr(), on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self.stats["val"].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self.stats["test"].reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Here, not in training_step: that runs inside optimizer.step(), where warm-up has scaled the lr.
        if self.log_lr_steps and self._should_log_step():
            self.log("lr_step", self.current_lr(), on_step=True, on_epoch=False)

    def current_lr(self) -> float:
        """The learning rate of the next optimizer step, warm-up included."""
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        return lr * optim.warmup_factor(self.trainer.global_step, self.warmup_steps)

    def configure_optimizers(self):
        optimizer = optim.build_optimizer(self.hparams.optimizer, self.net, self.hparams.no_decay_norm_and_bias)
        scheduler = optim.build_scheduler(self.hparams.scheduler, optimizer,
                                          total_steps=self.trainer.estimated_stepping_batches,
                                          max_epochs=self.trainer.max_epochs)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # Warm-up scales the lr for this step only and restores it, so it composes with any
        # scheduler (plateau included, which SequentialLR cannot wrap: pytorch #68978).
        factor = optim.warmup_factor(self.trainer.global_step, self.warmup_steps)
        if factor == 1.0:
            optimizer.step(closure=optimizer_closure)
            return
        lrs = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] *= factor
        optimizer.step(closure=optimizer_closure)
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr


def learning_rate(trainer, pl_module) -> float:
    """The lr of the next optimizer step: TrainModule's current_lr (warm-up included), else the first param
    group's (a plain LightningModule); nan before any optimizer exists."""
    if not trainer.optimizers:
        return float("nan")
    if isinstance(pl_module, TrainModule):
        return pl_module.current_lr()
    return trainer.optimizers[0].param_groups[0]["lr"]


def train_metrics(pl_module) -> dict[str, float]:
    """This epoch's train/* metrics so far (without the prefix), at validation end: TrainModule's running sums.
    A plain LightningModule's epoch-level train/* are reduced only after validation: none here."""
    return pl_module.epoch_metrics("train") if isinstance(pl_module, TrainModule) else {}
