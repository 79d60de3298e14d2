"""Re-test a checkpoint: `python evaluate.py ckpt=<run>/checkpoints/x.ckpt` (see README.md)."""
from pathlib import Path

import hydra

from trainlab.cli import launch
from trainlab.inference import evaluate, cli

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg):
    cli(evaluate, cfg)


if __name__ == "__main__":
    launch(CONF, "evaluate", main)  # its checks need the checkpoint: inference.cli() makes them
