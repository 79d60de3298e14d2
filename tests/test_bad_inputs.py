"""Bad inputs of README "Bad input": each gets its message (one ConfigError before training, or a warning
and a run that goes on), tried on real files through real runs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from conftest import write_png
from trainlab.config import ConfigError
from trainlab.train import run

FOLDER = ["dataset=image_folder", "dataset.image_size=16", "dataset.in_memory=true", "dataset.num_workers=0",
          "augmentation.crop_size=null", "model=mlp", "top_k=0", "logger.image_grid=false"]


def corrupt_files(root):
    (root / "class_0" / "garbage.png").write_bytes(b"this is no image")
    good = (root / "class_1" / "0.png").read_bytes()
    (root / "class_1" / "truncated.png").write_bytes(good[: len(good) // 2])


def test_corrupt_images_are_skipped_with_a_count(image_folder, cfg_factory, caplog):
    corrupt_files(image_folder)
    with caplog.at_level(logging.WARNING, logger="trainlab"):
        metrics = run(cfg_factory(*FOLDER, f"dataset.root={image_folder}"))
    assert metrics["status"] == "ok"
    assert "Skipped 2 of 26 image files that cannot be read" in caplog.text
    assert json.loads((Path(metrics["run_dir"]) / "metrics.json").read_text())["status"] == "ok"


def test_corrupt_images_are_an_error_when_asked(image_folder, cfg_factory):
    corrupt_files(image_folder)
    with pytest.raises(ConfigError, match=r"2 of 26 image files cannot be read .*garbage.png") as err:
        run(cfg_factory(*FOLDER, f"dataset.root={image_folder}", "dataset.bad_images=error"))
    assert err.value.key == "dataset.bad_images"


def test_bad_images_switch_is_checked(image_folder, cfg_factory):
    with pytest.raises(ConfigError, match="must be one of skip, error"):
        run(cfg_factory(*FOLDER, f"dataset.root={image_folder}", "dataset.bad_images=ignore"))


def test_empty_datasets(tmp_path, cfg_factory):
    (tmp_path / "empty" / "class_0").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no images in class sub-folders"):
        run(cfg_factory(*FOLDER, f"dataset.root={tmp_path / 'empty'}", name="run1"))
    (tmp_path / "broken" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "a" / "x.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds no readable images"):
        run(cfg_factory(*FOLDER, f"dataset.root={tmp_path / 'broken'}", name="run2"))
    header_only = tmp_path / "header.csv"
    header_only.write_text("path,score\n")
    with pytest.raises(ConfigError, match=r"lists no images \(no rows under the header\)"):
        run(cfg_factory("dataset=image_csv", f"dataset.root={tmp_path}", f"dataset.csv_file={header_only}",
                        "dataset.target_column=score", "task=regression", name="run3"))


def test_csv_with_missing_values(image_csv, cfg_factory):
    root, csv_file = image_csv
    lines = csv_file.read_text().splitlines()
    lines[3] = "img_2.png,,dark"      # line 4: no score
    lines[6] = ",1.0,dark"            # line 7: no path
    csv_file.write_text("\n".join(lines) + "\n")
    base = ["dataset=image_csv", f"dataset.root={root}", f"dataset.csv_file={csv_file}", "dataset.image_size=16",
            "dataset.num_workers=0", "augmentation.crop_size=null"]
    with pytest.raises(ConfigError, match=r"1 rows have no 'path' value \(lines 7\)"):
        run(cfg_factory(*base, "dataset.target_column=label", "top_k=0", name="run4"))
    lines[6] = "img_5.png,1.0,"       # line 7: no label
    csv_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"1 rows have no 'label' value \(lines 7\)"):
        run(cfg_factory(*base, "dataset.target_column=label", "top_k=0", name="run5"))
    with pytest.raises(ConfigError, match=r"holds '' on line 4 .* not a number"):  # regression: checked with the config
        run(cfg_factory(*base, "dataset.target_column=score", "task=regression", name="run6"))


def test_class_folder_with_one_image_warns_and_trains(image_folder, cfg_factory, caplog):
    write_png(image_folder / "lonely" / "0.png", 90)
    with caplog.at_level(logging.WARNING, logger="trainlab"):
        metrics = run(cfg_factory(*FOLDER, f"dataset.root={image_folder}"))
    assert metrics["status"] == "ok"
    assert "fewer than 3 images cannot appear in train, validation and test alike: 'lonely' (1)" in caplog.text


def test_image_damaged_past_its_headers_is_a_clear_error(image_folder, cfg_factory):
    from PIL import Image

    write_png(image_folder / "big.png", 128, size=64)
    jpeg = image_folder / "class_0" / "cut.jpg"
    Image.open(image_folder / "big.png").save(jpeg)
    (image_folder / "big.png").unlink()
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])  # headers intact (verify passes), pixel data cut
    with pytest.raises(ConfigError, match=r"cut.jpg'?: cannot be decoded as an image \(Image is incomplete or truncated\)"):
        run(cfg_factory(*FOLDER, f"dataset.root={image_folder}"))
