"""Bad inputs in image folders and CSVs, caught when the source is read (before any training):
unreadable image files (left out with a warning that counts them, or one clear error, by
dataset.bad_images), CSV rows with missing values, empty data sets, classes too small
to reach every split. The README's "Bad input" table lists each with its message."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from trainlab.config import ConfigError

log = logging.getLogger("trainlab")
MIN_PER_CLASS = 3  # one image each for train, validation and test


def screen_images(ds, paths: list[Path], targets: torch.Tensor) -> tuple[list[Path], torch.Tensor]:
    """The readable files and their targets; unreadable ones skipped (warned, counted) or an error."""
    bad = [i for i, path in enumerate(paths) if not _readable(path)]
    if bad and ds.bad_images == "error":
        raise ConfigError("dataset.bad_images", "error", f"{len(bad)} of {len(paths)} image files cannot be "
                          f"read (corrupt, truncated or not images; first: {paths[bad[0]]})",
                          "remove or replace those files, or dataset.bad_images=skip to leave them out")
    if bad:
        log.warning("Skipped %d of %d image files that cannot be read (dataset.bad_images=skip; first: %s)",
                    len(bad), len(paths), paths[bad[0]])
        keep = sorted(set(range(len(paths))) - set(bad))
        paths, targets = [paths[i] for i in keep], targets[keep]
    if not paths:
        raise ConfigError("dataset.root", str(ds.root), "holds no readable images",
                          "point dataset.root (and dataset.csv_file) at a data set with images")
    return paths, targets


def _readable(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()  # checks the file's structure (PNG: every chunk's CRC) without decoding pixels
        return True
    except Exception:  # PIL raises many types for bad bytes
        return False


def check_csv_rows(ds, rows: list[dict], task: str) -> None:
    """Every row names an image and a target; else one error naming the lines. (Columns, and numeric
    targets for regression, are checked with the config: config._check_csv.)"""
    if not rows:
        raise ConfigError("dataset.csv_file", str(ds.csv_file), "lists no images (no rows under the header)",
                          "add one row per image: <path>,<target>")
    for column in (ds.path_column, ds.target_column):
        missing = [n for n, row in enumerate(rows, start=2) if not (row.get(column) or "").strip()]
        if missing:
            raise ConfigError("dataset.csv_file", str(ds.csv_file), f"{len(missing)} rows have no {column!r} value "
                              f"(lines {_lines(missing)})", "fill in or remove those rows")


def warn_small_classes(classes: list[str] | None, targets: torch.Tensor) -> None:
    """A class with fewer images than splits cannot be in all of them: training runs, with a warning."""
    if not classes:
        return
    counts = torch.bincount(targets, minlength=len(classes)).tolist()
    small = [f"{name!r} ({n})" for name, n in zip(classes, counts) if n < MIN_PER_CLASS]
    if small:
        log.warning("Classes with fewer than %d images cannot appear in train, validation and test alike: %s; "
                    "add images to them or remove their folders", MIN_PER_CLASS, ", ".join(small))


def _lines(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")
