"""The network seam (model.class_path: classes and factories, built from input_shape and num_outputs) and the
training-step seam (module.class_path: TrainModule's hooks, distillation, a plain LightningModule), each through
a real Trainer on tiny data."""
from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest
import torch
import yaml
from conftest import CONF, TINY, make_cfg
from hydra import compose, initialize_config_dir

from trainlab import config, preflight, seams
from trainlab.config import ConfigError
from trainlab.inference import evaluate
from trainlab.train import run

DIGITS = (1, 24, 24)  # the digits crop
SMALL_BATCHES = ["dataset.batch_size=16", "dataset.eval_batch_size=16"]  # ImageNet-sized networks on the CPU


def _model(class_path: str, **init_args) -> dict:
    return {"class_path": class_path, "num_outputs_arg": None, "in_channels_arg": None, "init_args": init_args}


@pytest.mark.parametrize("name", ["SeedCNN", "LeNet", "MLP", "TorchvisionNet"])
def test_built_ins_take_the_shape_of_one_input(name):
    args = {"name": "mobilenet_v3_small"} if name == "TorchvisionNet" else {}
    net = seams.build_network(_model(f"trainlab.models.{name}", **args), DIGITS, 10)
    assert net.eval()(torch.zeros(2, *DIGITS)).shape == (2, 10)


def test_mlp_takes_vectors_and_conv_nets_refuse_them_naming_the_fix():
    net = seams.build_network(_model("trainlab.models.MLP", hidden=[8]), (13,), 3)
    assert net(torch.zeros(4, 13)).shape == (4, 3)
    with pytest.raises(ConfigError) as err:
        seams.build_network(_model("trainlab.models.SeedCNN"), (13,), 3)
    assert err.value.key == "model.class_path" and "(13,)" in str(err.value) and "model=mlp" in err.value.fix


def test_a_class_path_in_a_package_that_is_not_installed_says_pip_install():
    with pytest.raises(ConfigError) as err:
        seams.network_class(_model("notinstalledpkg.nets.Net"))
    assert err.value.key == "model.class_path" and err.value.fix.startswith("pip install notinstalledpkg")


def test_a_network_written_for_the_old_contract_is_told_what_changed():
    class Old(torch.nn.Module):
        def __init__(self, in_channels, input_size, num_outputs):
            super().__init__()

    sys.modules[__name__].Old = Old
    with pytest.raises(ConfigError, match="takes in_channels and input_size") as err:
        seams.build_network(_model(f"{__name__}.Old"), DIGITS, 10)
    assert err.value.key == "model.class_path" and "input_shape" in err.value.fix


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A finished run of the default CNN (the teacher, and a stored run to read back)."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    metrics = run(make_cfg([*TINY, "trainer.limit_train_batches=4"], run_dir))
    assert metrics["status"] == "ok"
    return run_dir


def _ckpt(run_dir):
    return run_dir / "checkpoints" / "last.ckpt"


def _evaluate(run_dir, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={_ckpt(run_dir)}", f"output={tmp_path / 'eval.json'}"])
    return evaluate(cfg)


def test_timm_factory_trains_with_its_own_argument_names_and_evaluates(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    metrics = run(make_cfg([*TINY, "model=timm", "model.init_args.model_name=test_resnet", *SMALL_BATCHES], tmp_path / "run"))
    assert metrics["status"] == "ok" and set(metrics["test"]) == {"test/loss", "test/acc", "test/top2"}
    with pytest.raises(ConfigError, match="outside the trusted modules") as err:  # a stored class path: trust rules
        _evaluate(tmp_path / "run", tmp_path)
    assert err.value.key == "model.class_path" and "TRAINLAB_TRUSTED_MODULES=timm" in err.value.fix
    monkeypatch.setenv("TRAINLAB_TRUSTED_MODULES", "timm")
    assert _evaluate(tmp_path / "run", tmp_path)["test"] == metrics["test"]


def test_torchvision_get_model_factory_fits_its_head_by_num_classes(tmp_path):
    factory = ["model.class_path=torchvision.models.get_model", "~model.init_args",
               "+model.init_args={name: mobilenet_v3_small, weights: null}", "dataset.channels=3"]
    with pytest.raises(ConfigError) as err:  # 1000 ImageNet outputs: the dummy batch in the pre-flight says so
        run(make_cfg([*TINY, *factory], tmp_path / "bare"))
    assert err.value.key == "model.class_path" and "(1, 1000)" in str(err.value)
    assert "model.num_outputs_arg" in err.value.fix and not (tmp_path / "bare").exists()
    fitted = config.plain(make_cfg([*TINY, *factory, "model.num_outputs_arg=num_classes"], tmp_path / "run"))
    preflight.check(fitted)  # builds it and runs a batch of one: (1, 10) outputs


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """The user's own module (outside trainlab) with a TrainModule subclass and a plain LightningModule."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "mysteps.py").write_text(textwrap.dedent("""
        import lightning as L
        import torch
        from torch.nn import functional as F

        from trainlab.module import TrainModule


        class OffsetLoss(TrainModule):
            '''Soft (one-hot) targets from the batch hook, and a loss with a visible offset from init_args.'''

            def __init__(self, *args, offset: float = 0.0, **kwargs):
                super().__init__(*args, **kwargs)
                self.offset = offset

            def training_batch(self, batch):
                x, y = batch
                return x, F.one_hot(y, self.hparams.num_outputs).float()

            def compute_loss(self, out, y):
                return F.cross_entropy(out, y) + self.offset


        class Plain(L.LightningModule):
            def __init__(self, net, num_outputs, lr: float = 0.01):
                super().__init__()
                self.net, self.lr = net, lr

            def forward(self, x):
                return self.net(x)

            def _scores(self, batch, stage):
                x, y = batch
                out = self(x)  # through forward: the end-of-run figures read its outputs
                loss = F.cross_entropy(out, y)
                self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True)
                self.log(f"{stage}/acc", (out.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
                return loss

            def training_step(self, batch, batch_idx):
                return self._scores(batch, "train")

            def validation_step(self, batch, batch_idx):
                self._scores(batch, "val")

            def test_step(self, batch, batch_idx):
                self._scores(batch, "test")

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=self.lr)
        """))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield "mysteps"
    sys.modules.pop("mysteps", None)


def test_a_user_subclass_overrides_hooks_and_keeps_metrics_reports_and_evaluate(user_package, tmp_path,
                                                                                  monkeypatch):
    metrics = run(make_cfg([*TINY, f"module.class_path={user_package}.OffsetLoss",
                            "+module.init_args.offset=100.0"], tmp_path / "run"))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["status"] == "ok" and written["best_score"] == metrics["best_score"]
    assert written["val"]["val/loss"] > 100 and written["test"]["test/loss"] > 100  # the hook's loss
    row = written["history"][0]
    assert row["train/loss"] > 100 and 0 <= row["train/acc"] <= 1  # soft targets scored by their top class
    monkeypatch.setenv("TRAINLAB_TRUSTED_MODULES", user_package)
    assert _evaluate(tmp_path / "run", tmp_path)["test"]["test/loss"] == pytest.approx(metrics["test"]["test/loss"])


def test_a_plain_lightning_module_trains_checkpoints_and_tests(user_package, tmp_path):
    metrics = run(make_cfg([*TINY, f"module.class_path={user_package}.Plain", "+module.init_args.lr=0.05",
                            "figures=true"], tmp_path / "run"))
    assert metrics["status"] == "ok" and metrics["best_checkpoint"] and metrics["best_score"] == pytest.approx(metrics["val"]["val/acc"])
    assert set(metrics["test"]) == {"test/loss", "test/acc"} and {"val/acc", "lr"} <= set(metrics["history"][0])
    assert (tmp_path / "run" / "figures" / "confusion_matrix.png").is_file()  # from its test outputs
    with pytest.raises(Exception, match="monitor='val/top2'"):  # a metric it never logs: at the first validation
        run(make_cfg([*TINY, f"module.class_path={user_package}.Plain", "monitor=val/top2"], tmp_path / "other"))


def test_distillation_from_a_teacher_run_keeps_the_student_checkpoint_alone(teacher, tmp_path):
    metrics = run(make_cfg([*TINY, "model=mlp", "module=distill", f"module.init_args.teacher={teacher}"],
                           tmp_path / "run"))
    assert metrics["status"] == "ok"
    state = torch.load(_ckpt(tmp_path / "run"), weights_only=True)["state_dict"]
    assert state and all(k.startswith("net.") for k in state) and "net.net.1.0.weight" in state  # the MLP only
    with pytest.raises(ConfigError) as err:  # a teacher of another input shape: named when fitting starts
        run(make_cfg([*TINY, "module=distill", f"module.init_args.teacher={teacher}", "augmentation.crop_size=20"],
                     tmp_path / "other"))
    assert err.value.key == "module.init_args.teacher" and "(1, 20, 20)" in str(err.value)


def test_a_run_stored_before_the_seams_still_evaluates(teacher, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(teacher, old)
    stored = yaml.safe_load((old / "config.yaml").read_text())
    del stored["module"], stored["model"]["num_outputs_arg"], stored["model"]["in_channels_arg"]
    (old / "config.yaml").write_text(yaml.safe_dump(stored))
    expected = json.loads((teacher / "metrics.json").read_text())
    result = _evaluate(old, tmp_path)
    assert result["test"] == pytest.approx(expected["test"])  # one epoch: the last weights are the best
