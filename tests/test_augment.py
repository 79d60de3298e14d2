"""Richer batched augmentation (per_image.py), its per-sample reference (per_sample.py), mixup / cutmix
targets in the loss and metrics, and torchvision's decoding of image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg, write_png
from PIL import Image

from trainlab.config import ConfigError
from trainlab.data.augment import BatchAugment
from trainlab.data.per_image import PerImageOps
from trainlab.data.sources import decode_image
from trainlab.module import EpochStats
from trainlab.train import run

# Each turns one per-image step on; RGB, so colour steps apply.
STEPS = {
    "affine": ["augmentation.affine.degrees=30", "augmentation.affine.translate=0.2", "augmentation.affine.scale=[0.8,1.2]"],
    "color": ["augmentation.color.brightness=0.4", "augmentation.color.contrast=0.4", "augmentation.color.saturation=0.4",
              "augmentation.color.hue=0.1"],
    "trivial": ["augmentation=trivial", "augmentation.hflip=false"],
    "randaugment": ["augmentation=randaugment", "augmentation.hflip=false"],
    "erasing": ["augmentation.erasing.p=1.0"],
}


def augmenter(overrides: list[str], num_classes: int = 4, seed: int = 0) -> BatchAugment:
    cfg = make_cfg(["augmentation=none", "dataset.channels=3", *overrides], Path("/tmp/unused"))
    ops = PerImageOps(cfg.augmentation, 3, num_classes)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    return BatchAugment(16, None, 0, False, mean, std, seed, ops=ops)


def identical_images(n: int = 16) -> torch.Tensor:
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8))
    return image.expand(n, 3, 16, 16).clone()


@pytest.mark.parametrize("step", STEPS)
def test_each_image_gets_its_own_parameters_and_the_epoch_seed_repeats_them(step):
    x = identical_images()
    aug = augmenter(STEPS[step])
    aug.reseed(7)
    before = torch.random.get_rng_state()
    first = aug(x, train=True)
    assert torch.equal(torch.random.get_rng_state(), before)  # forked: the model's own draws are untouched
    assert len({bytes(o.numpy()) for o in first}) > len(x) // 2  # identical inputs, (mostly) different outputs
    second = aug(x, train=True)
    assert not torch.equal(first, second)  # the next batch draws anew
    aug.reseed(7)
    assert torch.equal(aug(x, train=True), first)  # the same epoch seed: the same draws (exact resume)
    aug.reseed(8)
    assert not torch.equal(aug(x, train=True), first)
    assert torch.equal(aug(x, train=False), aug.normalize(x))  # evaluation: no random steps


@pytest.mark.parametrize("mix", [["augmentation.mixup.alpha=0.4"], ["augmentation.cutmix.alpha=1.0"],
                                 ["augmentation.mixup.alpha=0.4", "augmentation.cutmix.alpha=1.0",
                                  "augmentation.mixup.p=0.5", "augmentation.cutmix.p=0.5"]])
def test_mixed_targets_weigh_classes_as_the_pixels_do(mix):
    """Each image is flat at its class number: after mixing, an image's mean pixel is the class numbers
    weighted by its target, for mixup (blended pixels) and cutmix (pasted area) alike."""
    y = torch.arange(32) % 8
    x = y.float().view(-1, 1, 1, 1).expand(32, 3, 16, 16).clone()
    aug = augmenter(mix, num_classes=8)
    aug.reseed(3)
    out, target = aug.mix(x, y)
    assert target.shape == (32, 8) and torch.allclose(target.sum(1), torch.ones(32))
    assert torch.allclose(out.mean(dim=(1, 2, 3)), target @ torch.arange(8.0), atol=1e-4)
    assert (target.max(1).values < 1).sum() >= 4  # some images are mixed
    aug.reseed(3)
    assert torch.equal(aug.mix(x, y)[1], target)


def test_soft_targets_in_the_loss_and_the_accuracy():
    out = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.6, 0.0, 0.4]])
    loss = torch.nn.functional.cross_entropy(out, soft)
    assert torch.isclose(loss, -(soft * out.log_softmax(1)).sum(1).mean())
    stats = EpochStats("classification", top_k=2)
    stats.update(out, soft, loss)
    metrics = stats.compute(lambda t: t)
    assert metrics["acc"] == 0.5  # argmax of the mixed targets: 0 and 0; predictions: 0 and 2
    assert metrics["top2"] == 0.5


def test_mixup_and_every_step_train_through_a_real_trainer_and_the_grid_shows_them(cfg_factory, tmp_path):
    cfg = cfg_factory("dataset.image_size=12", "augmentation=cutmix", "augmentation.mixup.alpha=0.2",
                      "augmentation.affine.degrees=10", "augmentation.color.brightness=0.2", "augmentation.policy.name=trivial",
                      "augmentation.erasing.p=0.5", "model=mlp", "logger.image_grid=true", "print_config=false")
    metrics = run(cfg)
    assert metrics["status"] == "ok" and 0 <= metrics["history"][0]["train/acc"] <= 1
    assert metrics["history"][0]["train/loss"] == metrics["history"][0]["train/loss"]  # not NaN
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 1})
    events.Reload()
    assert "train/augmented_batch" in events.Tags()["images"]


def test_the_per_sample_path_takes_the_same_keys_through_torchvision(cfg_factory):
    cfg = cfg_factory("dataset.image_size=12", "augmentation.per_sample=true", "augmentation=randaugment",
                      "augmentation.per_sample=true", "augmentation.mixup.alpha=0.2", "augmentation.cutmix.alpha=1.0",
                      "augmentation.affine.degrees=10", "augmentation.color.contrast=0.2",
                      "augmentation.erasing.p=0.5", "model=mlp", "logger.image_grid=false", "print_config=false")
    metrics = run(cfg)
    assert metrics["status"] == "ok" and metrics["history"][0]["train/loss"] == metrics["history"][0]["train/loss"]


def test_mixing_is_refused_for_regression(cfg_factory, image_csv):
    root, csv_file = image_csv
    cfg = cfg_factory("dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={csv_file}",
                      "dataset.target_column=score", "task=regression", "augmentation=mixup")
    with pytest.raises(ConfigError, match="augmentation.mixup.alpha=0.2: mixes class labels"):
        run(cfg)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decoded_files_match_pil(tmp_path, suffix, channels):
    """torchvision.io decodes PNG and JPEG (PIL the rest); pixels agree with PIL's decode and bilinear resize."""
    path = tmp_path / f"image{suffix}"
    write_png(path, 128, size=40)  # PIL picks the format from the suffix
    with Image.open(path) as img:
        ref = np.asarray(img.convert("L" if channels == 1 else "RGB").resize((20, 20), Image.BILINEAR))
    ref = torch.from_numpy(ref.copy()).view(20, 20, channels).permute(2, 0, 1)
    out = decode_image(path, 20, channels)
    assert out.shape == (channels, 20, 20) and out.dtype == torch.uint8
    assert (out.int() - ref.int()).abs().max() <= 1  # grayscale: libpng's conversion rounds differently


def test_a_16_bit_png_decodes_to_8_bits(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(path)
    out = decode_image(path, 4, 1)
    assert out.dtype == torch.uint8 and out.shape == (1, 4, 4) and (out.int() - 40000 / 257).abs().max() <= 1
