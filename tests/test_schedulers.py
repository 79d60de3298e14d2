"""Each scheduler's learning rate, read back from the run's TensorBoard event file, follows its formula."""
from __future__ import annotations

import math

import pytest
from tensorboard.backend.event_processing import event_accumulator

from trainlab.train import run

LR = 0.1
EPOCHS = 8
SHORT = [f"trainer.max_epochs={EPOCHS}", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.log_every_n_steps=1", "test_after_fit=false", "optimizer=sgd", f"optimizer.lr={LR}",
         "logger.image_grid=false"]


def scalars(run_dir, tag) -> list[float]:
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return [e.value for e in sorted(acc.Scalars(tag), key=lambda e: e.step)]


CASES = {
    "none": ([], lambda e: LR),
    "step": (["scheduler.init_args.step_size=3", "scheduler.init_args.gamma=0.5"], lambda e: LR * 0.5 ** (e // 3)),
    "multistep": (["scheduler.init_args.milestones=[2,5]"], lambda e: LR * 0.1 ** ((e >= 2) + (e >= 5))),
    "constant": (["scheduler.init_args.factor=0.5", "scheduler.init_args.total_iters=3"],
                 lambda e: LR * (0.5 if e < 3 else 1.0)),
    "linear": (["scheduler.init_args.start_factor=0.5", "scheduler.init_args.total_iters=4"],
               lambda e: LR * (0.5 + 0.5 * min(e, 4) / 4)),
    "exponential": ([], lambda e: LR * 0.9 ** e),
    "time_decay": ([], lambda e: LR / (1 + 0.5 * e)),
    # lr ~ 0 keeps val/loss constant: no epoch improves, so the lr is cut by `factor` once
    # `patience` further epochs have passed without improvement, and again `patience + 1` later.
    "plateau": (["optimizer.lr=1e-9", "scheduler.init_args.patience=2", "scheduler.init_args.factor=0.5",
                 "scheduler.init_args.eps=0"],  # eps: torch skips lr changes smaller than eps
                lambda e: 1e-9 * 0.5 ** (max(e - 1, 0) // 3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_epoch_schedule_follows_formula(name, cfg_factory, tmp_path):
    overrides, formula = CASES[name]
    run(cfg_factory(*SHORT, f"scheduler={name}", *overrides, tiny=False))
    lrs = scalars(tmp_path / "run", "lr")
    assert len(lrs) == EPOCHS
    expected = [formula(e) for e in range(EPOCHS)]
    assert lrs == pytest.approx(expected, rel=1e-5), f"{name}: {lrs} != {expected}"


def test_cosine_steps_per_batch_to_eta_min(cfg_factory, tmp_path):
    run(cfg_factory(*SHORT, "scheduler=cosine", "scheduler.init_args.eta_min=0.001", tiny=False))
    lrs = scalars(tmp_path / "run", "lr_step")
    total = EPOCHS * 2  # T_max = the trainer's total optimizer steps, not a YAML value
    assert len(lrs) == total
    assert lrs == pytest.approx([0.001 + (LR - 0.001) * (1 + math.cos(math.pi * t / total)) / 2
                                 for t in range(total)], rel=1e-5)


def test_onecycle_rises_to_max_lr_then_anneals(cfg_factory, tmp_path):
    run(cfg_factory(*SHORT, "scheduler=onecycle", tiny=False))
    lrs = scalars(tmp_path / "run", "lr_step")
    assert lrs[0] == pytest.approx(LR / 25)  # max_lr = optimizer.lr, divided by div_factor
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(LR, rel=0.05) and 0 < peak < len(lrs) - 1
    assert lrs[-1] < lrs[0]


@pytest.mark.parametrize("name", ["none", "step", "plateau"])
def test_warmup_ramps_linearly_with_any_scheduler(name, cfg_factory, tmp_path):
    run(cfg_factory(*SHORT, f"scheduler={name}", "scheduler.warmup_steps=4", "trainer.max_epochs=3", tiny=False))
    lrs = scalars(tmp_path / "run", "lr_step")
    assert lrs[:5] == pytest.approx([LR * k / 4 for k in (1, 2, 3, 4)] + [LR], rel=1e-6)
