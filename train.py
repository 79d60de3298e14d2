"""Train a model: `python train.py [group=option ...] [key=value ...]` (see README.md)."""
import hydra

from trainlab.train import main as run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg):
    return run_task(cfg)


if __name__ == "__main__":
    main()
