"""Seed groups in the sweep report: a real `-m seed=1,2,3 optimizer=sgd,adam` sweep read back against statistics
computed here from its jobs' metrics.json; Welch's marking, flags and the one-seed wording on written job folders;
`seeds=N` through train.py's entry point."""
from __future__ import annotations

import csv
import json
import statistics
import sys

import pytest
import yaml
from conftest import CONF, TINY, run_cli
from scipy import stats

from trainlab import report, seed_groups

SHORT = [o for o in TINY if not o.startswith("trainer.max_epochs")] + [
    "trainer.max_epochs=2", "model=mlp", "augmentation=none", "dataset.image_size=8", "logger=csv", "scheduler=step"]


def _csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds") / "multirun"
    result = run_cli("train.py", "-m", "seed=1,2,3", "optimizer=sgd,adam", *SHORT, f"hydra.sweep.dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def _expected_flags(metrics: dict) -> list[str]:
    flags = []
    if metrics["best_epoch"] == metrics["epochs"] - 1:
        flags.append("best at last epoch")
    elif metrics["best_epoch"] == 0:
        flags.append("no gain after epoch 0")
    if len({row["lr"] for row in metrics["history"]}) == 1:  # scheduler=step: x0.5 every 10 epochs, 2 run
        flags.append("lr never changed")
    return flags


def test_a_seed_sweep_is_summarised_per_configuration(sweep):
    by_optimizer: dict[str, list[dict]] = {}
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        optimizer = next(o for o in overrides if o.startswith("optimizer="))
        metrics = json.loads((job / "metrics.json").read_text())
        by_optimizer.setdefault(optimizer, []).append({**metrics, "job": job.name})
    groups = {row["configuration"]: row for row in _csv(sweep / "summary_groups.csv")}
    assert set(groups) == {"optimizer=sgd", "optimizer=adam"}
    for optimizer, jobs in by_optimizer.items():
        row = groups[optimizer]
        assert (row["n"], row["jobs"], row["seeds"]) == ("3", "3", "1,2,3")
        for name, values in (("best val/acc", [j["best_score"] for j in jobs]),
                             ("test/acc", [j["test"]["test/acc"] for j in jobs])):
            mean, std = statistics.mean(values), statistics.stdev(values)
            sem = std / len(values) ** 0.5
            low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem) if std else (mean, mean)
            assert float(row[f"{name} mean"]) == pytest.approx(mean, abs=1e-4)
            assert float(row[f"{name} std"]) == pytest.approx(std, abs=1e-4)
            assert float(row[f"{name} ci_low"]) == pytest.approx(low, abs=1e-4)
            assert float(row[f"{name} ci_high"]) == pytest.approx(high, abs=1e-4)
        expected = [f for j in jobs for f in _expected_flags(j)]
        assert row["flags"] == ", ".join(f"{f} {expected.count(f)}/3" for f in dict.fromkeys(expected))
    jobs_by_name = {j["job"]: j for jobs in by_optimizer.values() for j in jobs}
    for row in _csv(sweep / "summary.csv"):
        assert row["flags"] == ", ".join(_expected_flags(jobs_by_name[row["job"]]))
    best, other = list(groups.values())
    scores = {o: [j["best_score"] for j in jobs] for o, jobs in by_optimizer.items()}
    p = stats.ttest_ind(scores[best["configuration"]], scores[other["configuration"]], equal_var=False).pvalue
    assert best["vs best"] == "best" and float(other["p vs best"]) == pytest.approx(p, abs=1e-4)
    assert other["vs best"] == ("tied" if p >= 0.05 else "worse")
    summary = (sweep / "summary.md").read_text()
    assert "## Configurations (seed groups)" in summary and "Welch's two-sided t-test" in summary
    assert f"| optimizer=sgd | 3 | 3 | 1,2,3 | {groups['optimizer=sgd']['best val/acc mean']} ± " in summary
    assert all((sweep / name).read_bytes()[:4] == b"\x89PNG" for name in report.CHARTS)


def _job(folder, number: int, overrides: list[str], score: float | None, status: str = "ok", epochs: int = 3,
         best_epoch: int = 1, lrs: tuple = (0.1, 0.05, 0.025),
         scheduler: str | None = "torch.optim.lr_scheduler.StepLR"):
    """A job folder as a sweep job leaves it: .hydra/overrides.yaml, config.yaml, metrics.json."""
    job = folder / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), 42)
    (job / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "scheduler": {"class_path": scheduler}}))
    history = [{"epoch": e, "val/acc": (score or 0) - 0.01 * (epochs - e), "lr": lr}
               for e, lr in zip(range(epochs), lrs)]
    metrics = {"status": status, "monitor": "val/acc", "monitor_mode": "max", "epochs": epochs, "history": history}
    if status == "ok":
        metrics.update(best_score=score, best_epoch=best_epoch, test={"test/acc": score - 0.02}, seconds=1.0)
    (job / "metrics.json").write_text(json.dumps(metrics))


SCORES = {"optimizer=adam": [0.90, 0.92, 0.91], "optimizer=rmsprop": [0.89, 0.93, 0.90],
          "optimizer=sgd": [0.50, 0.53, 0.52]}


def _seed_groups(folder, *extra: tuple) -> None:
    for number, (optimizer, seed, value) in enumerate([(o, s, v) for o, values in SCORES.items()
                                                       for s, v in zip((1, 2, 3), values)]):
        _job(folder, number, [optimizer, f"seed={seed}"], value)
    for number, (overrides, score, status) in enumerate(extra, start=9):
        _job(folder, number, overrides, score, status=status)


def test_configurations_that_cannot_be_told_from_the_best_are_marked(tmp_path):
    _seed_groups(tmp_path)
    report.write_report(tmp_path)
    first = (tmp_path / "summary_groups.csv").read_bytes()
    report.write_report(tmp_path)
    assert (tmp_path / "summary_groups.csv").read_bytes() == first  # regenerates byte for byte
    rows = {r["configuration"]: r for r in _csv(tmp_path / "summary_groups.csv")}
    assert list(rows) == ["optimizer=adam", "optimizer=rmsprop", "optimizer=sgd"]
    for optimizer, verdict in (("optimizer=rmsprop", "tied"), ("optimizer=sgd", "worse")):
        p = stats.ttest_ind(SCORES[optimizer], SCORES["optimizer=adam"], equal_var=False).pvalue
        assert float(rows[optimizer]["p vs best"]) == pytest.approx(p, abs=1e-4)
        assert rows[optimizer]["vs best"] == verdict and (p >= seed_groups.ALPHA) == (verdict == "tied")
    adam = rows["optimizer=adam"]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(SCORES["optimizer=adam"]) / 3 ** 0.5
    assert float(adam["best val/acc ci_high"]) == pytest.approx(0.91 + half, abs=1e-4)
    assert adam["vs best"] == "best" and adam["p vs best"] == "" and adam["flags"] == ""
    summary = (tmp_path / "summary.md").read_text()
    low = rows["optimizer=sgd"]["best val/acc ci_low"]
    assert f"| optimizer=sgd | 3 | 3 | 1,2,3 | 0.5167 ± 0.0153 [{low}, " in summary


def test_a_best_of_one_run_leaves_the_others_untested(tmp_path):
    _seed_groups(tmp_path, (["optimizer=momentum", "seed=1"], 0.95, "ok"),
                 (["optimizer=momentum", "seed=2"], None, "failed"))
    report.write_report(tmp_path)
    rows = {r["configuration"]: r for r in _csv(tmp_path / "summary_groups.csv")}
    assert list(rows)[0] == "optimizer=momentum"
    momentum = rows["optimizer=momentum"]
    assert (momentum["vs best"], momentum["n"], momentum["jobs"], momentum["flags"]) == ("best", "1", "2", "failed 1/2")
    assert momentum["best val/acc std"] == "" and momentum["best val/acc ci_low"] == ""  # no spread from one run
    assert {rows[o]["vs best"] for o in SCORES} == {"untested (n < 2)"} and not rows["optimizer=adam"]["p vs best"]


def test_flags_of_each_job(tmp_path):
    _job(tmp_path, 0, ["seed=1"], 0.9, lrs=(0.1, 0.1, 0.1))  # a scheduler that never moved the lr
    _job(tmp_path, 1, ["seed=2"], 0.9, best_epoch=2)  # best at the last of 3 epochs
    _job(tmp_path, 2, ["seed=3"], 0.9, best_epoch=0, lrs=(0.1, 0.1, 0.1), scheduler=None)  # constant by choice
    _job(tmp_path, 3, ["seed=4"], None, status="diverged")
    flags = {r["job"]: r["flags"] for r in report.write_report(tmp_path)}
    assert flags == {"0": "lr never changed", "1": "best at last epoch", "2": "no gain after epoch 0",
                     "3": "diverged"}
    group = _csv(tmp_path / "summary_groups.csv")[0]
    assert group["configuration"] == report.ALL_JOBS and (group["n"], group["jobs"]) == ("3", "4")
    assert group["flags"] == "lr never changed 1/4, best at last epoch 1/4, no gain after epoch 0 1/4, diverged 1/4"


def test_one_seed_per_configuration_says_no_confidence_can_be_given(tmp_path):
    _job(tmp_path, 0, ["optimizer=sgd"], 0.5)
    _job(tmp_path, 1, ["optimizer=adam"], 0.9)
    (tmp_path / "summary_groups.csv").write_text("from an earlier report\n")
    report.write_report(tmp_path)
    assert seed_groups.NO_CONFIDENCE in (tmp_path / "summary.md").read_text()
    assert "## Configurations" not in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "summary_groups.csv").exists()


def test_a_job_first_run_by_a_resumed_sweep_keeps_its_overrides(tmp_path):
    # config._hydra_subdir: a job that the interrupted sweep never started has only the resumed session's records
    _job(tmp_path, 0, ["optimizer=adam"], 0.9)
    _job(tmp_path, 1, ["optimizer=sgd"], 0.5)
    (tmp_path / "1" / ".hydra").rename(tmp_path / "1" / ".hydra-resumed-20261203-101500")
    overrides = yaml.safe_load((tmp_path / "1" / ".hydra-resumed-20261203-101500" / "overrides.yaml").read_text())
    (tmp_path / "1" / ".hydra-resumed-20261203-101500" / "overrides.yaml").write_text(
        yaml.safe_dump([*overrides, f"resume={tmp_path}"]))
    rows = {r["job"]: r for r in report.write_report(tmp_path)}
    assert rows["1"]["overrides"] == "optimizer=sgd"


@pytest.mark.parametrize("argv,expanded", [
    (["-m", "seeds=3", "optimizer=sgd,adam"], ["-m", "optimizer=sgd,adam", "seed=42,43,44"]),
    (["-m", "seed=7", "seeds=2"], ["-m", "seed=7,8"]),
])
def test_seeds_shorthand_sweeps_consecutive_seeds(argv, expanded, monkeypatch, tmp_path):
    from trainlab.cli import launch

    monkeypatch.setattr("sys.argv", ["train.py", *argv, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    handed = []
    launch(CONF, "train", lambda: handed.append(sys.argv[1:]))
    assert handed == [[*expanded[:-1], f"hydra.sweep.dir={tmp_path / 'sweep'}", expanded[-1]]]


@pytest.mark.parametrize("argv,problem", [
    (["seeds=3"], "needs a multirun"), (["-m", "seeds=0"], "must be a whole number >= 1"),
    (["-m", "seeds=2", "seed=1,2"], "both choose the seeds"),
])
def test_bad_seeds_is_one_line(argv, problem, monkeypatch, capsys, tmp_path):
    from trainlab.cli import launch

    monkeypatch.setattr("sys.argv", ["train.py", *argv, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    with pytest.raises(SystemExit) as stop:
        launch(CONF, "train", lambda: pytest.fail("the pre-check let seeds through"))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("Config error: seeds=") and problem in err and err.count("\n") == 1
