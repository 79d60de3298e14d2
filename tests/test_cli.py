"""The command line as a user meets it (real subprocesses): a config mistake is one line on stderr and exit
status 2, with no folder made; a successful run's console holds the summary, bar and results, not the log."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import yaml
from conftest import TINY, run_cli, write_png

from trainlab.callbacks import process_start
from trainlab.config_tree import render

MISTAKES = {  # overrides -> what the one line must say
    "unknown option": (["optimizer=adamax"], ["optimizer='adamax'", "did you mean optimizer=adam"]),
    "misspelled key": (["optimzer.lr=0.1"], ["optimzer.lr='0.1'", "did you mean optimizer.lr=0.1?"]),
    "torchvision name as a model": (["model=resnet18"], ["model='resnet18'",
                                                         "model=torchvision model.init_args.name=resnet18"]),
    "bad value": (["optimizer.lr=-1"], ["optimizer.lr=-1: must be a number in (0"]),
    "bad value in a sweep": (["-m", "optimizer.lr=0.1,-1"], ["optimizer.lr=-1: must be a number in (0",
                                                            "job 1 of the sweep's 2"]),
}


def one_line_exit_2(result: subprocess.CompletedProcess, expected: list[str]) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Config error: "), result.stderr[-2000:]
    assert all(text in lines[0] for text in expected), lines[0]
    assert "+optim" not in lines[0]  # never Hydra's "use +key=value" for a typo: that adds a stray key


@pytest.mark.parametrize("case", MISTAKES)
def test_config_mistake_is_one_line_exit_2_and_no_folder(case, tmp_path):
    overrides, expected = MISTAKES[case]
    folder = "hydra.sweep.dir" if "-m" in overrides else "hydra.run.dir"
    result = run_cli("train.py", *overrides, f"{folder}={tmp_path / 'outputs' / 'x'}")
    one_line_exit_2(result, expected)
    assert not (tmp_path / "outputs").exists()


def test_run_folder_that_is_a_file_is_one_line_exit_2(tmp_path):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    result = run_cli("train.py", f"hydra.run.dir={taken}")
    one_line_exit_2(result, [f"hydra.run.dir='{taken}': cannot be a folder"])
    assert taken.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("console") / "run"
    overrides = [o for o in TINY if not o.startswith("callbacks.model_summary")]  # the summary is shown
    result = run_cli("train.py", *overrides, "logger.image_grid=false", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result


def test_successful_run_prints_summary_and_results_and_logs_the_rest(tiny_run):
    run, result = tiny_run
    console = result.stdout + result.stderr
    assert "Trainable params" in result.stdout and "trainlab results" in result.stdout
    log = (run / "train.log").read_text()
    for info in ("GPU available", "Trainer(limit_val_batches=1)", "Trainable params"):
        assert info in log
    assert "[INFO]" not in console and "INFO:" not in console and "GPU available" not in console
    assert "Tip:" not in console + log and "LeafSpec" not in console
    tree = render(yaml.safe_load((run / "config.yaml").read_text()))  # print_config: its lines repeat by nature
    assert console.count(tree) == 1
    lines = [line for line in console.replace(tree, "").splitlines() if line.strip() and not set(line) <= set("-")]
    assert len(lines) == len(set(lines)), console  # nothing printed twice


def test_evaluate_and_predict_print_one_line(tiny_run, tmp_path):
    run, _ = tiny_run
    ckpt = next((run / "checkpoints").glob("best-*.ckpt"))
    write_png(tmp_path / "in" / "0.png", 100, size=20)
    for args in (["evaluate.py", f"ckpt={ckpt}"], ["predict.py", f"ckpt={ckpt}", f"input={tmp_path / 'in'}"]):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stderr == "" and len(result.stdout.splitlines()) == 1, result.stdout + result.stderr


def test_first_step_is_timed_from_this_process_start(tiny_run):
    run, _ = tiny_run
    first = json.loads((run / "metrics.json").read_text())["first_step_seconds"]
    assert 0 < first < 300
    # The kernel's own count of this process's age (whole seconds), as `ps` reads it.
    etimes = int(subprocess.run(["ps", "-o", "etimes=", "-p", str(os.getpid())], capture_output=True,
                                text=True).stdout)
    age = time.time() - process_start()
    assert etimes - 0.05 <= age < etimes + 1.05


def test_training_into_a_run_folder_is_refused_before_hydra_writes_there(tiny_run):
    run, _ = tiny_run
    records = {p: p.stat().st_mtime_ns for p in (run / ".hydra").iterdir()}
    result = run_cli("train.py", f"hydra.run.dir={run}")
    one_line_exit_2(result, [f"paths.output_dir='{run}': already holds a run", f"resume={run}"])
    assert {p: p.stat().st_mtime_ns for p in (run / ".hydra").iterdir()} == records
