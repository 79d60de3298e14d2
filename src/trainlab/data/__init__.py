"""Data: sources that decode images to uint8 tensors, the DataModule, and batched augmentation."""
from trainlab.data.datamodule import ImageDataModule

__all__ = ["ImageDataModule"]
