"""Epoch metrics accumulated from per-step sums equal the textbook values over the whole epoch."""
from __future__ import annotations

import torch
from sklearn.metrics import mean_absolute_error, r2_score, top_k_accuracy_score

from trainlab.module import EpochStats


def test_classification_sums_match_sklearn():
    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(100, 5, generator=gen), torch.randint(0, 5, (100,), generator=gen)
    stats = EpochStats("classification", top_k=2)
    for chunk in range(0, 100, 32):  # uneven last batch
        out, t = logits[chunk:chunk + 32], y[chunk:chunk + 32]
        stats.update(out, t, torch.nn.functional.cross_entropy(out, t))
    m = stats.compute(lambda t: t)
    assert abs(m["acc"].item() - (logits.argmax(1) == y).float().mean().item()) < 1e-6
    assert abs(m["top2"].item() - top_k_accuracy_score(y, logits, k=2, labels=range(5))) < 1e-6
    assert abs(m["loss"].item() - torch.nn.functional.cross_entropy(logits, y).item()) < 1e-5
    assert stats.loss_sum is None and stats.count == 0  # reset for the next epoch


def test_regression_sums_match_sklearn():
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(90, generator=gen) * 10
    pred = y + torch.randn(90, generator=gen)
    stats = EpochStats("regression", top_k=0)
    for chunk in range(0, 90, 25):
        stats.update(pred[chunk:chunk + 25], y[chunk:chunk + 25], torch.nn.functional.mse_loss(pred[chunk:chunk + 25], y[chunk:chunk + 25]))
    m = stats.compute(lambda t: t)
    assert abs(m["mae"].item() - mean_absolute_error(y, pred)) < 1e-5
    assert abs(m["r2"].item() - r2_score(y, pred)) < 1e-5
    assert abs(m["loss"].item() - torch.nn.functional.mse_loss(pred, y).item()) < 1e-5
