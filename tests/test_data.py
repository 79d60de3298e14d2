"""Data sources on files in their real formats, written by the tests (no downloads)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import torchvision
from conftest import CONF, write_cifar10_like, write_mnist_like, write_png
from hydra import compose, initialize_config_dir

from trainlab.config import ConfigError
from trainlab.data import ImageDataModule
from trainlab.data.datamodule import _split
from trainlab.data.sources import TensorImages
from trainlab.data.augment import BatchAugment, center_crop, channel_stats, random_crop_flip
from trainlab.inference import evaluate
from trainlab.train import run


def datamodule(cfg) -> ImageDataModule:
    dm = ImageDataModule(cfg.dataset, cfg.augmentation, cfg.task, cfg.seed, cfg.paths.cache_dir)
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_idx_loaders_read_offline_files(name, folder, cfg_factory, tmp_path):
    raw = write_mnist_like(tmp_path / "data", folder, n_train=50, n_test=20)
    dm = datamodule(cfg_factory(f"dataset={name}", f"paths.data_dir={tmp_path / 'data'}", "dataset.download=false"))
    assert len(dm.train_set) + len(dm.val_set) == 50 and len(dm.test_set) == 20  # the source's own test split
    assert dm.train_set.images.dtype == torch.uint8 and dm.train_set.images.shape[1:] == (1, 28, 28)
    # The bytes round-trip: the test split is the IDX file's content, in order.
    idx = np.frombuffer((raw / "t10k-images-idx3-ubyte").read_bytes()[16:], dtype=np.uint8).reshape(20, 28, 28)
    assert torch.equal(dm.test_set.images[:, 0], torch.from_numpy(idx.copy()))
    assert dm.test_set.targets.tolist() == [i % 10 for i in range(20)]


def test_missing_torchvision_files_name_the_folder(cfg_factory, tmp_path):
    cfg = cfg_factory("dataset=mnist", f"paths.data_dir={tmp_path / 'empty'}", "dataset.download=false")
    with pytest.raises(ConfigError) as err:
        datamodule(cfg)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in str(err.value) and "dataset.root" in str(err.value)


def test_cifar10_reads_python_batches(cfg_factory, tmp_path):
    write_cifar10_like(tmp_path / "data", n_per_batch=10)
    dm = datamodule(cfg_factory("dataset=cifar10", f"paths.data_dir={tmp_path / 'data'}", "dataset.download=false"))
    assert len(dm.train_set) + len(dm.val_set) == 50 and len(dm.test_set) == 10
    assert dm.train_set.images.shape[1:] == (3, 32, 32) and dm.classes[0] == "class0"


def test_image_folder_reads_pngs_per_class(cfg_factory, image_folder):
    dm = datamodule(cfg_factory("dataset=image_folder", f"dataset.root={image_folder}", "dataset.image_size=20"))
    assert dm.classes == ["class_0", "class_1", "class_2"]
    # The pre-flight counts the same classes before any image loads (its top_k check and dummy network).
    from trainlab import config, preflight

    cfg = cfg_factory("dataset=image_folder", f"dataset.root={image_folder}", "dataset.image_size=16")
    assert preflight.num_outputs(config.plain(cfg)) == 3
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 24
    assert dm.train_set.images.shape[1:] == (3, 20, 20)


def test_image_folder_streams_from_files_when_not_in_memory(cfg_factory, image_folder):
    dm = datamodule(cfg_factory("dataset=image_folder", f"dataset.root={image_folder}", "dataset.in_memory=false",
                                "dataset.num_workers=0"))
    images, targets = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 64, 64) and targets.dtype == torch.int64


def _listing(root) -> list[tuple[str, int]]:
    """Every path under root with its mtime: a file created (or created and removed) inside shows."""
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in [root, *root.rglob("*")])


def test_image_cache_stays_out_of_the_data_folder(cfg_factory, image_folder, tmp_path):
    cache_dir = tmp_path / "cache"
    before = _listing(image_folder)
    folder = ["dataset=image_folder", f"dataset.root={image_folder}", "dataset.image_size=16",
              "dataset.num_workers=0", "augmentation=none", f"paths.cache_dir={cache_dir}"]
    first = run(cfg_factory(*folder, name="first"))
    (cache,) = cache_dir.iterdir()
    stamp = cache.stat().st_mtime_ns
    assert run(cfg_factory(*folder, name="second"))["status"] == "ok"
    assert list(cache_dir.iterdir()) == [cache] and cache.stat().st_mtime_ns == stamp  # read, not decoded again
    assert _listing(image_folder) == before
    # The first run's checkpoint still fits the data: the same three classes on every run.
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        again = evaluate(compose("evaluate", overrides=[f"ckpt={first['best_checkpoint']}"]))
    assert again["test"] == first["test"]


def test_hidden_folders_are_not_classes(cfg_factory, image_folder):
    old_cache = image_folder / ".trainlab_cache"  # left by trainlab before paths.cache_dir
    old_cache.mkdir()
    write_png(old_cache / "stray.png", 100)
    dm = datamodule(cfg_factory("dataset=image_folder", f"dataset.root={image_folder}", "dataset.image_size=16"))
    assert dm.classes == ["class_0", "class_1", "class_2"]


def test_cache_clean_up_removes_only_this_sources_old_files(cfg_factory, image_folder, tmp_path):
    cache_dir = tmp_path / "cache"
    other_root = tmp_path / "copy"  # the same images under another root: another source
    shutil.copytree(image_folder, other_root)
    load = lambda root: datamodule(cfg_factory("dataset=image_folder", f"dataset.root={root}",  # noqa: E731
                                               "dataset.image_size=16", f"paths.cache_dir={cache_dir}"))
    load(other_root)
    (other,) = cache_dir.iterdir()
    load(image_folder)
    (mine,) = set(cache_dir.iterdir()) - {other}
    assert mine.name[:-len("0123456789abcdef.pt")] != other.name[:-len("0123456789abcdef.pt")]
    look_alike = cache_dir / mine.name.replace(".pt", "-backup.pt")  # same prefix, not a cache name
    look_alike.write_bytes(b"someone else's")
    changed = image_folder / "class_0" / "0.png"
    os.utime(changed, ns=(changed.stat().st_mtime_ns + 10**9,) * 2)
    load(image_folder)
    assert not mine.exists() and other.exists() and look_alike.read_bytes() == b"someone else's"
    assert len(list(cache_dir.glob("*.pt"))) == 3 and not list(cache_dir.glob(".*"))  # no temporary file left


def test_unusable_cache_folder_runs_without_the_cache(cfg_factory, image_folder, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    before = _listing(image_folder)
    dm = datamodule(cfg_factory("dataset=image_folder", f"dataset.root={image_folder}", "dataset.image_size=16",
                                f"paths.cache_dir={tmp_path / 'a_file' / 'cache'}"))
    assert dm.classes == ["class_0", "class_1", "class_2"]
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 24
    assert _listing(image_folder) == before


def test_image_csv_regression_targets_are_floats(cfg_factory, image_csv):
    root, csv_file = image_csv
    dm = datamodule(cfg_factory("dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={csv_file}",
                                "dataset.target_column=score", "task=regression"))
    assert dm.num_outputs == 1 and dm.train_set.targets.dtype == torch.float32
    assert dm.classes is None


def test_image_csv_classification_uses_class_names(cfg_factory, image_csv):
    root, csv_file = image_csv
    dm = datamodule(cfg_factory("dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={csv_file}",
                                "dataset.target_column=label"))
    assert dm.classes == ["bright", "dark"] and dm.num_outputs == 2


def test_splits_are_disjoint_and_fixed_by_seed(cfg_factory):
    a, b = datamodule(cfg_factory()), datamodule(cfg_factory())
    assert torch.equal(a.test_set.images, b.test_set.images)
    sizes = len(a.train_set), len(a.val_set), len(a.test_set)
    assert sum(sizes) == 1797 and sizes[2] == round(1797 * 0.15)
    c = datamodule(cfg_factory("seed=7"))
    assert not torch.equal(a.test_set.images, c.test_set.images)


def test_split_holds_out_disjoint_items():
    data = TensorImages(torch.arange(100).view(100, 1, 1, 1), torch.arange(100))
    rest, held = _split(data, 0.2, torch.Generator().manual_seed(0))
    assert len(held) == 20 and len(rest) == 80
    assert set(rest.targets.tolist()).isdisjoint(held.targets.tolist())


# ---------------------------------------------------------------- batched augmentation
def test_center_crop_matches_torchvision():
    x = torch.randint(0, 256, (4, 3, 29, 31), dtype=torch.uint8)
    assert torch.equal(center_crop(x, 24), torchvision.transforms.CenterCrop(24)(x))


def test_random_crops_differ_per_sample_and_repeat_with_the_seed():
    x = torch.arange(16 * 28 * 28, dtype=torch.int64).remainder(251).to(torch.uint8).view(16, 1, 28, 28)
    x = x.expand(16, 1, 28, 28).clone()
    x[:] = x[0]  # identical images: any difference comes from the crop offsets
    aug = lambda: BatchAugment(28, 24, 0, False, None, None, seed=3)  # noqa: E731
    out1, out2 = aug()(x, train=True), aug()(x, train=True)
    assert out1.shape == (16, 1, 24, 24) and 0 <= out1.min() and out1.max() <= 1
    assert torch.equal(out1, out2)
    assert len({bytes(o.numpy()) for o in out1}) > 1


def test_normalisation_gives_zero_mean_unit_std():
    x = torch.randint(30, 200, (64, 3, 16, 16), dtype=torch.uint8)
    mean, std = channel_stats(x)
    out = BatchAugment(16, None, 0, False, mean, std, seed=0)(x, train=False)
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (out.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_crop_and_flip_match_slicing_per_sample():
    x = torch.randint(0, 256, (32, 3, 20, 20), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(5)
    out = random_crop_flip(x, 16, 2, True, gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(32):  # every output is some 16x16 window of the padded image, maybe mirrored
        windows = padded[i].unfold(1, 16, 1).unfold(2, 16, 1).permute(1, 2, 0, 3, 4).reshape(-1, 3, 16, 16)
        plain = (windows == out[i]).flatten(1).all(1).any()
        mirrored = (windows.flip(-1) == out[i]).flatten(1).all(1).any()
        assert plain or mirrored
        flips += int(mirrored and not plain)
    assert 4 < flips < 28  # p = 0.5 per sample
