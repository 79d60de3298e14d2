"""The data seam (README "Bring your own data"): dataset.class_path + dataset.init_args name a user's image
source, a torch Dataset of (x, y) tensors, or a LightningDataModule; each trains with a real Trainer, and
evaluate.py re-tests its run. The user classes live in tests/seam_data_classes.py, outside trainlab."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from conftest import CONF, ROOT, TINY, make_cfg, run_cli
from trainlab import config
from trainlab.build import build_parts
from trainlab.config import ConfigError
from trainlab.data.datamodule import EpochShuffle
from trainlab.data.sources import TensorImages
from trainlab.export import export
from trainlab.inference import evaluate, predict
from trainlab.train import run

QUIET = ["callbacks.progress_bar.enabled=false", "callbacks.model_summary.max_depth=0", "trainer.accelerator=cpu",
         "logger=csv", "print_config=false"]
WINE = ["dataset.class_path=seam_data_classes.Wine", "model=mlp", "augmentation=none"]


def inference_cfg(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def best(run_dir: Path) -> Path:
    return next((run_dir / "checkpoints").glob("best-*.ckpt"))


def test_an_image_source_takes_the_batched_device_path(tmp_path, monkeypatch):
    cfg = make_cfg([*QUIET, "dataset.class_path=seam_data_classes.bars", "dataset.image_size=null",
                    "dataset.channels=null", "augmentation.crop_size=10", "model=mlp", "trainer.max_epochs=3",
                    "top_k=0"], tmp_path / "run")
    metrics = run(cfg)
    assert metrics["test"]["test/acc"] > 0.9, metrics["test"]  # the bar's row is easy to learn
    parts = build_parts(cfg, config.plain(cfg))  # the same data (memoised): how it is batched
    dm = parts.datamodule
    assert dm.input_shape == (1, 10, 10) and dm.image_size == 12 and dm.classes == ["top", "middle", "bottom"]
    assert isinstance(dm.train_set, TensorImages) and dm.augment.mean is not None  # normalised as built-ins
    loader = dm.train_dataloader()
    assert loader.batch_size is None and isinstance(loader.sampler, EpochShuffle)  # one index op per batch

    # The export records the size the source's images were loaded at (dataset.image_size is null in the config).
    monkeypatch.setenv("TRAINLAB_TRUSTED_MODULES", "seam_data_classes")
    record = export(inference_cfg("export", f"ckpt={best(tmp_path / 'run')}", "format=torchscript"))
    pre = record["preprocessing"]
    assert (pre["image_size"], pre["channels"], pre["center_crop"], pre["input_shape"]) == (12, 1, [10, 10], [1, 10, 10])
    assert pre["mean"] == metrics["preprocessing"]["mean"] and record["check"]["same_predictions"] == 1.0


def test_a_vector_dataset_trains_an_mlp_and_evaluate_retests_it(tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="trainlab")
    run_dir = tmp_path / "run"
    cfg = make_cfg([*QUIET, *WINE, "trainer.max_epochs=6", "dataset.batch_size=32"], run_dir)
    metrics = run(cfg)
    assert metrics["test"]["test/acc"] > 0.85, metrics["test"]
    dm = build_parts(cfg, config.plain(cfg)).datamodule
    assert dm.input_shape == (13,) and dm.num_outputs == 3 and dm.classes == ["class_0", "class_1", "class_2"]
    assert isinstance(dm.train_set, TensorImages) and dm.train_set.images.dtype == torch.float32  # stacked
    assert any("not applied to seam_data_classes.Wine" in r.getMessage() for r in caplog.records)
    # Read back from the stored config, the user's class path follows the trust rules.
    with pytest.raises(ConfigError, match="dataset.class_path='seam_data_classes.Wine'.*TRAINLAB_TRUSTED_MODULES"):
        evaluate(inference_cfg("evaluate", f"ckpt={best(run_dir)}"))
    monkeypatch.setenv("TRAINLAB_TRUSTED_MODULES", "seam_data_classes")
    result = evaluate(inference_cfg("evaluate", f"ckpt={best(run_dir)}"))
    assert result["test"] == pytest.approx(metrics["test"], abs=1e-6)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="not images: predict.py reads image files"):
        predict(inference_cfg("predict", f"ckpt={best(run_dir)}", f"input={tmp_path / 'images'}"))


def test_regression_on_a_streamed_dataset_reports_mae_and_r2(tmp_path):
    cfg = make_cfg([*QUIET, "dataset.class_path=seam_data_classes.Diabetes", "model=mlp", "augmentation=none",
                    "task=regression", "dataset.in_memory=false", "trainer.max_epochs=4", "optimizer.lr=0.003"],
                   tmp_path / "run")
    metrics = run(cfg)
    assert {"test/mae", "test/r2", "test/loss"} <= set(metrics["test"])
    assert metrics["test"]["test/r2"] > 0.2, metrics["test"]
    dm = build_parts(cfg, config.plain(cfg)).datamodule
    assert dm.num_outputs == 1 and dm.classes is None and dm.input_shape == (10,)
    assert dm.train_dataloader().batch_size == 64  # item by item, in a DataLoader


def test_a_users_lightning_datamodule_gets_batch_size_and_trains(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = make_cfg([*QUIET, "dataset.class_path=seam_data_classes.WineModule", "+dataset.init_args.val_items=40",
                    "dataset.batch_size=16", "model=mlp", "trainer.max_epochs=4"], run_dir)
    metrics = run(cfg)
    assert metrics["test"]["test/acc"] > 0.8, metrics["test"]
    dm = build_parts(cfg, config.plain(cfg)).datamodule
    assert type(dm).__name__ == "WineModule" and dm.batch_size == 16 and dm.input_shape == (13,)
    monkeypatch.setenv("TRAINLAB_TRUSTED_MODULES", "seam_data_classes")
    assert evaluate(inference_cfg("evaluate", f"ckpt={best(run_dir)}"))["test"] == pytest.approx(metrics["test"])


def test_a_dataset_yaml_needs_only_class_path_and_init_args(tmp_path):
    """A user's config folder (hydra.searchpath) with dataset/wine.yaml: every other key takes its default."""
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "wine.yaml").write_text(
        "class_path: seam_data_classes.Wine\ninit_args:\n  standardize: true\nbatch_size: 16\n")
    cfg = make_cfg([*TINY, *QUIET, f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "dataset=wine", "model=mlp",
                    "augmentation=none"], tmp_path / "run")
    assert set(cfg.dataset) == {"class_path", "init_args", "batch_size"}
    run(cfg)
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["dataset"]
    assert stored["batch_size"] == 16 and stored["val_fraction"] == 0.15 and stored["in_memory"] == "auto"
    assert stored["name"] is None and stored["image_size"] is None and stored["init_args"] == {"standardize": True}


# A user class that breaks its contract: one ConfigError naming dataset.class_path (or the key), before training.
BROKEN = [
    (["dataset.class_path=seam_data_classes.float_images", "dataset.image_size=null"], "dataset.class_path",
     "uint8 images"),
    (["dataset.class_path=seam_data_classes.Diabetes"], "dataset.class_path", "task=regression"),
    (["dataset.class_path=seam_data_classes.BrokenItems"], "dataset.class_path", "OSError: item 0 is on a disk"),
    (["dataset.class_path=seam_data_classes.Wine", "dataset.test_fraction=null"], "dataset.test_fraction",
     "no test split"),
    (["dataset.class_path=seam_data_classes.Wine", "augmentation.per_sample=true"], "augmentation.per_sample",
     "not uint8 images"),
    (["dataset.class_path=seam_data_classes.Wine", "model=cnn"], "model.class_path", ""),  # a conv net
    (["dataset.class_path=seam_data_classes.bars", "dataset.image_size=null", "augmentation=crop"],
     "augmentation.crop_size", "larger than the images (12 px)"),
]


@pytest.mark.parametrize("overrides,key,words", BROKEN, ids=[" ".join(c[0]) for c in BROKEN])
def test_a_broken_contract_is_one_line_before_training(overrides, key, words, tmp_path):
    extra = [] if any(o.startswith("model=") for o in overrides) else ["model=mlp"]
    cfg = make_cfg([*TINY, *QUIET, *extra, *overrides], tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert err.value.key == key and words in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_command_line_takes_a_dataset_class_path(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("train.py", *TINY, *QUIET, *WINE, "+dataset.init_args.standardize=false",
                   f"hydra.run.dir={run_dir}", env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and "test/acc" in metrics["test"]


def test_a_stacked_dataset_resumes_exactly(tmp_path, monkeypatch):
    """Stacked tensors are batched by EpochShuffle, as built-in images are: 2 epochs + resume to 4 = 4 straight."""
    from test_resume_policy import session

    from trainlab import checkpoint_io

    monkeypatch.setenv("TRAINLAB_TRUSTED_MODULES", "seam_data_classes")  # resume reads the stored class path
    common = [*QUIET, *WINE, "trainer.limit_train_batches=3", "dataset.batch_size=16"]
    with session(tmp_path / "resumed", *common, "trainer.max_epochs=2") as cfg:
        run(cfg)
    with session(tmp_path / "resumed", f"resume={tmp_path / 'resumed'}", "trainer.max_epochs=4") as cfg:
        after = run(cfg)
    with session(tmp_path / "straight", *common, "trainer.max_epochs=4") as cfg:
        straight = run(cfg)
    assert after["test"] == straight["test"] and after["epochs"] == 4
    ours, theirs = (checkpoint_io.load(tmp_path / d / "checkpoints" / "last.ckpt")["state_dict"]
                    for d in ("resumed", "straight"))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
