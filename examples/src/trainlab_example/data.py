"""scikit-learn's wine data (178 samples, 13 chemical measurements, 3 cultivars): bundled with scikit-learn,
so it works offline. trainlab splits it into train/val/test by dataset.val_fraction/test_fraction."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class Wine(Dataset):
    """Items are (x, y): x the chosen features as float32 (all 13 when `features` is null), y the cultivar's
    index into `classes`. The features are left unscaled (0.1 to 1,680): the network normalises its input."""

    def __init__(self, features: list[str] | None = None):
        from sklearn.datasets import load_wine

        data = load_wine()
        names = list(data.feature_names)
        unknown = sorted(set(features or []) - set(names))
        if unknown:
            raise ValueError(f"unknown wine features {unknown}; the features are {names}")
        columns = [names.index(f) for f in features] if features else list(range(len(names)))
        self.x = torch.as_tensor(data.data[:, columns], dtype=torch.float32)
        self.y = torch.as_tensor(data.target, dtype=torch.long)
        self.classes = [str(name) for name in data.target_names]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int):
        return self.x[index], self.y[index]
