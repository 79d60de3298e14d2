"""evaluate.py and predict.py on a real tiny run: the re-test reproduces the run's test metrics exactly,
predictions come one row per image, outputs never overwrite anything."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF, TINY, run_cli, write_png
from trainlab.config import ConfigError
from trainlab.inference import evaluate, predict


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("inference") / "run"
    proc = run_cli("train.py", *TINY, "trainer.limit_train_batches=2", "logger.image_grid=false",
                   f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def best(run: Path) -> Path:
    return next((run / "checkpoints").glob("best-*.ckpt"))


def compose_cfg(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def test_evaluate_reproduces_the_runs_test_metrics(run_dir):
    metrics_before = (run_dir / "metrics.json").read_text()
    proc = run_cli("evaluate.py", f"ckpt={best(run_dir)}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = list(run_dir.glob("evaluate-*.json"))
    assert len(written) == 1
    result = json.loads(written[0].read_text())
    assert result["test"] == json.loads(metrics_before)["test"]  # exactly: same split, stats, weights
    assert set(result["test"]) == {"test/loss", "test/acc", "test/top2"}
    assert (run_dir / "metrics.json").read_text() == metrics_before


def test_predict_writes_one_row_per_image(run_dir, tmp_path):
    for i in range(5):
        write_png(tmp_path / "in" / ("sub" if i == 4 else "") / f"{i}.png", 40 * i, size=20, rgb=i % 2 == 0, seed=i)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    out = predict(compose_cfg("predict", f"ckpt={best(run_dir)}", f"input={tmp_path / 'in'}"))
    assert out.parent == run_dir and out.name.startswith("predictions-")
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == ["0.png", "1.png", "2.png", "3.png", "sub/4.png"]
    assert all(r["class"] in [str(c) for c in range(10)] and 0.1 <= float(r["probability"]) <= 1 for r in rows)
    again = predict(compose_cfg("predict", f"ckpt={best(run_dir)}", f"input={tmp_path / 'in'}"))
    assert again != out and out.is_file()  # a second call in the same second gets its own file


def test_outputs_and_checkpoints_are_checked_first(run_dir, tmp_path):
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    with pytest.raises(ConfigError, match="never overwritten"):
        evaluate(compose_cfg("evaluate", f"ckpt={best(run_dir)}", f"output={taken}"))
    assert taken.read_text() == "{}"
    with pytest.raises(ConfigError, match="no run config beside it"):
        evaluate(compose_cfg("evaluate", f"ckpt={tmp_path / 'x.ckpt'}"))
    corrupt = tmp_path / "r" / "checkpoints" / "bad.ckpt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(best(run_dir).read_bytes()[:500])
    (tmp_path / "r" / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="truncated, corrupt"):
        evaluate(compose_cfg("evaluate", f"ckpt={corrupt}"))
    with pytest.raises(ConfigError, match="holds no images"):
        predict(compose_cfg("predict", f"ckpt={best(run_dir)}", f"input={tmp_path / 'r'}"))
    (tmp_path / "r" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="input='.*broken.png': cannot be decoded as an image"):
        predict(compose_cfg("predict", f"ckpt={best(run_dir)}", f"input={tmp_path / 'r'}"))
