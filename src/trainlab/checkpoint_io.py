"""Checkpoint files: safe reading (weights_only loading, so no code runs from the file, and clear errors for
missing, truncated or foreign files) and atomic writing in the checkpoint's own folder."""
from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path

from trainlab.config import ConfigError

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no space, a file-size limit, a quota
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp's files are private (0600), the files it replaces were not


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL


def write_atomic(path, data) -> None:
    """Replace `path` with `data` (bytes, or a function that writes into the open binary file: no second copy
    of a large object in memory), never leaving a partial file: a temporary file beside it (same filesystem,
    so the rename is atomic), flushed and fsynced, then os.replace and an fsync of the folder so the rename
    survives a power cut. The temporary file is removed on any failure (a full disk, a signal's exception)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # the message names the file the user knows, not the temporary one
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def remove_partial_writes(folder) -> None:
    """Delete write_atomic's temporary files that a killed process left in `folder` (call only while holding
    the folder's run lock, so none of them is another process's write in progress)."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def plugin():
    """The Trainer's CheckpointIO: Lightning's torch.save, written with write_atomic. (Lightning's own writer
    commits an fsspec transaction that writes into $TMPDIR and moves the file: across filesystems that is a
    copy a kill can cut short, and a failed write leaves the temporary file in $TMPDIR.)"""
    import torch
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO  # here: this module stays light to import

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            if storage_options is not None:
                raise TypeError("storage_options is not supported by trainlab's AtomicCheckpointIO")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()  # serialised first: a write error then surfaces as the OSError it is
            torch.save(checkpoint, buffer)
            write_atomic(path, buffer.getbuffer())

    return AtomicCheckpointIO()


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
