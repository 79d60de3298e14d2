"""notebooks/tutorial.ipynb (seed 000 as a notebook) executes from its own folder, as `jupyter nbconvert --execute`
runs it: two short runs, their TensorBoard event files read back and plotted."""
from __future__ import annotations

import json
import os
import re

import nbclient
import nbformat
import pytest

from conftest import ROOT

SHORT = "trainer.max_epochs=2 trainer.limit_train_batches=3 trainer.limit_test_batches=1"


def test_tutorial_trains_reads_its_event_files_and_compares(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.setenv("TUTORIAL_OVERRIDES", SHORT)
    monkeypatch.delenv("TRAINLAB_ROOT", raising=False)  # found from the notebook's folder
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(ROOT / "notebooks" / "tutorial.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the curves, then both runs'
    for name in ("adam", "sgd_cosine"):  # the printed curve (from the event files) is the run's own history
        printed = re.search(rf"^{name}: val/acc per epoch \[(.*?)\], best ([\d.]+), test/acc ([\d.]+)$", text, re.M)
        assert printed, text[-2000:]
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        from_events = [float(v) for v in printed.group(1).split(", ")]
        assert from_events == pytest.approx([row["val/acc"] for row in metrics["history"]], abs=1e-4)
        assert float(printed.group(3)) == pytest.approx(metrics["test"]["test/acc"], abs=1e-4)
        assert metrics["epochs"] == 2 and list(tmp_path.joinpath(name).glob("events.out.tfevents.*"))
