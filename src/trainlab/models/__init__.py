"""Networks: the seeds' CNN, LeNet and MLP, and a wrapper for any torchvision classifier.

Every model takes `input_shape` (the shape of one input: (channels, height, width) for images) and
`num_outputs` from the data at build time, plus its own `init_args` from conf/model/<name>.yaml.
"""
from trainlab.models.seeds import MLP, LeNet, SeedCNN
from trainlab.models.vision import TorchvisionNet

__all__ = ["SeedCNN", "LeNet", "MLP", "TorchvisionNet"]
