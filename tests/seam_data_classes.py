"""User data classes for tests/test_seam_data.py, named by dataset.class_path as a user's package would be:
data from an installed package (scikit-learn), no trainlab internals beyond the documented contract."""
from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from trainlab.data import Source, TensorImages


class Wine(Dataset):
    """scikit-learn's wine data: 178 items of 13 features (float64, as NumPy gives them), 3 classes."""

    def __init__(self, standardize: bool = True):
        from sklearn.datasets import load_wine

        data = load_wine()
        x = torch.from_numpy(data.data)
        self.x = (x - x.mean(0)) / x.std(0) if standardize else x
        self.y = torch.from_numpy(data.target)
        self.classes = list(data.target_names)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


class Diabetes(Dataset):
    """scikit-learn's diabetes data: 442 items of 10 features, a float target (regression)."""

    def __init__(self):
        from sklearn.datasets import load_diabetes

        data = load_diabetes()
        self.x = torch.from_numpy(data.data).float() * 20
        y = torch.from_numpy(data.target).float()
        self.y = (y - y.mean()) / y.std()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def bars(n: int = 120, size: int = 12) -> Source:
    """An image source in trainlab's uint8 contract: a bright bar whose row is the class, on dark noise."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 40, (n, 1, size, size), generator=g, dtype=torch.uint8)
    targets = torch.arange(n) % 3
    for i, label in enumerate(targets.tolist()):
        images[i, 0, 2 + 3 * label: 4 + 3 * label, :] = 250
    return Source(TensorImages(images, targets), None, ["top", "middle", "bottom"])


def float_images() -> Source:
    """Breaks the contract: float images."""
    return Source(TensorImages(torch.rand(30, 1, 8, 8), torch.arange(30) % 3), None, ["a", "b", "c"])


class WineModule(L.LightningDataModule):
    """A user's own LightningDataModule: takes batch_size (trainlab passes dataset.batch_size), sets num_classes."""

    def __init__(self, batch_size: int = 32, val_items: int = 30):
        super().__init__()
        self.batch_size, self.val_items = batch_size, val_items
        self.num_classes = 3

    def setup(self, stage: str | None = None) -> None:
        wine = Wine()
        x, y = wine.x.float(), wine.y
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
        val, train = order[: self.val_items], order[self.val_items:]
        self.train, self.val = TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=64)

    def test_dataloader(self):
        return DataLoader(self.val, batch_size=64)


class BrokenItems(Wine):
    """Its items fail to load: the error is one line naming dataset.class_path."""

    def __getitem__(self, i: int):
        raise OSError(f"item {i} is on a disk that is gone")
