"""Loggers and callbacks as open seams (issue 13): any combination of loggers from conf/logger, each a
class_path + init_args; any Lightning callback in callbacks.extra; callbacks=none. Real tiny runs."""
from __future__ import annotations

import csv
import json
import os
import time

import lightning as L
import pytest
import yaml
from conftest import TINY, make_cfg, run_cli

from trainlab import report
from trainlab.config import ConfigError
from trainlab.train import run

QUIET = ["model=mlp", "model.init_args.hidden=[8]", "top_k=0"]


def _tb_scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(run_dir.glob("events.out.tfevents.*"))
    assert files, list(run_dir.iterdir())
    acc = EventAccumulator(str(run_dir)).Reload()
    return acc.Tags()


def test_tensorboard_and_csv_together_with_image_grid_and_final_hparams(cfg_factory, tmp_path):
    metrics = run(cfg_factory(*QUIET, "logger=[tensorboard,csv]", "logger.histograms=true"))
    run_dir = tmp_path / "run"
    tags = _tb_scalars(run_dir)
    assert "train/augmented_batch" in tags["images"] and any(t.startswith("weights/") for t in tags["histograms"])
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert any(r.get("val/loss") for r in rows)
    final = [r for r in rows if r.get("hparam/test/acc")]  # the final metrics row, as TensorBoard's HPARAMS
    assert float(final[0]["hparam/test/acc"]) == pytest.approx(metrics["test"]["test/acc"])
    assert yaml.safe_load((run_dir / "hparams.yaml").read_text())["model.class_path"] == "trainlab.models.MLP"
    curves = report._with_event_curves(run_dir, [])  # the sweep report reads the event files where they are
    assert [row["val/loss"] for row in curves] == pytest.approx([row["val/loss"] for row in metrics["history"]])


def test_no_logger_still_writes_metrics_and_checkpoints(cfg_factory, tmp_path):
    metrics = run(cfg_factory(*QUIET, "logger=none"))
    run_dir = tmp_path / "run"
    assert metrics["status"] == "ok" and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not list(run_dir.glob("events.out.tfevents.*")) and not (run_dir / "metrics.csv").exists()


def test_wandb_runs_offline_into_the_run_folder(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # save_dir wins over the user's default
    metrics = run(cfg_factory(*QUIET, "logger=wandb", "trainer.max_epochs=2"))
    assert os.environ["WANDB_MODE"] == "offline"
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "run").iterdir())
    log = next(runs[0].glob("run-*.wandb"))
    deadline = time.monotonic() + 60  # wandb's service writes the log's tail after finish() returns
    while not any(rec.HasField("exit") for rec in _wandb_records(log)) and time.monotonic() < deadline:
        time.sleep(0.2)
    history = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
               for rec in _wandb_records(log) if rec.HasField("history")]
    assert [row["val/loss"] for row in history if "val/loss" in row] == pytest.approx(
        [row["val/loss"] for row in metrics["history"]])
    assert history[-1]["hparam/test/acc"] == pytest.approx(metrics["test"]["test/acc"])


def _wandb_records(path):
    """The records of wandb's offline run log (what `wandb sync` uploads): a LevelDB-style log of 32 KiB blocks
    after a 7-byte file header, each record chunk behind a 7-byte header (crc, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, chunk = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or kind == 0:  # a block's zero padding
            pos += left
            continue
        if pos + 7 + length > len(data):  # a record still being written
            return
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE/LAST
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def test_mlflow_writes_a_file_store_in_the_run_folder(cfg_factory, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    metrics = run(cfg_factory(*QUIET, "logger=[mlflow,csv]"))
    store = tmp_path / "run" / "mlruns"
    runs = [p for p in store.glob("*/*") if (p / "metrics").is_dir()]
    assert len(runs) == 1, list(store.rglob("*"))[:20]
    last = (runs[0] / "metrics" / "hparam" / "test" / "acc").read_text().split()
    assert float(last[1]) == pytest.approx(metrics["test"]["test/acc"])
    assert (runs[0] / "metrics" / "val" / "loss").is_file()
    assert (runs[0] / "params" / "optimizer.class_path").read_text() == "torch.optim.Adam"


@pytest.mark.parametrize("overrides,key", [
    (["logger=csv", "logger.histograms=true"], "logger.histograms"),
    (["logger=none", "logger.image_grid=true"], "logger.image_grid"),
    (["+logger.mine.class_path=torch.nn.Linear", "+logger.mine.init_args={}"], "logger.mine.class_path"),
    (["+logger.mine.class_path=no.such.Logger", "+logger.mine.init_args={}"], "logger.mine.class_path"),
    (["+logger.mine.class_path=lightning.pytorch.loggers.CSVLogger"], "logger.mine.init_args"),
    (["logger=csv", "+logger.csv.init_args.save_dir=/tmp"], "logger.csv.init_args.save_dir"),
    (["logger=csv", "+logger.csv.init_args.flush_every=3"], "logger.csv.init_args.flush_every"),
    (["+callbacks.extra.swa={class_path: lightning.pytorch.callbacks.StochasticWeightAveraging, "
      "init_args: {swa_lrs: -1.0}}"], "callbacks.extra.swa.init_args.swa_lrs"),
    (["+callbacks.extra.lrm={class_path: lightning.pytorch.callbacks.LearningRateMonitor, "
      "init_args: {logging_intervall: step}}"], "callbacks.extra.lrm.init_args.logging_intervall"),
    (["+callbacks.extra.x={class_path: torch.optim.SGD, init_args: {}}"], "callbacks.extra.x.class_path"),
    (["+callbacks.extra.x=1"], "callbacks.extra.x"),
    (["callbacks=lr_monitor", "logger=none"], "callbacks.extra.lr_monitor.class_path"),
])
def test_a_bad_logger_or_callback_is_refused_before_work(overrides, key, cfg_factory, tmp_path):
    with pytest.raises(ConfigError) as err:
        run(cfg_factory(*QUIET, *overrides))
    assert err.value.key == key and "\n" not in str(err.value), str(err.value)
    assert not (tmp_path / "run").exists()


class CountingCallback(L.Callback):
    """A user's callback: counts the epochs it saw."""

    def __init__(self, out: str, label: str = "x"):
        self.out, self.label, self.epochs = out, label, 0

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs += 1
        with open(self.out, "a") as f:
            f.write(f"{self.label} {trainer.current_epoch}\n")


def test_an_extra_callback_is_called_with_its_arguments(cfg_factory, tmp_path):
    out = tmp_path / "calls.txt"
    run(cfg_factory(*QUIET, "trainer.max_epochs=2", "callbacks=lr_monitor", "logger=csv", "trainer.log_every_n_steps=1",
                    f"+callbacks.extra.count={{class_path: {__name__}.CountingCallback, "
                    f"init_args: {{out: '{out}', label: seen}}}}"))
    assert out.read_text().split("\n")[:2] == ["seen 0", "seen 1"]
    header = next(csv.reader((tmp_path / "run" / "metrics.csv").open()))
    assert "lr-Adam" in header  # LearningRateMonitor, from conf/callbacks/lr_monitor.yaml


def test_callbacks_none_is_a_bare_run_that_can_resume(cfg_factory, tmp_path):
    metrics = run(cfg_factory(*QUIET, "callbacks=none", "logger=none"))
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt"] and metrics["tested"] == "last" and metrics["best_checkpoint"] is None


def test_a_run_stored_with_the_old_logger_kind_resumes(tmp_path):
    first = make_cfg([*QUIET, "trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                      "trainer.limit_val_batches=1", "test_after_fit=false", "logger=csv"], tmp_path / "run")
    run(first)
    stored = tmp_path / "run" / "config.yaml"
    old = yaml.safe_load(stored.read_text())
    old["logger"] = {"kind": "csv", "histograms": False, "image_grid": False}  # as trainlab wrote it before
    del old["callbacks"]["extra"]
    old["trainer"]["max_epochs"] = 2  # killed after its first epoch: metrics.json not yet written
    stored.write_text(yaml.safe_dump(old))
    (tmp_path / "run" / "metrics.json").unlink()  # unfinished: resume continues it
    metrics = run(make_cfg([f"resume={tmp_path / 'run'}"], tmp_path / "run"))
    assert metrics["epochs"] == 2 and [row["epoch"] for row in metrics["history"]] == [0, 1]
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert {r["epoch"] for r in rows if r.get("val/loss")} == {"0", "1"}  # the csv logger continued


def test_a_list_of_loggers_on_the_command_line(tmp_path):
    tiny = [*TINY, *QUIET, "trainer.limit_train_batches=2"]
    ok = run_cli("train.py", *tiny, "logger=[tensorboard,csv]", f"hydra.run.dir={tmp_path / 'ok'}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert list((tmp_path / "ok").glob("events.out.tfevents.*")) and (tmp_path / "ok" / "metrics.csv").is_file()
    typo = run_cli("train.py", *tiny, "logger=[tensorboard,cvs]", f"hydra.run.dir={tmp_path / 'typo'}")
    assert typo.returncode == 2 and "did you mean logger=csv?" in typo.stderr, typo.stderr
    assert not (tmp_path / "typo").exists()
