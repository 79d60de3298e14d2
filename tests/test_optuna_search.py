"""`python train.py -m hparams_search=optuna`: a real TPE search through Hydra's launcher, resumed from its SQLite
study, pruning from the per-epoch value, and two workers sharing one study on a real PostgreSQL server."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
from conftest import TINY, run_cli
from optuna.trial import TrialState

# Two parameters on the command line replace the YAML's space and keep the jobs tiny.
SPACE = ["hydra.sweeper.params=null", "optimizer.lr=tag(log,interval(1e-4,1e-1))", "dataset.batch_size=choice(16,32)"]


def search(sweep_dir: Path, n_trials: int, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli("train.py", "-m", "hparams_search=optuna", *TINY, *SPACE, "test_after_fit=false",
                     "logger=csv", f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_search_resumes_its_sqlite_study_and_prunes(tmp_path):
    sweep = tmp_path / "sweep"
    first = search(sweep, 3)
    study = optuna.load_study(study_name="trainlab", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for trial in study.trials:  # each trial's value is its job's best val/acc, its params the job's config
        job = metrics(sweep / str(trial.number))
        assert job["status"] == "ok" and trial.value == pytest.approx(job["best_score"])
        config = (sweep / str(trial.number) / "config.yaml").read_text()
        assert f"batch_size: {trial.params['dataset.batch_size']}" in config
    assert (sweep / "optuna_history.png").stat().st_size > 0 and (sweep / "optuna_importance.png").stat().st_size > 0
    assert "best trial" in first.stderr + first.stdout
    stamp = (sweep / "0" / "metrics.json").stat().st_mtime_ns

    # Second invocation, same sweep dir: one more trial in the same study, with a pruner that stops any trial
    # (val/acc < 1.1) after its first epoch of three.
    search(sweep, 1, "trainer.max_epochs=3", "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
           "~hydra.sweeper.pruner.n_startup_trials", "+hydra.sweeper.pruner.lower=1.1",
           "hydra.sweeper.pruner.n_warmup_steps=0")
    study = optuna.load_study(study_name="trainlab", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert study.trials[3].state == TrialState.PRUNED and list(study.trials[3].intermediate_values) == [0]
    pruned = metrics(sweep / "3")
    assert pruned["status"] == "pruned" and len(pruned["history"]) == 1
    assert (sweep / "0" / "metrics.json").stat().st_mtime_ns == stamp  # earlier jobs untouched


def test_bad_search_space_is_one_config_error(tmp_path):
    result = run_cli("train.py", "-m", "hparams_search=optuna", *TINY, f"hydra.sweep.dir={tmp_path}",
                     "optimizer=glob(a*)")
    assert result.returncode != 0
    assert "optimizer='glob(a*)': this sweep kind has no Optuna distribution" in result.stdout + result.stderr
    assert not list(tmp_path.glob("*/metrics.json"))


# ---------------------------------------------------------------- PostgreSQL: a real server on loopback
def _pg_bin() -> Path | None:
    for candidate in [shutil.which("pg_ctl"), *sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))]:
        if candidate:
            return Path(candidate).resolve().parent
    return None


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg2", reason="psycopg2-binary is not installed (pip install -e '.[dev]')")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    root = Path(tempfile.mkdtemp(prefix="trainlab-pg-"))
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"

    def pg(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=60)

    started = pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    if started.returncode == 0:
        started = pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o",
                     f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
    if started.returncode == 0:
        started = pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna")
    try:
        if started.returncode != 0:
            pytest.skip(f"PostgreSQL could not start: {(started.stderr or started.stdout)[-500:]}")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
    finally:
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    sweep = tmp_path / "shared"
    worker = [f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.study_name=shared"]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: search(sweep, 2, *worker), range(2)))
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == [0, 1, 2, 3] and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # no point sampled twice
    folders = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert folders == ["0", "1", "2", "3"]  # one folder per trial: no job wrote over another's
    for trial in study.trials:
        assert trial.value == pytest.approx(metrics(sweep / str(trial.number))["best_score"])
