"""Train a model: `python train.py [group=option ...] [key=value ...]` (see README.md)."""
from pathlib import Path

import hydra

from trainlab.cli import check_train, launch
from trainlab.train import main as run_task

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg):
    return run_task(cfg)


if __name__ == "__main__":
    launch(CONF, "train", main, checks=check_train)
