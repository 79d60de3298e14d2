"""Sweep jobs in spawned processes, n_jobs at a time, one CUDA device each.

Unlike joblib's loky pool, a worker that dies (SIGKILL, segfault, out-of-memory killer) takes only its own job
down: that job's folder gets metrics.json with status "failed" and the cause, the others run on, and the sweep
report at the end lists it (and exits 1). Each job is a fresh `spawn` process: nothing of a dead worker's state
is reused, and CUDA never sees a forked parent.
"""
import copy
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cloudpickle  # the task function lives in train.py's __main__: pickled by value
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STOP_GRACE_S = 60  # after Ctrl-C, time the jobs get to record their own stop before they are terminated


@dataclass
class Job:
    idx: int
    overrides: List[str]
    config: DictConfig   # the job's composed config, hydra.runtime.output_dir set
    output_dir: Path


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    from joblib import cpu_count

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    devices = detect_devices() if launcher.devices is None else [str(d) for d in launcher.devices]
    n_jobs = _n_jobs(launcher.n_jobs, devices)
    threads = max(1, cpu_count() // max(1, min(n_jobs, len(job_overrides))))
    log.info("Launching %d jobs, %d at a time, torch threads per job: %d%s; sweep output dir: %s", len(job_overrides),
             n_jobs, threads, f", devices {','.join(devices)}" if devices else "", launcher.config.hydra.sweep.dir)
    jobs = [_prepare(launcher, initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    for job in jobs:
        log.info("\t#%d : %s", job.idx, " ".join(filter_overrides(job.overrides)))

    shared = cloudpickle.dumps((launcher.hydra_context, launcher.task_function, Singleton.get_state()))
    context = get_context("spawn")
    pool = DevicePool(devices)
    queue, running, results = list(jobs), {}, {}
    try:
        while queue or running:
            while queue and len(running) < n_jobs:
                job = queue.pop(0)
                device = pool.take()
                env = {name: str(threads) for name in THREAD_VARS}
                if device is not None:
                    env.update(CUDA_VISIBLE_DEVICES=device, TRAINLAB_ASSIGNED_DEVICE=device)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(shared, cloudpickle.dumps(job.config), env, threads,
                                                               send), name=f"trainlab-job-{job.idx}")
                process.start()
                send.close()  # the child holds the only write end: its death reads as EOF here
                running[receive] = (job, process, device)
            for receive in wait(list(running)):
                job, process, device = running.pop(receive)
                results[job.idx] = _collect(job, process, receive, device)
                pool.give_back(device)
    except BaseException as err:
        grace_s = STOP_GRACE_S if isinstance(err, KeyboardInterrupt) else 0
        _stop([process for _, process, _ in running.values()], grace_s)
        raise
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return [results[job.idx] for job in jobs]


def _n_jobs(n_jobs: Optional[int], devices: List[str]) -> int:
    if n_jobs is None:
        return len(devices) or 2
    if n_jobs < 1:
        from trainlab.config import ConfigError

        raise ConfigError("hydra.launcher.n_jobs", n_jobs, "must be at least 1",
                          "hydra.launcher.n_jobs=4, or null (one job per GPU, else 2)")
    return n_jobs


def detect_devices() -> List[str]:
    """CUDA devices to hand out: CUDA_VISIBLE_DEVICES when set, else what `nvidia-smi -L` lists (MIG instances
    by UUID), else none. No torch import: the launcher's parent stays light."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = []
        for entry in (e.strip() for e in visible.split(",")):
            if not entry or entry.startswith("-"):  # CUDA stops at the first invalid entry ("-1": no device)
                break
            devices.append(entry)
        return devices
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    mig = re.findall(r"UUID: (MIG-[^)\s]+)", listing)
    return mig or [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


class DevicePool:
    """Hands each starting job the device with the fewest running jobs, ties in round-robin order: with
    n_jobs = number of devices, every job has a device of its own."""

    def __init__(self, devices: List[str]) -> None:
        self.devices, self.load, self.next = devices, {d: 0 for d in devices}, 0

    def take(self) -> Optional[str]:
        if not self.devices:
            return None
        order = self.devices[self.next:] + self.devices[:self.next]
        device = min(order, key=self.load.__getitem__)
        self.load[device] += 1
        self.next = (self.devices.index(device) + 1) % len(self.devices)
        return device

    def give_back(self, device: Optional[str]) -> None:
        if device is not None:
            self.load[device] -= 1


def _prepare(launcher, idx: int, overrides: List[str]) -> Job:
    """The job's config as Hydra's launchers compose it, and its folder, known here so that a job whose
    process dies can still be recorded in it."""
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(config):
        config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
        config.hydra.job.num = idx
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)  # the folder keys may use ${hydra:...}
    try:
        output_dir = os.path.abspath(os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                                                  str(OmegaConf.select(config, "hydra.sweep.subdir"))))
    finally:
        HydraConfig.instance().cfg = saved
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = output_dir
    return Job(idx, overrides, config, Path(output_dir))


def _child(shared: bytes, job_config: bytes, env: Dict[str, str], threads: int, send) -> None:
    """A job in its own process: the thread limit and the device are set before torch loads."""
    os.environ.update(env)
    import pickle

    import torch

    torch.set_num_threads(threads)
    hydra_context, task_function, singleton_state = pickle.loads(shared)
    setup_globals()
    Singleton.set_state(singleton_state)
    config = pickle.loads(job_config)
    HydraConfig.instance().set_config(config)
    ret = run_job(hydra_context=hydra_context, task_function=task_function, config=config,
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    try:
        data = cloudpickle.dumps(ret)
    except Exception:  # an exception object that cannot be pickled travels as its text
        ret.return_value = RuntimeError(f"{type(ret._return_value).__name__}: {ret._return_value}")
        data = cloudpickle.dumps(ret)
    send.send_bytes(data)
    send.close()


def _collect(job: Job, process, receive, device: Optional[str]) -> JobReturn:
    try:
        data = receive.recv_bytes()
    except EOFError:  # the process ended without sending its result
        data = None
    receive.close()
    process.join(STOP_GRACE_S)
    if process.is_alive():  # result sent, but the interpreter does not exit (a stray non-daemon thread)
        log.warning("job #%d sent its result but did not exit; terminating it", job.idx)
        process.terminate()
        process.join()
    if data is not None:
        return cloudpickle.loads(data)
    return _dead_job(job, process.exitcode, device)


def _dead_job(job: Job, exitcode: Optional[int], device: Optional[str]) -> JobReturn:
    """A job whose process died: recorded as failed in its folder, returned as trainlab's recorded failures are
    (completed with NaN), so the sweep goes on to its report rather than re-raising in Hydra's sweeper."""
    from trainlab.sweep_job import record_dead_job

    if exitcode is not None and exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        error = f"worker died: killed by signal {-exitcode}{name}"
    else:
        error = f"worker died: exited with code {exitcode} before returning a result"
    log.error("job #%d (%s): %s", job.idx, " ".join(filter_overrides(job.overrides)), error)
    record_dead_job(job.output_dir, error, device)
    ret = JobReturn(overrides=job.overrides, working_dir=os.getcwd(), task_name=job.config.hydra.job.name,
                    status=JobStatus.COMPLETED)
    ret.cfg = copy.deepcopy(job.config)
    with read_write(ret.cfg), open_dict(ret.cfg):
        del ret.cfg["hydra"]
    ret.hydra_cfg = OmegaConf.masked_copy(job.config, "hydra")
    ret.return_value = math.nan
    return ret


def _stop(processes: List[Any], grace_s: float) -> None:
    """The sweep itself is stopping. Ctrl-C reaches every job too: they get grace_s to record their stop."""
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join()
