"""Fine-tuning (seed 004): pretrained pre-processing from the weights' metadata (no download), a backbone lr
multiplier, the backbone unfrozen after N epochs (resumed exactly across it), oversampling and class weights."""
from __future__ import annotations

import math
from collections import Counter

import lightning as L
import pytest
import timm
import torch
import torchvision
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF
from conftest import write_png
from test_resume_policy import session

from trainlab import checkpoint_io, config, finetune, preflight
from trainlab.build import build_parts
from trainlab.data import ImageDataModule
from trainlab.data.sampling import WeightedEpochSampler, class_weights, epoch_order
from trainlab.train import run

MOBILENET = ["model=torchvision", "model.init_args.name=mobilenet_v3_small", "dataset.image_size=16",
             "augmentation=none", "top_k=0"]
SEEN: list[dict] = []  # what Recorder saw, in the run that a test starts


class Recorder(L.Callback):
    """At each epoch's first batch and at the end: the optimizer's lrs, which parameters train, and a copy of
    a backbone and a head parameter."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module)

    def _record(self, trainer, pl_module) -> None:
        backbone = finetune.backbone_parameters(pl_module.net)
        SEEN.append({"epoch": trainer.current_epoch, "lrs": [g["lr"] for g in trainer.optimizers[0].param_groups],
                     "backbone_trains": {p.requires_grad for p in backbone},
                     "head_trains": {p.requires_grad for p in finetune.head_module(pl_module.net).parameters()},
                     "backbone": backbone[0].detach().clone(),
                     "head": pl_module.net.head.weight.detach().clone()})


@pytest.fixture
def imbalanced_folder(tmp_path):
    """90 / 10: 54 images of class `common`, 6 of class `rare`."""
    root = tmp_path / "imbalanced"
    for name, count, value in (("common", 54, 60), ("rare", 6, 190)):
        for i in range(count):
            write_png(root / name / f"{i}.png", value, size=8, seed=count + i)
    return root


def data(cfg) -> ImageDataModule:
    dm = ImageDataModule(cfg.dataset, cfg.augmentation, cfg.task, cfg.seed, cfg.paths.cache_dir)
    dm.setup("fit")
    return dm


def labels_of_one_epoch(dm: ImageDataModule) -> list[int]:
    return [int(y) for _, targets in dm.train_dataloader() for y in targets]


# ---------------------------------------------------------------- pretrained pre-processing
def test_torchvision_weights_metadata_sets_mean_std_and_sizes_without_a_download(cfg_factory, image_folder,
                                                                              tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_weights_here"))
    cfg = cfg_factory(*MOBILENET, "model.init_args.name=resnet50", "model.init_args.pretrained=true",
                      "dataset=image_folder", f"dataset.root={image_folder}", "dataset.channels=1")
    expected = torchvision.models.ResNet50_Weights.DEFAULT.transforms()  # resize 232 (not 256), crop 224
    prep = finetune.pretrained_preprocessing(config.plain(cfg))
    assert (list(prep.mean), list(prep.std), prep.resize_size, prep.crop_size) == (
        expected.mean, expected.std, expected.resize_size[0], expected.crop_size[0])
    assert finetune.network_input(config.plain(cfg)) == (3, 224)  # the pre-flight's dummy batch

    dataset, augmentation = finetune.data_config(cfg.dataset, cfg.augmentation, prep)
    dm = ImageDataModule(dataset, augmentation, cfg.task, cfg.seed, cfg.paths.cache_dir, pretrained=prep)
    dm.setup("fit")
    assert dm.train_set.images.shape[1:] == (3, 232, 232) and dm.input_size == 224
    images = dm.val_set.images[:2]
    out = dm.augment(images, train=False)
    crop = TF.center_crop(images, [224, 224]).float() / 255
    mean, std = torch.tensor(expected.mean).view(1, 3, 1, 1), torch.tensor(expected.std).view(1, 3, 1, 1)
    assert torch.allclose(out, (crop - mean) / std)
    assert cfg.dataset.image_size == 16 and cfg.dataset.channels == 1  # the run's config keeps what was written
    assert dm.preprocessing() == {"normalization": "torchvision ResNet50_Weights.IMAGENET1K_V2",
                                  "mean": pytest.approx(expected.mean), "std": pytest.approx(expected.std),
                                  "image_size": 232, "input_size": 224, "channels": 3}


def test_timm_and_torchvision_factories_read_their_pretrained_configs():
    timm_model = {"class_path": "timm.create_model", "init_args": {"model_name": "resnet18", "pretrained": True}}
    auto = {"finetune": {"preprocessing": "auto"}}
    prep = finetune.pretrained_preprocessing({"model": timm_model, **auto})
    data_cfg = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg("resnet18").to_dict())
    resize, crop = timm.data.create_transform(**data_cfg).transforms[:2]  # timm's own eval transform
    assert (prep.mean, prep.std) == (data_cfg["mean"], data_cfg["std"])
    assert (prep.resize_size, prep.crop_size) == (resize.size, crop.size[0]) == (235, 224)

    factory = {"class_path": "torchvision.models.get_model", "init_args": {"name": "vit_b_16", "weights": "DEFAULT"}}
    assert finetune.pretrained_preprocessing({"model": factory, **auto}).source == \
        "torchvision ViT_B_16_Weights.IMAGENET1K_V1"
    not_pretrained = {**timm_model, "init_args": {"model_name": "resnet18", "pretrained": False}}
    assert finetune.pretrained_preprocessing({"model": not_pretrained, **auto}) is None
    assert finetune.pretrained_preprocessing({"model": timm_model}) is None  # a run stored before the key


def test_the_switch_keeps_the_datas_own_preprocessing(cfg_factory, image_folder):
    base = [*MOBILENET, "model.init_args.pretrained=true", "dataset=image_folder", f"dataset.root={image_folder}"]
    off = config.plain(cfg_factory(*base, "finetune.preprocessing=false"))
    assert finetune.pretrained_preprocessing(off) is None and finetune.network_input(off) == (3, 16)
    cfg = cfg_factory(*base, "finetune.preprocessing=mean_std", "dataset.channels=1")
    mean_std = finetune.pretrained_preprocessing(config.plain(cfg))
    assert mean_std.mean == (0.485, 0.456, 0.406) and mean_std.resize_size is None
    dataset, augmentation = finetune.data_config(cfg.dataset, cfg.augmentation, mean_std)
    dm = ImageDataModule(dataset, augmentation, cfg.task, cfg.seed, cfg.paths.cache_dir, pretrained=mean_std)
    dm.setup("fit")
    assert dm.augment(dm.val_set.images, train=False).shape[1:] == (3, 16, 16)  # RGB, the data's own size
    assert finetune.network_input(config.plain(cfg)) == (3, 16)
    dm = data(cfg_factory(*base, "finetune.preprocessing=false"))  # what build_parts does without weights
    assert dm.preprocessing()["normalization"] == "training split" and dm.input_size == 16


# ---------------------------------------------------------------- backbone lr and unfreezing
def test_backbone_lr_and_unfreezing_through_a_real_trainer(cfg_factory, image_folder):
    SEEN.clear()
    run(cfg_factory(*MOBILENET, "dataset=image_folder", f"dataset.root={image_folder}", "dataset.batch_size=4",
                    "optimizer=adamw", "optimizer.backbone_lr_mult=0.1", "finetune.unfreeze_after_epochs=1",
                    "trainer.max_epochs=2", "trainer.limit_train_batches=2", "test_after_fit=false", "logger=none",
                    "+callbacks.extra.rec.class_path=test_finetune.Recorder", "+callbacks.extra.rec.init_args={}"))
    first, second, end = SEEN
    # Head groups first (decay, no decay) at lr, the backbone's at lr * 0.1, as the optimizer held them.
    assert first["lrs"] == second["lrs"] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert (first["backbone_trains"], second["backbone_trains"]) == ({False}, {True})
    assert first["head_trains"] == second["head_trains"] == {True}
    assert torch.equal(first["backbone"], second["backbone"]) and not torch.equal(second["backbone"], end["backbone"])
    assert not torch.equal(first["head"], second["head"])


def test_a_run_resumed_across_the_unfreeze_epoch_equals_the_uninterrupted_run(cfg_factory, tmp_path):
    args = ["optimizer.backbone_lr_mult=0.1", "finetune.unfreeze_after_epochs=1", "trainer.limit_train_batches=3",
            "test_after_fit=false", "logger=none"]  # the seed CNN: its `head` is declared
    run(cfg_factory(*args, "trainer.max_epochs=2", name="straight"))
    run(cfg_factory(*args, name="resumed"))  # one epoch: it stops where the backbone unfreezes
    frozen = checkpoint_io.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["optimizer_states"][0]["state"]
    with session(tmp_path / "resumed", f"resume={tmp_path / 'resumed'}", "trainer.max_epochs=2") as cfg:
        assert run(cfg)["epochs"] == 2
    ours, theirs = (checkpoint_io.load(tmp_path / d / "checkpoints" / "last.ckpt") for d in ("resumed", "straight"))
    assert all(torch.equal(ours["state_dict"][k], theirs["state_dict"][k]) for k in theirs["state_dict"])
    (ours,), (theirs,) = ours["optimizer_states"], theirs["optimizer_states"]
    assert ours["param_groups"] == theirs["param_groups"] and ours["state"].keys() == theirs["state"].keys()
    assert all(torch.equal(ours["state"][i][k], theirs["state"][i][k]) for i in theirs["state"] for k in theirs["state"][i])
    assert len(frozen) < len(ours["state"])  # the backbone got optimizer state only after it unfroze


def test_a_network_without_a_declared_head_is_refused_before_data(cfg_factory):
    resolved = config.plain(cfg_factory("model=mlp", "optimizer.backbone_lr_mult=0.1"))  # MLP: no `head`
    with pytest.raises(config.ConfigError, match=r"optimizer.backbone_lr_mult=0.1: needs the network's head"):
        preflight.check(resolved)


# ---------------------------------------------------------------- oversampling and class weights
@pytest.mark.parametrize("in_memory", [True, False])
def test_oversampling_balances_the_classes_a_training_epoch_sees(cfg_factory, imbalanced_folder, in_memory):
    base = ["dataset=image_folder", f"dataset.root={imbalanced_folder}", "dataset.image_size=8",
            f"dataset.in_memory={str(in_memory).lower()}", "dataset.num_workers=0", "dataset.batch_size=8"]
    plain = Counter(labels_of_one_epoch(data(cfg_factory(*base))))
    dm = data(cfg_factory(*base, "dataset.oversample=balanced"))
    balanced = Counter(labels_of_one_epoch(dm))
    assert plain[1] / sum(plain.values()) < 0.15  # rare: class 1
    assert sum(balanced.values()) == len(dm.train_set) and 0.35 < balanced[1] / len(dm.train_set) < 0.65
    assert labels_of_one_epoch(dm) == labels_of_one_epoch(dm)  # an epoch's draw depends on (seed, epoch) only


def test_regression_oversampling_balances_target_bins(cfg_factory, tmp_path):
    root, lines = tmp_path / "scores", ["path,score"]
    for i in range(40):  # 36 low scores, 4 high ones
        score = i / 36 if i < 36 else 9 + i / 40
        write_png(root / f"{i}.png", 30 + 5 * i, size=8, seed=i)
        lines.append(f"{i}.png,{score:.4f}")
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    cfg = cfg_factory("dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={tmp_path / 'scores.csv'}",
                      "dataset.target_column=score", "task=regression", "dataset.image_size=8", "dataset.oversample=balanced",
                      "dataset.oversample_bins=2")
    dm = data(cfg)
    high = [y for _, targets in dm.train_dataloader() for y in targets.tolist() if y > 5]
    assert 0.35 < len(high) / len(dm.train_set) < 0.65


def test_weighted_draws_shard_per_rank_and_change_each_epoch():
    weights = torch.tensor([1.0, 1.0, 8.0, 2.0, 5.0])
    epoch = [0]
    shards = [list(WeightedEpochSampler(weights, 7, lambda: epoch[0], rank, 2)) for rank in (0, 1)]
    draw = epoch_order(5, 7, 0, weights, 6).tolist()
    assert shards == [draw[0::2], draw[1::2]] and len(shards[0]) == len(shards[1]) == 3
    epoch[0] = 1
    assert list(WeightedEpochSampler(weights, 7, lambda: epoch[0])) != epoch_order(5, 7, 0, weights).tolist()


def test_class_weights_weigh_the_training_loss(cfg_factory, imbalanced_folder, tmp_path):
    args = ["dataset=image_folder", f"dataset.root={imbalanced_folder}", "dataset.image_size=8", "model=mlp",
            "augmentation=none", "top_k=0", "dataset.class_weights=balanced", "logger=none"]
    run(cfg_factory(*args))
    dm = data(cfg_factory(*args))
    counts = torch.bincount(dm.train_set.targets, minlength=2).double()
    expected = len(dm.train_set) / (2 * counts)
    assert class_weights(dm.train_set.targets, 2) == pytest.approx(expected.tolist())
    stored = checkpoint_io.load(tmp_path / "run" / "checkpoints" / "last.ckpt")["state_dict"]["class_weights"]
    assert torch.allclose(stored.double(), expected) and stored[1] > 4 * stored[0]  # the rare class weighs more

    module = build_parts(cfg_factory(*args), config.plain(cfg_factory(*args))).module
    x, y = torch.randn(6, 3, 8, 8), torch.tensor([0, 0, 0, 0, 1, 1])
    with torch.no_grad():
        out = module.eval()(x)
        unweighted = module.compute_loss(out, y)          # validation and test (eval mode)
        weighted = module.train().compute_loss(out, y)    # a training step
    assert math.isclose(float(weighted), float(F.cross_entropy(out, y, weight=expected.float())), rel_tol=1e-5)
    assert math.isclose(float(unweighted), float(F.cross_entropy(out, y)), rel_tol=1e-5)  # validation: unweighted
