"""Reading checkpoints safely: weights_only loading (no code runs from the file) and clear errors for
missing, truncated or foreign files. Writing is Lightning's: temporary file, then rename."""
from __future__ import annotations

from pathlib import Path

from trainlab.config import ConfigError


def load(path, key: str = "ckpt") -> dict:
    """The checkpoint's dict, or one ConfigError that says what is wrong with the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(key, str(path), "no such checkpoint file", "give the path of a .ckpt file "
                          "(a run's checkpoints/last.ckpt or best-epochNNN.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad bytes (RuntimeError, EOFError, UnpicklingError)
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ConfigError(key, str(path), f"cannot be read as a checkpoint: truncated, corrupt or not a "
                          f"safe (weights-only) torch file ({first})",
                          "use another checkpoint of the run (checkpoints/best-*.ckpt) or retrain") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
        raise ConfigError(key, str(path), "is not a trainlab/Lightning checkpoint (no state_dict)",
                          "give a .ckpt written by `python train.py` (in <run folder>/checkpoints/)")
    return ckpt
