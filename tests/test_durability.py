"""No fault loses a checkpoint: last.ckpt at every epoch end, atomic writes with $TMPDIR on another filesystem,
a full disk or a file-size limit, SIGTERM during validation and during the final test, a moved run folder,
two resumes at once; plus the final test's weights, the full history and gradient histograms."""
from __future__ import annotations

import fcntl
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch

from conftest import finished_run, run_cli
from test_resume import RUN, comparable, metrics, popen, wait_for
from trainlab import checkpoint_io, run_lock
from trainlab.config import ConfigError
from trainlab.guards import DISK_FULL_EXIT
from trainlab.train import run

# Two steps an epoch; validation and test of 80 one-image batches, with a progress-bar line for each batch,
# so the output says where the run is (stop_when signals it there).
SLOW = [*[a for a in RUN if "progress_bar" not in a], "trainer.limit_train_batches=2", "dataset.eval_batch_size=1",
        "trainer.limit_val_batches=80", "trainer.limit_test_batches=80", "callbacks.progress_bar.refresh_rate=1",
        "callbacks.progress_bar.min_seconds=0"]


# ------------------------------------------------------------------ helpers
@pytest.fixture
def tmpdir_elsewhere(tmp_path):
    """$TMPDIR on another filesystem than the run folders (tmpfs /dev/shm vs pytest's tmp_path): where
    Lightning's own writer put its temporary files, so a cross-filesystem move is what a kill could cut."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm tmpfs for $TMPDIR")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="trainlab-test-"))
    if os.stat(folder).st_dev == os.stat(tmp_path).st_dev:
        shutil.rmtree(folder)
        pytest.skip("/dev/shm and pytest's tmp_path are on one filesystem")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def environ(tmpdir: Path) -> dict:
    return {"TMPDIR": str(tmpdir)}


def spawn(tmpdir: Path, *args: str) -> subprocess.Popen:
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmpdir)
    try:
        return popen(*args)
    finally:
        os.environ.pop("TMPDIR") if old is None else os.environ.__setitem__("TMPDIR", old)


def in_tmpdir(tmpdir: Path) -> list[str]:
    """What is in $TMPDIR, but torch's compile-cache folder (`import lightning` creates it, empty)."""
    return [p.name for p in tmpdir.iterdir() if not p.name.startswith("torchinductor_")]


def temporaries(run_dir: Path, tmpdir: Path) -> list[str]:
    """What is left in $TMPDIR, and write_atomic's hidden temporary files left in the run folder."""
    return in_tmpdir(tmpdir) + [str(p) for p in run_dir.rglob(".*.tmp")]


def last(run_dir: Path) -> dict:
    return checkpoint_io.load(run_dir / "checkpoints" / "last.ckpt")


def run_files(run_dir: Path) -> dict:
    """The run's own files and their times, without Hydra's session records and log (a refused command's)."""
    return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and p.name != "train.log"
            and not any(part.startswith(".hydra") for part in p.relative_to(run_dir).parts)}


def stop_when(proc: subprocess.Popen, markers: list[str], sig: int) -> str:
    """Read the run's output until it has shown each marker in turn, then send `sig`; the whole output.

    The pipe is shrunk to one page and read in small pieces, so the run (its progress bar writes a line
    each batch) cannot get more than a few KB of output, some 40 batches, past the marker before the
    signal arrives, however fast this machine is at the moment."""
    fd = proc.stdout.fileno()
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)
    seen, pos, waiting = b"", 0, [m.encode() for m in markers]
    while waiting:
        chunk = os.read(fd, 256)
        assert chunk, f"run ended before {waiting[0]!r}:\n{seen.decode(errors='replace')[-3000:]}"
        seen += chunk
        while waiting and (found := seen.find(waiting[0], pos)) >= 0:  # each marker after the one before
            pos = found + len(waiting.pop(0))
    proc.send_signal(sig)
    return seen.decode(errors="replace") + proc.communicate(timeout=240)[0]


@pytest.fixture(scope="module")
def slow_plain(tmp_path_factory) -> Path:
    return finished_run(tmp_path_factory, "slow", *SLOW)


# ------------------------------------------------------------------ last.ckpt, history, tested weights
def test_last_checkpoint_holds_the_latest_epoch_and_history_every_epoch(cfg_factory, tmp_path):
    # Highest loss is "best": epoch 0, so Lightning's save_last would have stopped updating last.ckpt there.
    cfg = cfg_factory("trainer.max_epochs=3", "trainer.limit_train_batches=3", "monitor=val/loss",
                      "monitor_mode=max", "logger.image_grid=false")
    m = run(cfg)
    run_dir = tmp_path / "run"
    assert m["best_epoch"] == 0
    ckpt = last(run_dir)
    assert (ckpt["epoch"], ckpt["global_step"]) == (2, 9)
    assert [row["epoch"] for row in m["history"]] == [0, 1, 2]  # not cut at the best epoch by the final test
    assert m["best_score"] == pytest.approx(m["history"][0]["val/loss"])
    assert m["tested"] == "best" and m["tested_checkpoint"] == m["best_checkpoint"]
    assert Path(m["best_checkpoint"]).name == "best-epoch000.ckpt"
    assert not list((run_dir / "checkpoints").glob("last-v*"))


def test_without_a_best_checkpoint_the_final_test_says_it_uses_the_last_weights(cfg_factory, tmp_path, caplog):
    # (trainer.limit_val_batches=0 with a val/ monitor is refused before work: the schema's cross-key check)
    m = run(cfg_factory("callbacks.checkpoint.save_top_k=0", "logger.image_grid=false"))
    assert m["tested"] == "last" and m["best_checkpoint"] is None
    assert m["tested_checkpoint"] == str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert "uses the last weights" in caplog.text
    assert set(m["test"]) >= {"test/loss", "test/acc"}


def test_gradient_histograms_are_written(cfg_factory, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(cfg_factory("trainer.max_epochs=2", "trainer.limit_train_batches=2", "logger.histograms=true",
                    "logger.image_grid=false", "test_after_fit=false"))
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"histograms": 0})
    events.Reload()
    tags = events.Tags()["histograms"]
    grads = [t for t in tags if t.startswith("grads/")]
    assert grads and len(grads) == len([t for t in tags if t.startswith("weights/")])
    assert [e.step for e in events.Histograms(grads[0])] == [0, 1]  # one per epoch
    assert events.Histograms(grads[0])[0].histogram_value.max > 0  # real gradients, not zeroed ones


# ------------------------------------------------------------------ atomic writes, moved folder
def test_kill_while_saving_every_step_then_move_the_folder_and_resume(tmp_path, tmpdir_elsewhere):
    """A checkpoint every step, killed while it writes them: last.ckpt always loads and nothing is ever
    written to $TMPDIR. The folder is then moved (the original deleted) and resumed: it finishes and tests
    its own best file (epoch 0's: the highest validation loss is "best", so it is chosen before the kill)."""
    first = tmp_path / "first" / "run"
    proc = spawn(tmpdir_elsewhere, *RUN, "monitor=val/loss", "monitor_mode=max",
                 "callbacks.checkpoint.every_n_train_steps=1", f"hydra.run.dir={first}")
    wait_for(first / "checkpoints" / "last.ckpt", proc)
    seen_in_tmpdir, saves, stamp = set(), 0, None
    while saves < 5 and proc.poll() is None:  # watch $TMPDIR through a few saves
        seen_in_tmpdir.update(in_tmpdir(tmpdir_elsewhere))
        now = (first / "checkpoints" / "last.ckpt").stat().st_mtime_ns
        saves, stamp = saves + (now != stamp), now
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not seen_in_tmpdir
    assert last(first)["global_step"] >= 4  # readable whatever the kill interrupted
    assert checkpoint_io.load(first / "checkpoints" / "best-epoch000.ckpt")

    moved = tmp_path / "moved" / "run"
    shutil.move(first, moved)
    shutil.rmtree(tmp_path / "first")
    partial = moved / "checkpoints" / ".last.ckpt.k1ll3d.tmp"  # as a kill during a write leaves it
    partial.write_bytes(b"half a checkpoint")
    result = run_cli("train.py", f"resume={moved}", env=environ(tmpdir_elsewhere))
    assert result.returncode == 0, result.stderr[-3000:]
    m = metrics(moved)
    assert m["status"] == "ok" and Path(m["best_checkpoint"]).parent == moved / "checkpoints"
    assert m["tested_checkpoint"] == m["best_checkpoint"] and Path(m["best_checkpoint"]).is_file()
    assert len(list((moved / "checkpoints").glob("best-*.ckpt"))) == 1  # the moved best was replaced, not kept
    assert not list((moved / "checkpoints").glob("last-v*"))
    assert [row["epoch"] for row in m["history"]] == [0, 1, 2]
    assert temporaries(moved, tmpdir_elsewhere) == []


# ------------------------------------------------------------------ a full disk, a file-size limit
def test_file_size_limit_keeps_the_last_good_checkpoint(tmp_path, tmpdir_elsewhere):
    """Histograms on: at the next epoch end both TensorBoard's writer thread and the checkpoints hit the limit."""
    run_dir = tmp_path / "efbig"
    proc = spawn(tmpdir_elsewhere, *[a for a in RUN if "max_epochs" not in a and "histograms" not in a],
                 "trainer.max_epochs=50", "logger.histograms=true", f"hydra.run.dir={run_dir}")
    wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    events = max(p.stat().st_size for p in run_dir.glob("events.out.tfevents.*"))
    limit = events + 20_000  # less than an epoch's histograms, and than a checkpoint; logs and metrics fit
    assert limit < (run_dir / "checkpoints" / "last.ckpt").stat().st_size
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
    time.sleep(0.2)  # a rename of a file written before the limit may still land
    kept = last(run_dir)["global_step"]
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == DISK_FULL_EXIT, out[-3000:]
    assert "Traceback" not in out and "Exception in thread" not in out
    lines = [line for line in out.splitlines() if "disk_full" in line]
    assert lines and all("File too large" in line and f"resume={run_dir}" in line for line in lines), out[-3000:]
    assert last(run_dir)["global_step"] == kept < 50 * 3
    m = metrics(run_dir)
    assert m["status"] == "disk_full" and "File too large" in m["error"]
    assert temporaries(run_dir, tmpdir_elsewhere) == []


def test_full_disk_keeps_the_last_good_checkpoint(tmp_path, tmpdir_elsewhere):
    small = tmp_path / "small"
    small.mkdir()
    # Room for config, logs and two checkpoints (~0.7 MB each), not for a third written beside them.
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1800k", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a real ENOSPC: {mounted.stderr.strip()}")
    try:
        run_dir = small / "run"
        result = run_cli("train.py", *[a for a in RUN if "max_epochs" not in a], "trainer.max_epochs=50",
                         f"hydra.run.dir={run_dir}", env=environ(tmpdir_elsewhere))
        out = result.stdout + result.stderr
        assert result.returncode == DISK_FULL_EXIT, out[-3000:]
        assert "Traceback" not in out and "Logging error" not in out and "Exception in thread" not in out
        assert "No space left on device" in out
        assert last(run_dir)["epoch"] < 50
        assert metrics(run_dir)["status"] == "disk_full"  # a failed checkpoint's temporary file freed the room
        assert temporaries(run_dir, tmpdir_elsewhere) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


# ------------------------------------------------------------------ SIGTERM in validation and in the test
def test_sigterm_during_validation_finishes_it_then_resume_equals_uninterrupted(slow_plain, tmp_path,
                                                                                tmpdir_elsewhere):
    run_dir = tmp_path / "val"
    proc = spawn(tmpdir_elsewhere, *SLOW, f"hydra.run.dir={run_dir}")
    out = stop_when(proc, ["Epoch 1", "Validation DataLoader 0"], signal.SIGTERM)
    assert proc.returncode == 130, out[-3000:]
    ckpt = last(run_dir)
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 4), "the signal did not land in epoch 1's validation"
    assert [row["epoch"] for row in metrics(run_dir)["history"]] == [0, 1]  # its validation finished

    result = run_cli("train.py", f"resume={run_dir}", env=environ(tmpdir_elsewhere))
    assert result.returncode == 0, result.stderr[-3000:]
    assert comparable(metrics(run_dir)) == comparable(metrics(slow_plain))
    resumed, plain = last(run_dir)["state_dict"], last(slow_plain)["state_dict"]
    assert all(torch.equal(resumed[k], plain[k]) for k in plain)
    assert not list((run_dir / "checkpoints").glob("last-v*"))
    assert temporaries(run_dir, tmpdir_elsewhere) == []


def test_sigterm_during_the_final_test_then_resume_runs_only_the_test(slow_plain, tmp_path, tmpdir_elsewhere):
    run_dir = tmp_path / "test"
    proc = spawn(tmpdir_elsewhere, *SLOW, f"hydra.run.dir={run_dir}")
    out = stop_when(proc, ["Testing DataLoader 0"], signal.SIGTERM)
    assert proc.returncode == 130, out[-3000:]
    assert "training is complete" in out and f"python train.py resume={run_dir}" in out
    assert "Traceback" not in out
    m = metrics(run_dir)
    assert m["status"] == "interrupted" and m["test"] == {} and "resume runs the test" in m["error"]
    assert comparable(m)["history"] == comparable(metrics(slow_plain))["history"]
    ckpt = last(run_dir)  # the trained weights, not the best checkpoint's
    assert ckpt["global_step"] == 6
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in last(slow_plain)["state_dict"].items())

    result = run_cli("train.py", f"resume={run_dir}", env=environ(tmpdir_elsewhere))
    assert result.returncode == 0, result.stderr[-3000:]
    assert comparable(metrics(run_dir)) == comparable(metrics(slow_plain))
    assert metrics(run_dir)["tested"] == "best"
    assert temporaries(run_dir, tmpdir_elsewhere) == []


# ------------------------------------------------------------------ one trainer per run folder
def test_second_resume_of_a_running_run_is_refused(tmp_path, tmpdir_elsewhere, monkeypatch):
    run_dir = tmp_path / "busy"
    proc = spawn(tmpdir_elsewhere, *[a for a in RUN if "max_epochs" not in a], "trainer.max_epochs=50",
                 f"hydra.run.dir={run_dir}")
    try:
        wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
        proc.send_signal(signal.SIGSTOP)  # holds the lock, changes nothing while the second one tries
        before = run_files(run_dir)
        result = run_cli("train.py", f"resume={run_dir}", env=environ(tmpdir_elsewhere))
        out = result.stdout + result.stderr
        assert result.returncode == 2, out[-3000:]
        errors = [line for line in out.splitlines() if "Config error" in line]
        assert len(errors) == 1 and "resume" in errors[0] and f"pid {proc.pid}" in errors[0], out[-3000:]
        assert "Traceback" not in out
        assert run_files(run_dir) == before and not (run_dir / "metrics.json").exists()

        monkeypatch.setenv("LOCAL_RANK", "1")
        run_lock.hold(run_dir)  # a DDP rank > 0 joins the folder without the lock
        monkeypatch.delenv("LOCAL_RANK")
        with pytest.raises(ConfigError, match=f"pid {proc.pid}"):
            run_lock.hold(run_dir)
    finally:
        proc.kill()
        proc.wait()
    run_lock.hold(run_dir)  # the OS released the killed process's lock
    run_lock.hold(tmp_path / "elsewhere")  # and this process lets go of run_dir when it moves on
