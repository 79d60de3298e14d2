"""The fast paths are correct: disk cache, batched vs per-sample data paths, data on the GPU, the bench script."""
from __future__ import annotations

import os
import sys

import pytest
import torch
from conftest import ROOT, run_cli, write_png

from trainlab.data import ImageDataModule
from trainlab.train import run


def load(cfg) -> ImageDataModule:
    dm = ImageDataModule(cfg.dataset, cfg.augmentation, cfg.task, cfg.seed, cfg.paths.cache_dir)
    dm.setup("fit")
    return dm


def test_disk_cache_is_reused_and_rebuilt_when_the_source_changes(cfg_factory, image_folder, tmp_path):
    cfg = cfg_factory("dataset=image_folder", f"dataset.root={image_folder}", "dataset.image_size=16",
                      f"paths.cache_dir={tmp_path / 'cache'}")
    first = load(cfg)
    caches = list((tmp_path / "cache").glob("*.pt"))
    assert len(caches) == 1
    stamp = caches[0].stat().st_mtime_ns
    second = load(cfg)
    assert caches[0].stat().st_mtime_ns == stamp  # read, not rewritten
    assert torch.equal(first.train_set.images, second.train_set.images)

    changed = image_folder / "class_0" / "0.png"
    write_png(changed, 255, seed=99)
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))
    third = load(cfg)
    caches_after = list((tmp_path / "cache").glob("*.pt"))
    assert len(caches_after) == 1 and caches_after[0] != caches[0]  # replaced, not accumulated
    everything = lambda dm: torch.cat([dm.train_set.images, dm.val_set.images, dm.test_set.images])  # noqa: E731
    assert everything(third).float().mean() > everything(first).float().mean()  # the brighter image is in


def test_per_sample_and_batched_paths_reach_the_same_accuracy(cfg_factory):
    common = ["trainer.max_epochs=6", "augmentation=crop", "callbacks.progress_bar.enabled=false",
              "logger.image_grid=false"]
    batched = run(cfg_factory(*common, name="batched", tiny=False))["test"]["test/acc"]
    per_sample = run(cfg_factory(*common, "augmentation.per_sample=true", "dataset.num_workers=0", name="per_sample",
                                 tiny=False))["test"]["test/acc"]
    assert batched > 0.9 and per_sample > 0.9
    assert abs(batched - per_sample) < 0.04


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_in_memory_data_moves_to_the_gpu_once(cfg_factory):
    cfg = cfg_factory("trainer=gpu", "trainer.max_epochs=1")
    metrics = run(cfg)
    assert metrics["status"] == "ok"
    import lightning as L

    dm = load(cfg)
    trainer = L.Trainer(accelerator="gpu", devices=1, logger=False)
    dm.trainer = trainer
    loader = dm.train_dataloader()
    images, targets = next(iter(loader))
    assert images.is_cuda and targets.is_cuda and dm.train_set.images.is_cuda


def test_benchmark_smoke_run_prints_the_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = run_cli(str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    for row in ("CNN epoch", "MLP epoch", "classic per-sample PIL pipeline, 0 workers", "--help", "--cfg job",
                "first training step", "per-job overhead"):
        assert row in text, row
    assert sys.platform != "linux" or "CPU cores" in text
