"""trainlab's benchmark suite: ratios measured side by side in one process run.

    python bench/run.py              # full sizes (60k MNIST-sized images), writes bench/RESULTS.md
    python bench/run.py --smoke      # tiny sizes, for the test suite (no timing is asserted anywhere)

Each comparison runs its sides alternately, `--repeats` times, and keeps each side's best time,
because these machines are noisy. Data is generated (timing does not depend on pixel values).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def write_mnist(folder: Path, n_train: int, n_test: int) -> None:
    from conftest import write_idx  # the same IDX writer the tests use

    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


# ------------------------------------------------------------------ 1. epoch vs hand-written loop
MODELS = {"cnn": ["model=cnn"], "mlp": ["model=mlp", "model.init_args.hidden=[64,128,64]"]}


def trainlab_epoch(data_dir: Path, work: Path, model: str, batch_size: int, epochs: int) -> tuple[float, int]:
    """Seconds of trainlab's last training epoch (validation excluded) and its number of samples."""
    from conftest import make_cfg

    from trainlab.train import run

    cfg = make_cfg([*MODELS[model], "dataset=mnist", f"paths.data_dir={data_dir}", "dataset.download=false",
                    "augmentation=none", "optimizer=adam", f"dataset.batch_size={batch_size}",
                    f"trainer.max_epochs={epochs}", "trainer.limit_val_batches=1", "test_after_fit=false",
                    "trainer.accelerator=auto", "logger.image_grid=false"], work / f"{model}-{time.time_ns()}")
    metrics = run(cfg)
    return metrics["history"][-1]["train_seconds"], int(round(len_train(data_dir)))


def len_train(data_dir: Path) -> float:
    n = (data_dir / "MNIST" / "raw" / "train-labels-idx1-ubyte").stat().st_size - 8
    return n - round(n * 0.1)  # mnist.yaml's val_fraction


def floor_data(data_dir: Path, model: str):
    """What both reference loops start from: the training images as a uint8 tensor, their mean and std
    (in [0, 1] units, for per-batch normalisation), targets, and a fresh network."""
    import torch
    import torchvision

    from trainlab.models import MLP, SeedCNN

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    data = torchvision.datasets.MNIST(str(data_dir), train=True, download=False)
    n = int(len_train(data_dir))
    images, targets = data.data[:n].unsqueeze(1).to(device), data.targets[:n].to(device)
    mean, std = images.float().mean() / 255, images.float().std() / 255
    net = (SeedCNN((1, 28, 28), 10) if model == "cnn" else MLP((1, 28, 28), 10, hidden=[64, 128, 64])).to(device)
    return device, images, (mean, std), targets, net


def hand_epoch(data_dir: Path, model: str, batch_size: int, epochs: int) -> tuple[float, int]:
    """The floor: a minimal PyTorch loop over uint8 tensors in memory, normalised per batch."""
    import torch

    device, images, (mean, std), targets, net = floor_data(data_dir, model)
    n = len(targets)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(n, device=device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            x = images[idx].float().div_(255).sub_(mean).div_(std)
            loss = torch.nn.functional.cross_entropy(net(x), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return seconds, n


def lightning_epoch(data_dir: Path, model: str, batch_size: int, epochs: int) -> tuple[float, int]:
    """The hand loop's step in a bare LightningModule run by a bare Trainer (no logger, checkpoints,
    progress bar or metrics): what Lightning's own loop costs, so the table can say whose overhead is whose."""
    import lightning as L
    import torch

    device, images, (mean, std), targets, net = floor_data(data_dir, model)
    n = len(targets)

    class Bare(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x.float().div_(255).sub_(mean).div_(std)), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.net.parameters(), lr=1e-3)

    class Batches(torch.utils.data.Sampler):
        def __len__(self):
            return -(-n // batch_size)

        def __iter__(self):
            yield from torch.randperm(n, device=device).split(batch_size)

    class Clock(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.start

    pairs = torch.utils.data.StackDataset(images, targets)  # indexing with a batch of indices gives a batch
    loader = torch.utils.data.DataLoader(pairs, batch_size=None, sampler=Batches())
    clock = Clock()
    trainer = L.Trainer(accelerator=device.type, devices=1, max_epochs=epochs, logger=False, callbacks=[clock],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Bare(), train_dataloaders=loader)
    return clock.seconds, n


# ------------------------------------------------------------------ 2. batched vs per-sample augmentation
def augmentation_rates(data_dir: Path, batch_size: int, workers: list[int]) -> dict[str, float]:
    """Samples/s through trainlab's two data paths with flip_crop (pad 4, crop, flip, normalise)."""
    from conftest import make_cfg

    from trainlab.data import ImageDataModule

    rates = {}
    for label, per_sample, nw in [("batched (in memory, on device)", False, 0)] + [
            (f"trainlab per-sample path (torchvision v2 on uint8 tensors), {w} workers", True, w) for w in workers]:
        cfg = make_cfg(["dataset=mnist", f"paths.data_dir={data_dir}", "dataset.download=false",
                        "augmentation=flip_crop", f"augmentation.per_sample={per_sample}",
                        f"dataset.batch_size={batch_size}", f"dataset.num_workers={nw}"], data_dir / "unused")
        dm = ImageDataModule(cfg.dataset, cfg.augmentation, cfg.task, cfg.seed)
        dm.setup("fit")
        dm.trainer = _TrainingFlag()
        loader = dm.train_dataloader()
        start, count = time.perf_counter(), 0
        for batch in loader:
            images, _ = dm.on_after_batch_transfer(batch, 0)
            count += len(images)
        rates[label] = count / (time.perf_counter() - start)
    rates.update(classic_pipeline_rates(data_dir, batch_size, workers))
    return rates


def classic_pipeline_rates(data_dir: Path, batch_size: int, workers: list[int]) -> dict[str, float]:
    """The classic recipe (as in lightning-hydra-template and the seeds): PIL images from torchvision's
    MNIST through RandomCrop, RandomHorizontalFlip, ToTensor, Normalize per sample, collated by a DataLoader."""
    import torch
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.RandomCrop(28, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize((0.5,), (0.25,))])
    data = datasets.MNIST(str(data_dir), train=True, download=False, transform=transform)
    rates = {}
    for w in workers:
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=w)
        start, count = time.perf_counter(), 0
        for images, _ in loader:
            count += len(images)
        rates[f"classic per-sample PIL pipeline, {w} workers"] = count / (time.perf_counter() - start)
    return rates


class _TrainingFlag:
    """Stands in for the Trainer's `training` flag and device so the datamodule augments as in fit."""

    training = True
    world_size, global_rank, current_epoch, overfit_batches = 1, 0, 0, 0

    class strategy:  # noqa: N801
        import torch

        root_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------ 3-5. CLI latency, first step, sweep overhead
def cli_seconds(args: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        best = min(best, time.perf_counter() - start)
    return best


TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "callbacks.progress_bar.enabled=false", "logger.image_grid=false"]


def first_step_and_sweep(work: Path, jobs: int) -> tuple[float, float, float, float]:
    """(first step after the command, one job's in-run seconds, sweep wall, per-job overhead)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    one = work / "one"
    subprocess.run([sys.executable, "train.py", *TINY, f"hydra.run.dir={one}"], cwd=ROOT, env=env,
                   capture_output=True, check=True)
    single = json.loads((one / "metrics.json").read_text())
    sweep = work / "sweep"
    start = time.perf_counter()
    subprocess.run([sys.executable, "train.py", "-m", "seed=" + ",".join(str(i) for i in range(jobs)), *TINY,
                    f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, capture_output=True, check=True)
    wall = time.perf_counter() - start
    inside = sum(json.loads(p.read_text())["seconds"] for p in sweep.glob("*/metrics.json"))
    return single["first_step_seconds"], single["seconds"], wall, (wall - inside) / jobs


# ------------------------------------------------------------------ the table
def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPU cores ({cpu}), {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")


def step_costs(model: str, ours: float, bare: float, floor: float, steps: int) -> str:
    ms = 1000 / steps
    return (f"- {model.upper()}: the hand-written step takes {floor * ms:.2f} ms. Lightning's own loop adds "
            f"{(bare - floor) * ms:.2f} ms, and trainlab adds {(ours - bare) * ms:.2f} ms more (progress bar, "
            f"step logging, epoch metrics, checkpoint and guard callbacks): {ours * ms:.2f} ms in all.")


GAP_NOTE = """Lightning's per-step cost is Python work: hook calls to every callback, the optimizer closure,
the data fetcher, the logger connector. It does not grow with the model, so it weighs most when the step
itself is tiny, as for the MLP on a CPU. Larger batches (`dataset.batch_size`), a larger model or a GPU
shrink it in proportion. Of trainlab's own share, step logging (`trainer.log_every_n_steps`) and the
progress bar (`callbacks.progress_bar.enabled=false`) can be turned down. Closing the rest would mean
leaving Lightning's automatic-optimisation loop. trainlab does not: Lightning's loop is what gives it
clipping, accumulation, mixed precision, DDP and exact resume. Ratios within about 0.05 of a target are
inside this machine's run-to-run noise."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (used by the tests)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="where to write the markdown (default bench/RESULTS.md)")
    args = parser.parse_args()
    n_train, epochs, repeats, jobs = (1000, 1, 1, 2) if args.smoke else (60000, 2, args.repeats or 2, 8)
    repeats = args.repeats or repeats
    out = args.out or (None if args.smoke else ROOT / "bench" / "RESULTS.md")

    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work, data = Path(tmp), Path(tmp) / "data"
        write_mnist(data, n_train, 500)
        for model in MODELS:
            sides = {"trainlab": [], "bare Lightning": [], "hand-written loop": []}
            for _ in range(repeats):  # alternated, so a slow spell of the machine hits every side
                sides["trainlab"].append(trainlab_epoch(data, work, model, 64, epochs)[0])
                sides["bare Lightning"].append(lightning_epoch(data, model, 64, epochs)[0])
                sides["hand-written loop"].append(hand_epoch(data, model, 64, epochs)[0])
            ours, bare, floor = (min(times) for times in sides.values())
            target = 1.10 if model == "cnn" else 1.25
            what = f"{model.upper()} epoch (batch 64, {int(len_train(data))} images)"
            rows.append((f"{what}: trainlab / hand-written loop", f"{ours:.2f} s / {floor:.2f} s = **{ours / floor:.2f}**",
                         f"<= {target}", ours / floor <= target))
            rows.append((f"{what}: bare Lightning / hand-written loop (Lightning's own loop)",
                         f"{bare:.2f} s / {floor:.2f} s = **{bare / floor:.2f}**", "", None))
            rows.append((f"{what}: trainlab / bare Lightning (what trainlab adds)",
                         f"{ours:.2f} s / {bare:.2f} s = **{ours / bare:.2f}**", "", None))
            if ours / floor > target:
                notes.append(step_costs(model, ours, bare, floor, -(-int(len_train(data)) // 64)))
        rates = augmentation_rates(data, 256, [0, 2])
        batched = rates.pop("batched (in memory, on device)")
        for label, rate in rates.items():
            target = 20 if label.startswith("classic") and "0 workers" in label else None
            rows.append((f"augmentation samples/s: batched / {label}",
                         f"{batched:,.0f} / {rate:,.0f} = **{batched / rate:.1f}x**",
                         f">= {target}x" if target else "", (batched / rate >= target) if target else None))
        help_s = cli_seconds(["--help"], repeats + 1)
        cfg_s = cli_seconds(["--cfg", "job"], repeats + 1)
        rows.append(("`python train.py --help`", f"**{help_s:.2f} s**", "< 1.5 s", help_s < 1.5))
        rows.append(("`python train.py --cfg job`", f"**{cfg_s:.2f} s**", "< 1.5 s", cfg_s < 1.5))
        first, single, wall, overhead = first_step_and_sweep(work, jobs)
        rows.append(("command to first training step (default config, tiny run)", f"**{first:.2f} s**", "", None))
        rows.append((f"multirun per-job overhead ({jobs} tiny jobs: wall minus the jobs' in-run seconds, / {jobs})",
                     f"{wall:.1f} s sweep, {single:.1f} s in one job's run: **{overhead:.2f} s/job**", "< 2 s",
                     overhead < 2))

    mark = {True: "met", False: "missed", None: ""}
    lines = [f"# trainlab benchmarks{' (smoke)' if args.smoke else ''}", "",
             f"{datetime.date.today()}: {machine()}", "",
             "| measure | result | target | |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {target} | {mark[ok]} |" for name, value, target, ok in rows]
    if notes:
        lines += ["", "Where a missed epoch target's time goes, per training step:", "", *notes, "", GAP_NOTE]
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        # Sections other scripts write ("## ...", e.g. bench/augment.py's) stay.
        old = out.read_text() if out.exists() else ""
        out.write_text(text + (old[old.find("\n## "):] if "\n## " in old else ""))


if __name__ == "__main__":
    main()
