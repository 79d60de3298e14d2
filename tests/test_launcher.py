"""hydra/launcher=parallel (src/hydra_plugins/trainlab_launcher): a job whose process dies is recorded and the
sweep ends in its report; one CUDA device per job."""
from __future__ import annotations

import csv
import json
import os

import pytest
from conftest import ROOT, TINY, run_cli

from hydra_plugins.trainlab_launcher._processes import DevicePool, _n_jobs, detect_devices

# A network that kills its own process in its first training step when its Hydra job number is named:
# the worker dies as under the OOM killer or a crash in native code, with no hook in trainlab.
KILLER = '''
import ctypes
import os
import signal

from hydra.core.hydra_config import HydraConfig

from trainlab.models import MLP


class Net(MLP):
    def __init__(self, input_shape, num_outputs, kill_job=-1, segv_job=-1, **kwargs):
        super().__init__(input_shape, num_outputs, **kwargs)
        self.kill_job, self.segv_job = kill_job, segv_job

    def forward(self, x):
        if self.training and HydraConfig.get().job.num == self.kill_job:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.training and HydraConfig.get().job.num == self.segv_job:
            ctypes.string_at(0)
        return super().forward(x)
'''


def _sweep(tmp_path, *overrides: str, env: dict | None = None):
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "killer.py").write_text(KILLER)
    folder = tmp_path / "multirun"
    path = os.pathsep.join([str(ROOT / "src"), str(tmp_path / "helpers")])
    result = run_cli("train.py", "-m", "hydra/launcher=parallel", "model=mlp", "model.class_path=killer.Net",
                     *overrides, *TINY, f"hydra.sweep.dir={folder}", env={"PYTHONPATH": path, **(env or {})})
    return folder, result


def _metrics(folder, job: int) -> dict:
    return json.loads((folder / str(job) / "metrics.json").read_text())


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """4 seeds of one configuration, 2 at a time: job 1 is SIGKILLed beside job 0, then job 2 segfaults, in their
    first training step."""
    return _sweep(tmp_path_factory.mktemp("killed"), "seed=1,2,3,4", "+model.init_args.kill_job=1",
                  "+model.init_args.segv_job=2", env={"CUDA_VISIBLE_DEVICES": ""})


def test_a_killed_worker_is_a_failed_job_and_the_sweep_reports(killed):
    folder, result = killed
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "TerminatedWorkerError" not in output and "Traceback" not in output
    assert "2 of 4 jobs did not finish" in output
    with open(folder / "summary.csv", newline="") as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    assert {job: r["status"] for job, r in rows.items()} == {"0": "ok", "1": "failed", "2": "failed", "3": "ok"}
    assert rows["1"]["error"] == "worker died: killed by signal 9 (SIGKILL)"
    assert rows["1"]["overrides"] == "seed=2"
    dead = _metrics(folder, 1)
    assert dead["status"] == "failed" and dead["error"] == "worker died: killed by signal 9 (SIGKILL)"
    assert "cuda_visible_devices" not in dead and "cuda_visible_devices" not in _metrics(folder, 0)
    assert (folder / "1" / "config.yaml").exists()  # the job had started: its own files are kept
    summary = (folder / "summary.md").read_text()
    assert "| seed=2 | failed | worker died: killed by signal 9 (SIGKILL) |" in summary
    assert all(f"| seed={s} |" in summary for s in (1, 2, 3, 4))
    # the seeds form one configuration: the two that finished are its n, the dead workers its flags
    with open(folder / "summary_groups.csv", newline="") as f:
        (group,) = csv.DictReader(f)
    assert (group["n"], group["jobs"], group["seeds"]) == ("2", "4", "1,2,3,4")
    assert "failed 2/4" in group["flags"] and rows["1"]["flags"] == "failed"


def test_a_segfaulting_worker_is_a_failed_job(killed):
    folder, _ = killed
    # the third job, in a fresh process once a slot was free
    assert _metrics(folder, 2)["error"] == "worker died: killed by signal 11 (SIGSEGV)"


def test_each_job_gets_a_device_round_robin(tmp_path):
    folder, result = _sweep(tmp_path, "seed=1,2,3", "hydra.launcher.devices=[0,1]", "hydra.launcher.n_jobs=3")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert [_metrics(folder, j)["cuda_visible_devices"] for j in range(3)] == ["0", "1", "0"]
    assert all(_metrics(folder, j)["status"] == "ok" for j in range(3))  # trainer.accelerator=cpu: trains on CPU


def test_n_jobs_defaults_to_one_job_per_gpu():
    assert _n_jobs(None, ["0", "1", "2"]) == 3 and _n_jobs(None, []) == 2 and _n_jobs(5, ["0"]) == 5


def test_a_freed_device_goes_to_the_next_job():
    pool = DevicePool(["0", "1"])
    assert [pool.take(), pool.take()] == ["0", "1"]
    pool.give_back("1")  # job on device 1 ended first: the next job must not join device 0's job
    assert pool.take() == "1"
    assert DevicePool([]).take() is None


@pytest.mark.parametrize("visible,devices", [("2,3", ["2", "3"]), ("", []), ("-1", []), ("1,-1,2", ["1"])])
def test_devices_follow_cuda_visible_devices(monkeypatch, visible, devices):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert detect_devices() == devices


def test_n_jobs_below_one_is_a_config_error(tmp_path):
    result = run_cli("train.py", "-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=0", "seed=1,2",
                     f"hydra.sweep.dir={tmp_path / 'multirun'}")
    assert result.returncode == 2
    assert "Config error: hydra.launcher.n_jobs=0: must be at least 1" in result.stdout + result.stderr
    assert not [p for p in (tmp_path / "multirun").iterdir() if p.is_dir()]  # no job started
