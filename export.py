"""Export a checkpoint: `python export.py ckpt=<run>/checkpoints/x.ckpt format=onnx|torchscript` (see README.md)."""
from pathlib import Path

import hydra

from trainlab.cli import launch
from trainlab.export import export
from trainlab.inference import cli

CONF = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg):
    cli(export, cfg)


if __name__ == "__main__":
    launch(CONF, "export", main)  # its checks need the checkpoint: inference.cli() makes them
