"""Data: sources that decode images to uint8 tensors, the DataModule, and batched augmentation.

`Source` and `TensorImages` are the contract of a user's image source (README "Bring your own data")."""
from trainlab.data.datamodule import ImageDataModule
from trainlab.data.sources import Source, TensorImages

__all__ = ["ImageDataModule", "Source", "TensorImages"]
