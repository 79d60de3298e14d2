"""Knowledge distillation as a training step (`module=distill`): TrainModule with a teacher term in train_step.

The teacher is a finished trainlab run (or one of its checkpoints): its network is rebuilt from the run's
config.yaml (read as data, under the trust rules of trust.py) and loaded with its weights when fitting starts.
It is kept out of the student's state_dict, so the student's checkpoints, evaluate.py and predict.py hold and
need the student only.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.nn import functional as F

from trainlab.config import ConfigError
from trainlab.module import TrainModule

KEY = "module.init_args.teacher"


def teacher_files(teacher: str) -> tuple[Path, Path]:
    """The teacher's config.yaml and checkpoint: <run>/config.yaml with the run's best checkpoint (else its
    last.ckpt), or <run>/checkpoints/<name>.ckpt with its run's config.yaml."""
    path = Path(str(teacher))
    if path.is_file():
        run, ckpt = path.parent.parent, path
    else:
        run, ckpt = path, path / "checkpoints" / "last.ckpt"
        metrics = path / "metrics.json"
        if metrics.is_file():
            best = json.loads(metrics.read_text()).get("best_checkpoint")
            ckpt = Path(best) if best and Path(best).is_file() else ckpt
    stored = run / "config.yaml"
    if not (stored.is_file() and ckpt.is_file()):
        raise ConfigError(KEY, str(teacher), "is not a trainlab run folder with a checkpoint, nor a checkpoint "
                          "inside one", f"{KEY}=<run folder> (a finished run of the same data set)")
    return stored, ckpt


class DistillModule(TrainModule):
    """Loss = (1 - alpha) * cross-entropy(labels) + alpha * temperature^2 * KL(teacher || student), both
    softened by the temperature (Hinton et al. 2015). Validation and test score the student alone."""

    def __init__(self, *args, teacher: str, alpha: float = 0.5, temperature: float = 4.0, **kwargs):
        super().__init__(*args, **kwargs)
        if self.task != "classification":
            raise ConfigError("module.class_path", "trainlab.distill.DistillModule",
                              "distils class probabilities, and task=regression has none",
                              "task=classification, or module=default")
        if not 0 <= alpha <= 1:
            raise ConfigError("module.init_args.alpha", alpha, "must be in [0, 1]", "module.init_args.alpha=0.5")
        if not temperature > 0:
            raise ConfigError("module.init_args.temperature", temperature, "must be > 0",
                              "module.init_args.temperature=4.0")
        from trainlab.trust import load_stored_config

        stored, self.teacher_ckpt = teacher_files(teacher)
        self.teacher_model = load_stored_config(stored).model  # trusted class paths only, checked here
        self.alpha, self.temperature = alpha, temperature
        self._teacher = None  # built in setup()

    def setup(self, stage: str) -> None:
        if stage != "fit" or self._teacher is not None:
            return
        from omegaconf import OmegaConf

        from trainlab import checkpoint_io
        from trainlab.seams import build_network

        shape, outputs = tuple(self.trainer.datamodule.input_shape), self.hparams.num_outputs
        net = build_network(OmegaConf.to_container(self.teacher_model), shape, outputs)
        weights = checkpoint_io.load(self.teacher_ckpt)["state_dict"]
        try:
            net.load_state_dict({k[len("net."):]: v for k, v in weights.items() if k.startswith("net.")})
        except RuntimeError as err:
            raise ConfigError(KEY, str(self.teacher_ckpt), f"does not fit this data's input shape {shape} and "
                              f"{outputs} outputs ({str(err).splitlines()[0][:160]})",
                              f"{KEY}=<a run trained on the same data set>") from None
        # In __dict__, not a submodule (nn.Module's setattr would register it): out of state_dict and checkpoints.
        self.__dict__["_teacher"] = net.requires_grad_(False).eval()

    def on_fit_start(self) -> None:
        self._teacher.to(self.device)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(x)
        with torch.no_grad():
            soft = self._teacher(x)
        t = self.temperature
        kd = F.kl_div(F.log_softmax(out / t, 1), F.log_softmax(soft / t, 1), reduction="batchmean", log_target=True)
        return out, (1 - self.alpha) * self.compute_loss(out, y) + self.alpha * t * t * kd
