"""The user's own config folder (README "Your own config folder"): its options are composed, checked, listed by
--help and refused when trainlab's own shadow them, whichever way the folder is given; a run made with it
re-tests from its stored config without the folder."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import CONF, TINY, run_cli, write_png
from trainlab import cli, config
from trainlab.cli_help import fast_help
from trainlab.config import ConfigError
from trainlab.config_folders import ENV
from trainlab.inference import evaluate, predict
from trainlab.trust import TRUSTED_ENV

# A network of the user's own: it takes the build arguments trainlab passes, plus its own `hidden`.
NETWORK = '''
import math
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, input_shape, num_outputs, hidden=8):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                                    nn.Linear(hidden, num_outputs))

    def forward(self, x):
        return self.layers(x)
'''


def user_folder(root: Path, module: str = "my_nets") -> Path:
    """<root>/conf with model/my_mlp.yaml (the user's class), model/cnn.yaml (named like trainlab's) and an
    experiment; <root>/<module>.py holds the class."""
    folder = root / "conf"
    (folder / "model").mkdir(parents=True)
    (folder / "experiment").mkdir()
    (root / f"{module}.py").write_text(NETWORK)
    model = f"class_path: {module}.TinyNet\nnum_outputs_arg: null\nin_channels_arg: null\n"
    (folder / "model" / "my_mlp.yaml").write_text(model + "init_args:\n  hidden: 12\n")
    (folder / "model" / "cnn.yaml").write_text(model + "init_args: {}\n")
    (folder / "experiment" / "tiny_digits.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        dataset:
          image_size: 12
          batch_size: 32
        augmentation:
          crop_size: null
        trainer:
          max_epochs: 1
          limit_train_batches: 2
        run_name: from_my_folder
        """))
    return folder


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return user_folder(tmp_path)


def test_env_folder_relative_to_cwd_composes_and_passes_the_checks(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV, "conf")  # relative: to the current directory
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # the compose API, as in a notebook
        cfg = compose("train", overrides=["model=my_mlp", "experiment=tiny_digits"], return_hydra_config=True)
        assert cfg.model.class_path == "my_nets.TinyNet" and cfg.model.init_args.hidden == 12
        assert cfg.dataset.image_size == 12 and cfg.run_name == "from_my_folder"
        config.check_choices(dict(cfg.hydra.runtime.choices))
        with pytest.raises(ConfigError) as err:
            config.check_choices({"model": "my_mpl"})
        assert "did you mean model=my_mlp" in str(err.value) and f"folders searched: {CONF}, {folder}" in str(err.value)


@pytest.mark.parametrize("how", ["--config-dir", "-cd", "hydra.searchpath", "env", "pkg"])
def test_every_way_to_give_the_folder_reaches_the_pre_check(how, folder, tmp_path, monkeypatch):
    if how == "pkg":  # a package's config folder: an __init__.py makes the tmp folder the package `conf`
        (folder / "__init__.py").write_text("")
        monkeypatch.delitem(sys.modules, "conf", raising=False)
    given = {"--config-dir": ["--config-dir", str(folder)], "-cd": ["-cd", str(folder)],
             "hydra.searchpath": [f"hydra.searchpath=[file://{folder}]"],
             "pkg": ["hydra.searchpath=[pkg://conf]"], "env": []}[how]
    if how == "env":
        monkeypatch.setenv(ENV, str(folder))
    argv = [*given, *TINY, "model=my_mlp", "experiment=tiny_digits"]
    cli.precheck(CONF, "train", argv, cli.check_train)  # the user's class is built in the pre-flight: no error
    with pytest.raises(ConfigError, match="did you mean model=my_mlp") as err:
        cli.precheck(CONF, "train", [*given, "model=my_mpl"], cli.check_train)
    assert "folders searched:" in str(err.value) and str(CONF) in str(err.value)
    with pytest.raises(ConfigError, match="optional_typo") as err:  # an optional group: trainlab's own check
        cli.precheck(CONF, "train", [*given, *TINY, "experiment=optional_typo"], cli.check_train)
    assert "folders searched:" in str(err.value)
    # model/cnn.yaml in the folder is never read (trainlab's conf/ comes first): choosing it is refused
    with pytest.raises(ConfigError, match="rename the file in your folder, e.g. model/my_cnn.yaml") as err:
        cli.precheck(CONF, "train", [*given, *TINY, "model=cnn"], cli.check_train)
    assert err.value.key == "model" and "model/cnn.yaml" in err.value.problem


@pytest.mark.parametrize("argv,env,key", [
    (["--config-dir", "no_such_folder"], None, "--config-dir"),
    (["hydra.searchpath=[file://no_such_folder]"], None, "hydra.searchpath"),
    (["hydra.searchpath=[pkg://no_such_package.conf]"], None, "hydra.searchpath"),
    ([], "no_such_folder", ENV),
])
def test_a_folder_that_is_not_there_is_one_error(argv, env, key, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if env:
        monkeypatch.setenv(ENV, env)
    with pytest.raises(ConfigError) as err:
        cli.precheck(CONF, "train", argv, cli.check_train)
    assert err.value.key == key and "no_such" in str(err.value.value)


def test_help_lists_the_folders_options(folder, capsys):
    assert fast_help(CONF, "train", ["--help", "-cd", str(folder), "model=my_mlp"])
    out = capsys.readouterr().out
    assert f"model: cnn (hidden: trainlab has one of that name), my_mlp  [your folder {folder}]" in out
    assert f"experiment: tiny_digits  [your folder {folder}]" in out
    assert "model: cnn, lenet, mlp" in out and "class_path: my_nets.TinyNet" in out
    with pytest.raises(ConfigError, match="is not a folder"):  # launch() prints it as one line, exit 2
        fast_help(CONF, "train", ["--help", "-cd", str(folder / "missing")])


def test_a_run_with_the_folder_evaluates_without_it(tmp_path, monkeypatch):
    """python train.py --config-dir <folder> model=my_mlp ... as a user types it; then its stored config (plain
    data, the class path and not the folder) re-tests the checkpoint and predicts with no folder given."""
    folder = user_folder(tmp_path)
    run_dir = tmp_path / "run"
    result = run_cli("train.py", "--config-dir", str(folder), "model=my_mlp", "experiment=tiny_digits",
                     "trainer.accelerator=cpu", "callbacks.progress_bar.enabled=false", "logger=csv",
                     f"hydra.run.dir={run_dir}", env={"PYTHONPATH": f"{CONF.parent / 'src'}:{tmp_path}"})
    assert result.returncode == 0, result.stderr[-3000:]
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert stored["model"]["class_path"] == "my_nets.TinyNet" and stored["model"]["init_args"] == {"hidden": 12}
    assert stored["run_name"] == "from_my_folder" and str(folder) not in (run_dir / "config.yaml").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 1

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    monkeypatch.setenv(TRUSTED_ENV, "my_nets")  # a class path read back from a run folder must be trusted
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        result = evaluate(compose("evaluate", [f"ckpt={metrics['tested_checkpoint']}"]))
        write_png(tmp_path / "images" / "a.png", 100, rgb=False)
        predictions = predict(compose("predict", [f"ckpt={metrics['tested_checkpoint']}", f"input={tmp_path / 'images'}"]))
    assert result["test"] == pytest.approx(metrics["test"], rel=1e-6)
    assert predictions.read_text().splitlines()[1].startswith("a.png,")
