"""Shared fixtures: real Hydra composition of conf/, tiny-run overrides, data files in real formats."""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

import trainlab.config  # noqa: F401  (registers the config resolvers)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# One batch of fit, validation and test, no progress bar: what "a real Trainer runs one batch" means. No figures
# (~1 s a run): tests/test_figures_tune_export.py turns them on.
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar.enabled=false",
    "callbacks.model_summary.max_depth=0",
    "figures=false",
]


@pytest.fixture(autouse=True, scope="session")
def _image_cache_dir(tmp_path_factory):
    """paths.cache_dir of every test (and its subprocesses) in a temporary folder, not the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINLAB_CACHE_DIR", str(tmp_path_factory.mktemp("image_cache")))
        yield


def make_cfg(overrides: list[str], run_dir: Path):
    """Compose conf/train.yaml as `python train.py <overrides>` would, writing into run_dir."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"])


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, tiny: bool = True, name: str = "run"):
        return make_cfg([*(TINY if tiny else []), *overrides], tmp_path / name)

    return factory


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python train.py ...` (or another root script) in a subprocess, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def finished_run(tmp_path_factory, name: str, *args: str) -> Path:
    """A run of `python train.py <args>` that must end ok (module-scoped fixtures compare against it)."""
    run_dir = tmp_path_factory.mktemp(name) / "run"
    result = run_cli("train.py", *args, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


# ---------------------------------------------------------------- data files in real formats
def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (MNIST's): magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dims, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """IDX files in <root>/<folder>/raw as torchvision's MNIST and FashionMNIST read them offline."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, label in enumerate(labels):  # a class-dependent bright bar, so there is something to learn
            images[i, 2 + 2 * label: 5 + 2 * label, 4:24] = 250
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar10_like(root: Path, n_per_batch: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's python-pickle batches in <root>/cifar-10-batches-py, as the real download unpacks them."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 255, size=(n_per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [i % 10 for i in range(n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return folder


def write_png(path: Path, value: int, size: int = 16, rgb: bool = True, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if rgb else (size, size)
    pixels = np.clip(rng.normal(value, 20, size=shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """<root>/<class>/<n>.png for 3 classes of distinct brightness."""
    root = tmp_path / "images"
    for c, value in enumerate((40, 128, 215)):
        for i in range(8):
            write_png(root / f"class_{c}" / f"{i}.png", value, seed=c * 100 + i)
    return root


@pytest.fixture
def image_csv(tmp_path) -> tuple[Path, Path]:
    """PNGs plus a CSV of path,score where the score is the image's brightness (a learnable regression)."""
    root = tmp_path / "csv_images"
    lines = ["path,score,label"]
    for i in range(24):
        value = 20 + 9 * i
        write_png(root / f"img_{i}.png", value, seed=i)
        lines.append(f"img_{i}.png,{value / 25.5:.3f},{'bright' if value > 128 else 'dark'}")
    csv_file = tmp_path / "scores.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    return root, csv_file
