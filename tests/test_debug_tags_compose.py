"""What lightning-hydra-template's users expect: `debug=` options that do what they say, `tags=[...]`, the config
printed as a tree when a run starts, and the compose API (a notebook, a test) without train.py or an import first."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from tensorboard.backend.event_processing import event_accumulator

from conftest import CONF, ROOT, TINY, run_cli
from trainlab.report import write_report
from trainlab.train import run

# A real run of the debug options' own lengths: only the device and the console are set here.
PLAIN = ["trainer.accelerator=cpu", "callbacks.progress_bar.enabled=false", "callbacks.model_summary.max_depth=0"]


def _saved(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# ---------------------------------------------------------------- debug=
def test_debug_fdr_runs_one_batch_writes_no_checkpoint_and_says_so(cfg_factory, tmp_path, capsys):
    metrics = run(cfg_factory("debug=fdr", *PLAIN, tiny=False))
    run_dir = tmp_path / "run"
    saved = _saved(run_dir)
    assert saved["global_step"] == 1 and saved["status"] == "ok" and saved["test"]
    assert not (run_dir / "checkpoints" / "last.ckpt").exists() and saved["best_checkpoint"] is None
    assert saved["tested"] == "last" and saved["tested_checkpoint"] is None
    assert saved["debug"].startswith("fast_dev_run=1:") and "no checkpoint" in saved["debug"]
    assert metrics["debug"] in capsys.readouterr().out  # the results table says it too


def test_debug_limit_runs_a_few_batches_for_two_epochs(cfg_factory, tmp_path):
    run(cfg_factory("debug=limit", *PLAIN, tiny=False))
    saved = _saved(tmp_path / "run")
    assert saved["global_step"] == 2 * 3 and len(saved["history"]) == 2 and "debug" not in saved
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_debug_overfit_trains_on_the_same_few_batches(cfg_factory, tmp_path):
    run(cfg_factory("debug=overfit", "trainer.max_epochs=6", "optimizer.lr=0.003", *PLAIN, tiny=False))
    saved = _saved(tmp_path / "run")
    assert saved["global_step"] == 6 * 3  # 3 batches an epoch (digits has 19)
    losses = [row["train/loss"] for row in saved["history"]]
    assert losses[-1] < 0.5 * losses[0], losses  # the same 3 batches again and again: memorised


def test_debug_profiler_writes_its_report_into_the_run_folder(cfg_factory, tmp_path):
    run(cfg_factory("debug=profiler", *PLAIN, "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                    "trainer.limit_test_batches=1", tiny=False))
    report = (tmp_path / "run" / "fit-profiler.txt").read_text()
    assert "FIT Profiler Report" in report and "run_training_epoch" in report
    assert "TEST Profiler Report" in (tmp_path / "run" / "test-profiler.txt").read_text()


@pytest.fixture
def nan_grad_net(tmp_path, monkeypatch) -> str:
    """A network whose outputs are finite but whose gradient is NaN (sqrt of negatives, masked out forward)."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "nangrad.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn


        class Net(nn.Module):
            def __init__(self, input_shape, num_outputs, **unused):
                super().__init__()
                self.fc = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0] * input_shape[1] * input_shape[2],
                                                                num_outputs))

            def forward(self, x):
                z = self.fc(x)
                return torch.where(z > 0, z.sqrt(), torch.zeros_like(z))
        """))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield "nangrad.Net"
    sys.modules.pop("nangrad", None)


@pytest.mark.filterwarnings("ignore:Error detected in SqrtBackward0")  # torch's note of the forward call
def test_debug_anomaly_names_the_operation_that_made_a_nan_gradient(cfg_factory, nan_grad_net):
    with pytest.raises(RuntimeError, match="SqrtBackward0.*returned nan"):
        run(cfg_factory("debug=anomaly", f"model.class_path={nan_grad_net}"))


# ---------------------------------------------------------------- tags=
def test_tags_go_to_metrics_json_the_sweep_report_and_tensorboard_hparams(cfg_factory, tmp_path):
    run(cfg_factory("tags=[baseline,digits]", name="sweep/0"))
    run(cfg_factory(name="sweep/1"))
    assert _saved(tmp_path / "sweep" / "0")["tags"] == ["baseline", "digits"]
    assert _saved(tmp_path / "sweep" / "1")["tags"] == []
    write_report(tmp_path / "sweep")
    rows = {r["job"]: r for r in csv.DictReader((tmp_path / "sweep" / "summary.csv").open())}
    assert rows["0"]["tags"] == "baseline, digits" and rows["1"]["tags"] == ""
    assert "| tags |" in (tmp_path / "sweep" / "summary.md").read_text()
    assert "tags" not in write_report(tmp_path / "sweep" / "1")[0]  # no job with tags: no column
    acc = event_accumulator.EventAccumulator(str(tmp_path / "sweep" / "0"))
    acc.Reload()
    hparams = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"tags" in hparams and b"baseline" in hparams


# ---------------------------------------------------------------- print_config
def test_config_tree_is_printed_and_can_be_turned_off(cfg_factory, capsys):
    run(cfg_factory("tags=[a]", name="on"))
    out = capsys.readouterr().out
    assert out.startswith("config\n") and "├── trainer\n│   ├── accelerator: cpu" in out and "── tags: [a]" in out
    assert out.index("── tags: [a]") < out.index("trainlab results")
    run(cfg_factory("print_config=false", name="off"))
    out = capsys.readouterr().out
    assert "── trainer" not in out and "trainlab results" in out


def test_config_tree_reaches_stdout_before_the_model_summary_and_train_log(tmp_path):
    result = run_cli("train.py", *TINY, "callbacks.model_summary.max_depth=1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("config\n")
    assert result.stdout.index("│   ├── max_epochs: 1") < result.stdout.index("Trainable params")
    assert "── trainer" not in result.stderr  # the quiet console: stderr is for warnings
    log = (tmp_path / "train.log").read_text()
    assert "[trainlab.config_tree][INFO] - config\n" in log and "│   ├── max_epochs: 1" in log


# ---------------------------------------------------------------- the compose API
def test_compose_without_importing_trainlab_trains_into_a_new_folder(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from hydra import compose, initialize_config_dir
        assert "trainlab" not in sys.modules
        with initialize_config_dir(config_dir={str(CONF)!r}, version_base="1.3"):
            cfg = compose("train", overrides={TINY!r})
        print("monitor", cfg.monitor, cfg.monitor_mode)  # trainlab's resolvers, before any trainlab import
        from trainlab.train import run
        first, second = run(cfg), run(cfg)
        print(json.dumps([first["run_dir"], second["run_dir"]]))
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "monitor val/acc max" in result.stdout
    first, second = json.loads(result.stdout.strip().splitlines()[-1])
    assert first != second and first.startswith("outputs/")  # two runs in the same second: two folders
    for folder in (first, second):
        assert _saved(tmp_path / folder)["status"] == "ok"


@pytest.fixture
def hydra_config_set():
    yield
    HydraConfig.instance().cfg = None  # the singleton outlives the test: later tests run without it


def test_compose_with_hydra_config_as_in_lht_tests(tmp_path, hydra_config_set):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"paths.output_dir={tmp_path / 'run'}"], return_hydra_config=True)
        HydraConfig().set_config(cfg)
        metrics = run(cfg)
    assert metrics["status"] == "ok" and _saved(tmp_path / "run")["run_dir"] == str(tmp_path / "run")
    assert "hydra" not in yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())  # Hydra's, not the run's
