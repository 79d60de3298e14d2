"""One LightningModule for classification and regression: loss, metrics, optimizer, warm-up."""
from __future__ import annotations

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from trainlab import optim


def build_metrics(task: str, num_outputs: int, top_k: int) -> torchmetrics.MetricCollection:
    if task == "regression":
        return torchmetrics.MetricCollection({"mae": torchmetrics.MeanAbsoluteError(), "r2": torchmetrics.R2Score()})
    metrics = {"acc": torchmetrics.classification.MulticlassAccuracy(num_outputs, average="micro")}
    if top_k:
        metrics[f"top{top_k}"] = torchmetrics.classification.MulticlassAccuracy(num_outputs, top_k=top_k,
                                                                                 average="micro")
    return torchmetrics.MetricCollection(metrics)


class TrainModule(L.LightningModule):
    """Wraps a network with its loss and metrics.

    Logs per epoch: {train,val,test}/loss plus acc and top-k (classification) or mae and r2
    (regression), and `lr` (the learning rate the optimizer used, warm-up included); per step:
    train/loss_step (and lr_step when the schedule moves within an epoch).
    """

    def __init__(self, net: nn.Module, task: str, num_outputs: int, optimizer: dict, scheduler: dict,
                 top_k: int = 0, no_decay_norm_and_bias: bool = True):
        super().__init__()
        # Plain dicts only: checkpoints then load with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.task = task
        self.loss_fn = F.mse_loss if task == "regression" else F.cross_entropy
        metrics = build_metrics(task, num_outputs, top_k)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.warmup_steps = scheduler["warmup_steps"]
        self.log_lr_steps = scheduler["interval"] == "step" or self.warmup_steps > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.squeeze(-1) if self.task == "regression" else out

    def _step(self, batch, stage: str, metrics: torchmetrics.MetricCollection) -> torch.Tensor:
        x, y = batch
        out = self(x)
        loss = self.loss_fn(out, y)
        metrics.update(out.detach(), y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log_dict(metrics, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train", self.train_metrics)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # Here, not in training_step: that runs inside optimizer.step(), where warm-up has scaled the lr.
        if self.log_lr_steps:
            self.log("lr_step", self.current_lr(), on_step=True, on_epoch=False)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test", self.test_metrics)

    def predict_step(self, batch, batch_idx: int):
        return self(batch[0] if isinstance(batch, (list, tuple)) else batch)

    def on_train_epoch_start(self) -> None:
        self.log("lr", self.current_lr(), on_step=False, on_epoch=True)

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
