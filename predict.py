"""Predict a folder of images: `python predict.py ckpt=<run>/checkpoints/x.ckpt input=<folder>` (see README.md)."""
from pathlib import Path

import hydra

from trainlab.cli import launch
from trainlab.inference import predict, cli

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg):
    cli(predict, cfg)


if __name__ == "__main__":
    launch(CONF, "predict", main)  # its checks need the checkpoint: inference.cli() makes them
