"""Figures at the end of a run (`figures: true`): PNGs in <run>/figures/ and, with a TensorBoard logger, the same
images under figures/* in its event file.

- curves.png: loss and each metric per epoch, train and val (metrics.json's history; seed 003's save_metrics);
- from the final test (the tested weights), read from that one pass, not a second one:
  confusion_matrix.png (classification, with the class names), predicted_vs_true.png (regression: the identity
  line and R2, seed 004's figure), confidently_wrong.png (classification on images: the wrong predictions with
  the highest probability, denormalised, with true and predicted class).
"""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch

log = logging.getLogger("trainlab")

WRONG_SHOWN = 16  # images in confidently_wrong.png
FOLDER = "figures"
DPI = 100


class FinalFigures(L.Callback):
    """Collects the final test's outputs and targets (a forward hook on the module reads what test_step computes)
    and keeps the WRONG_SHOWN most confidently wrong images as the test goes, never the whole split; under DDP
    each rank's shard is gathered so rank 0 draws the whole test split."""

    def __init__(self, task: str):
        self.task = task  # from the config: a plain LightningModule has no `task` of its own
        self.outputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.wrong: tuple[torch.Tensor, ...] | None = None  # (confidence, image, target, prediction)
        self.tested = False
        self._last: torch.Tensor | None = None
        self._hook = None

    @classmethod
    def from_config(cls, cfg) -> "FinalFigures | None":
        return cls(cfg.task) if cfg.figures else None

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.outputs, self.targets, self.wrong, self.tested = [], [], None, True
        self._hook = pl_module.register_forward_hook(self._record)

    def _record(self, module, args, output) -> None:
        self._last = output.detach()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._last is None:  # a test_step that did not call the module
            return
        images, targets = batch[0], batch[1]
        out, self._last = self._last.float(), None
        self.outputs.append(out.cpu())
        self.targets.append(targets.detach().cpu())
        if self.task == "classification" and images.dim() == 4:  # images (B, C, H, W), not vectors
            self._keep_wrong(out, images, targets)

    def _keep_wrong(self, out: torch.Tensor, images: torch.Tensor, targets: torch.Tensor) -> None:
        confidence, predicted = out.softmax(1).max(1)
        bad = (predicted != targets).nonzero().view(-1)
        bad = bad[confidence[bad].argsort(descending=True)[:WRONG_SHOWN]]  # chosen on the device: few images copied
        found = (confidence[bad].cpu(), images[bad].detach().float().cpu(), targets[bad].cpu(), predicted[bad].cpu())
        self.wrong = _most_confident([found] if self.wrong is None else [self.wrong, found])

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if trainer.world_size > 1:  # collective: every rank calls it
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (self.outputs, self.targets, self.wrong))
            self.outputs = [t for part in gathered for t in part[0]]
            self.targets = [t for part in gathered for t in part[1]]
            kept = [part[2] for part in gathered if part[2] is not None]
            self.wrong = _most_confident(kept) if kept else None

    def write(self, run_dir: Path, task: str, history: list[dict], datamodule, built_loggers: list,
              step: int) -> list[Path]:
        """Draw the figures into <run>/figures/ and every TensorBoard logger of the run (rank 0 only). A figure that
        cannot be drawn is a warning: the run's results (metrics.json, checkpoints) are written before."""
        try:
            return self._write(run_dir, task, history, datamodule, built_loggers, step)
        except Exception as err:
            log.warning("figures: not drawn (%s: %s); the run's results are unaffected", type(err).__name__, err)
            return []

    def _write(self, run_dir: Path, task: str, history: list[dict], datamodule, built_loggers: list, step: int):
        from PIL import Image

        from trainlab.loggers import draws

        plt = pyplot()
        drawn = {"curves": _curves(plt, history)}
        if not self.tested:
            log.info("figures: no final test (test_after_fit=false): only curves.png, no test-split figures")
        elif self.outputs:
            outputs, targets = torch.cat(self.outputs), torch.cat(self.targets)
            if task == "regression":
                drawn["predicted_vs_true"] = _scatter(plt, outputs.view(-1), targets.view(-1).float())
            else:
                drawn["confusion_matrix"] = _confusion(plt, outputs.argmax(1), targets, datamodule.classes)
                if self.wrong is not None and len(self.wrong[0]):
                    drawn["confidently_wrong"] = _wrong_grid(plt, self.wrong, datamodule)
        folder = run_dir / FOLDER
        folder.mkdir(exist_ok=True)
        writers = [lg.experiment for lg in built_loggers if draws(type(lg))]
        paths = []
        for name, fig in drawn.items():
            if fig is None:
                continue
            pixels = _rendered(fig)  # drawn once, for the PNG and for TensorBoard
            plt.close(fig)
            paths.append(folder / f"{name}.png")
            Image.fromarray(pixels).save(paths[-1])
            for writer in writers:
                writer.add_image(f"{FOLDER}/{name}", pixels, step, dataformats="HWC")
        log.info("figures: %s", ", ".join(str(p) for p in paths))
        return paths


def _most_confident(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """The WRONG_SHOWN rows of highest confidence from (confidence, image, target, prediction) parts."""
    found = tuple(torch.cat(column) for column in zip(*parts))
    top = found[0].argsort(descending=True)[:WRONG_SHOWN]
    return tuple(t[top] for t in found)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, any thread
    import matplotlib.pyplot as plt

    return plt


def _rendered(fig):
    """The figure's pixels, (H, W, 3) uint8."""
    import numpy as np

    fig.set_dpi(DPI)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _curves(plt, history: list[dict]):
    """One panel per quantity (loss, acc, top-k, mae, r2, lr), train and val against the epoch."""
    names = sorted({key.split("/", 1)[1] for row in history for key in row if key.startswith(("train/", "val/"))},
                   key=lambda n: (n != "loss", n))
    panels = names + (["lr"] if any("lr" in row for row in history) else [])
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, name in zip(axes[0], panels):
        series = [name] if name == "lr" else [f"train/{name}", f"val/{name}"]
        for key, style in zip(series, ("-", "--")):
            points = [(row["epoch"], row[key]) for row in history if key in row]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, marker=".", label=key)
        ax.set(xlabel="epoch", title=name)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _confusion(plt, predicted: torch.Tensor, targets: torch.Tensor, classes: list[str]):
    from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix

    n = len(classes)
    matrix = confusion_matrix(targets.numpy(), predicted.numpy(), labels=list(range(n)))
    side = min(4 + 0.45 * n, 24)
    fig, ax = plt.subplots(figsize=(side, side))
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(
        ax=ax, include_values=n <= 30, colorbar=False, xticks_rotation="vertical", cmap="Blues")
    accuracy = matrix.trace() / max(matrix.sum(), 1)
    ax.set_title(f"test split: {matrix.sum()} samples, accuracy {accuracy:.3f}")
    fig.tight_layout()
    return fig


def _scatter(plt, predicted: torch.Tensor, targets: torch.Tensor):
    from sklearn.metrics import r2_score

    y, p = targets.numpy(), predicted.numpy()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y, p, s=12, alpha=0.6)
    low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="identity")
    r2 = r2_score(y, p) if len(y) > 1 else float("nan")
    ax.set(xlabel="true", ylabel="predicted", title=f"test split: {len(y)} samples, R² = {r2:.3f}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _wrong_grid(plt, wrong: tuple[torch.Tensor, ...], datamodule):
    confidence, images, targets, predicted = wrong
    images = datamodule.augment.denormalize(images).clamp(0, 1)
    cols = min(len(images), 8)
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.4 * rows), squeeze=False)
    names = datamodule.classes
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        image = images[i].permute(1, 2, 0).numpy()
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                  vmin=0, vmax=1)
        ax.set_title(f"{names[targets[i]]} → {names[predicted[i]]}\n{confidence[i]:.2f}", fontsize=7)
    fig.suptitle("most confidently wrong (true → predicted, probability)", fontsize=9)
    fig.tight_layout(h_pad=1.5)
    return fig
