"""Networks: the seeds' CNN, LeNet and MLP, and a wrapper for any torchvision classifier.

Every model takes `in_channels`, `input_size` and `num_outputs` from the data at build time,
plus its own `init_args` from conf/model/<name>.yaml.
"""
from trainlab.models.seeds import MLP, LeNet, SeedCNN
from trainlab.models.vision import TorchvisionNet

__all__ = ["SeedCNN", "LeNet", "MLP", "TorchvisionNet"]
