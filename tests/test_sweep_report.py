"""A real tiny multirun (2x2 jobs, one failing) ends in a report; the CLI and the notebook read it back."""
from __future__ import annotations

import csv
import json
import os
import shutil

import nbclient
import nbformat
import pytest
from conftest import ROOT, TINY, run_cli

from trainlab.report import CHARTS, load_job

# A job that fails inside fit: the user's network raises in its first training step in job 3
# (optimizer=adagrad scheduler=step). A config mistake would be refused before any job starts (the
# CLI pre-check), so the failure comes from the user's code at run time, as a real bug would.
FAILING = '''
from hydra.core.hydra_config import HydraConfig

from trainlab.models import MLP


class Net(MLP):
    def __init__(self, input_shape, num_outputs, fail_job=-1, **kwargs):
        super().__init__(input_shape, num_outputs, **kwargs)
        self.fail_job = fail_job

    def forward(self, x):
        if self.training and HydraConfig.get().job.num == self.fail_job:
            raise RuntimeError(f"injected failure in job {self.fail_job}")
        return super().forward(x)
'''
SWEEP = ["optimizer=adam,adagrad", "scheduler=none,step", "model=mlp", "model.class_path=failing.Net",
         "+model.init_args.fail_job=3"]
FAILED_OVERRIDES = "optimizer=adagrad scheduler=step"
SHORT = [o for o in TINY if not o.startswith(("trainer.max_epochs", "trainer.limit_train"))] + [
    "trainer.max_epochs=2", "trainer.limit_train_batches=2"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    (base / "failing.py").write_text(FAILING)
    folder = base / "multirun"
    result = run_cli("train.py", "-m", *SWEEP, *SHORT, f"hydra.sweep.dir={folder}",
                     env={"PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{base}"})
    return folder, result


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_failed_job_is_reported_and_sets_the_exit_code(sweep):
    folder, result = sweep
    assert result.returncode == 1, result.stderr[-3000:]
    assert "1 of 4 jobs did not finish" in result.stdout + result.stderr
    rows = _csv(folder / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    failed = rows[-1]
    assert failed["overrides"] == FAILED_OVERRIDES and "injected failure in job 3" in failed["error"]
    assert "Traceback" in (folder / failed["job"] / "train.log").read_text()
    scores = [float(r["best val/acc"]) for r in rows[:3]]
    assert scores == sorted(scores, reverse=True)
    for row in rows[:3]:
        metrics = json.loads((folder / row["job"] / "metrics.json").read_text())
        assert float(row["best val/acc"]) == pytest.approx(metrics["best_score"], abs=1e-4)
        assert row["epochs"] == "2" and float(row["test/acc"]) == pytest.approx(metrics["test"]["test/acc"], abs=1e-4)
    for name in ("loss.png", "monitor.png", "lr.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in (folder / "summary.md").read_text()
    assert f"| {FAILED_OVERRIDES} | failed |" in (folder / "summary.md").read_text()


def test_report_cli_regenerates_the_same_csv(sweep, tmp_path):
    folder, _ = sweep
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    for name in ("summary.csv", "summary.md", "loss.png"):
        (copy / name).unlink()
    result = run_cli("-m", "trainlab.report", str(copy))
    assert result.returncode == 1  # a job failed
    assert (copy / "summary.csv").read_text() == (folder / "summary.csv").read_text()
    assert (copy / "loss.png").exists() and "| job |" in result.stdout


def test_event_files_give_the_curves_metrics_json_lacks(sweep, tmp_path):
    folder, _ = sweep
    job = tmp_path / "job"
    shutil.copytree(folder / "0", job)
    metrics = json.loads((job / "metrics.json").read_text())
    from_json = metrics.pop("history")
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "1").mkdir()  # a job folder not started yet: listed as missing
    (job / "1" / ".hydra").mkdir()
    from_events = load_job(job)["history"]
    assert [r["epoch"] for r in from_events] == [r["epoch"] for r in from_json] == [0, 1]
    for a, b in zip(from_events, from_json):
        for key in ("train/loss", "val/loss", "val/acc", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
    assert load_job(job / "1")["status"] == "missing"


def _sweeps_folder(folder, tmp_path):
    """A folder of two sweeps: an older basic one and, newest, an Optuna-like one (job folders, no multirun.yaml)."""
    runs = tmp_path / "runs"
    shutil.copytree(folder, runs / "old")
    shutil.copytree(folder, runs / "optuna_study", ignore=shutil.ignore_patterns("multirun.yaml", "summary*", "*.png"))
    (runs / "optuna_study" / "optuna.db").touch()
    os.utime(runs / "old", (1, 1))
    return runs


@pytest.mark.parametrize("where", ["repository root, absolute sweep", "another folder, relative folder of sweeps"])
def test_notebook_executes_on_the_sweep(where, sweep, monkeypatch, tmp_path):
    folder, _ = sweep
    cwd, expected, given = ROOT, folder, str(folder)
    if where.startswith("another"):
        cwd = tmp_path / "elsewhere"
        cwd.mkdir()
        expected = _sweeps_folder(folder, tmp_path) / "optuna_study"
        given = os.path.relpath(expected.parent, ROOT)  # relative paths are the project root's
    monkeypatch.setenv("TRAINLAB_SWEEP", given)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(ROOT / "notebooks" / "compare_runs.ipynb", as_version=4)
    # python3 with ipykernel importable in this interpreter = a kernel running sys.executable
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(cwd)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert str(expected) in text
    tables = lambda md: [line for line in md.splitlines() if line.startswith("| ")]  # noqa: E731
    assert tables(text) == tables((folder / "summary.md").read_text())  # the same jobs: summary.md's table
    assert f"| {FAILED_OVERRIDES} | failed |" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == len(CHARTS)


def test_parallel_launcher_runs_a_sweep(tmp_path):
    folder = tmp_path / "multirun"
    result = run_cli("train.py", "-m", "hydra/launcher=parallel", "optimizer=sgd,adam", *TINY, f"hydra.sweep.dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _csv(folder / "summary.csv")
    assert sorted(r["overrides"] for r in rows) == ["optimizer=adam", "optimizer=sgd"]
    assert all(r["status"] == "ok" for r in rows)
