"""One training process per run folder: an exclusive flock on <run folder>/.trainlab.lock, held until the
process ends (the OS releases it when the process dies, however it dies). Two `resume=` of one run at once
would otherwise both write its checkpoints and metrics."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from trainlab.config import ConfigError
from trainlab.distributed import launched_as_rank_zero

LOCK_FILE = ".trainlab.lock"
_held: dict[Path, int] = {}  # run folder -> open descriptor: the lock lives as long as it is open


def hold(run_dir: Path, key: str = "resume") -> None:
    """Take the run folder's lock, or raise one ConfigError naming the process that holds it. DDP ranks > 0
    join rank 0's folder on purpose and take nothing."""
    run_dir = Path(run_dir).resolve()
    if not launched_as_rank_zero() or run_dir in _held:
        return
    for done in list(_held):  # a process trains one folder at a time (a sweep's jobs one after another)
        os.close(_held.pop(done))
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(key, str(run_dir), f"another process (pid {holder}) is training this run folder",
                          "wait for it to end (or stop it), then run the same command again") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[run_dir] = fd
