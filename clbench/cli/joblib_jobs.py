"""Joblib sweeps in which one killed job costs only that job.

Hydra's joblib launcher runs every job in one loky pool: a worker killed by a signal
(``kill -9``, the OOM killer) breaks the pool, the sweep ends in a ``TerminatedWorkerError``
traceback, the jobs running beside it are killed and the ones not started never run.
:func:`launch` keeps the launcher's settings (``hydra.launcher.n_jobs``) but gives each job
a loky pool of its own (one worker process), ``n_jobs`` of them at a time: a job whose
process dies is reported ``lost`` (its marker, hence the sweep summary and exit status 1),
its record is marked ``interrupted`` (``resume=auto`` continues it), and the others go on.

Hydra instantiates launchers only from the ``hydra_plugins`` package, so this is installed
into the plugin's class (:func:`install`) by ``clbench.cli.sweep.SweepSummary`` when a sweep
with ``hydra/launcher=joblib`` starts.
"""
from __future__ import annotations

import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

log = logging.getLogger(__name__)

#: the file each sweep job leaves in its job folder (overrides, exit status, record); ``clbench.cli.sweep`` reads it
MARKER = "clbench_job.json"
#: ``_target_`` of Hydra's joblib launcher
TARGET = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def install() -> bool:
    """Make Hydra's joblib launcher launch through :func:`launch`; False where it is not installed."""
    try:
        from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
    except ImportError:
        return False

    def isolated(self: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        return launch(self, job_overrides, initial_job_idx)

    isolated.__doc__ = launch.__doc__
    JoblibLauncher.launch = isolated  # type: ignore[method-assign]
    return True


def n_workers(n_jobs: Any, total: int) -> int:
    """joblib's meaning of ``n_jobs`` (-1: every CPU, -2: all but one, ...), at most ``total``."""
    cpus = os.cpu_count() or 1
    n = int(n_jobs) if n_jobs is not None else 1
    if n < 0:
        n = cpus + 1 + n
    return max(1, min(n, total))


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
    """Run each job in a process of its own, ``n_jobs`` at a time; a job whose process is
    killed returns exit status 1 and is marked lost instead of ending the sweep."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import configure_log, filter_overrides, setup_globals
    from hydra_plugins.hydra_joblib_launcher._core import execute_job
    from joblib.externals.loky import ProcessPoolExecutor
    from joblib.externals.loky.process_executor import BrokenProcessPool

    setup_globals()
    assert launcher.config is not None and launcher.task_function is not None and launcher.hydra_context is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    workers = n_workers(launcher.joblib.get("n_jobs"), len(job_overrides))
    log.info(f"launching {len(job_overrides)} jobs, {workers} at a time, each in a process of its own: {sweep_dir}")
    for idx, overrides in enumerate(job_overrides):
        log.info(f"\t#{initial_job_idx + idx} : {' '.join(filter_overrides(overrides))}")
    state = Singleton.get_state()

    def one(idx: int, overrides: Sequence[str]) -> Any:
        with ProcessPoolExecutor(max_workers=1) as pool:  # loky pickles the task function with cloudpickle
            try:
                return pool.submit(execute_job, idx, overrides, launcher.hydra_context, launcher.config,
                                   launcher.task_function, state).result()
            except BrokenProcessPool as err:  # TerminatedWorkerError: the job's process died
                return lost(launcher, idx, overrides, err)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clbench-job") as threads:
        futures = [threads.submit(one, initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        return [f.result() for f in futures]


def _signal_of(err: BaseException) -> tuple[str, int]:
    """The name and exit status (128 + signal) of the signal loky says killed the worker."""
    match = re.search(r"\{?(SIG[A-Z0-9]+)\((-?\d+)\)", str(err))
    if match:
        return match[1], 128 + abs(int(match[2]))
    return "an unknown cause", 1


def lost(launcher: Any, idx: int, overrides: Sequence[str], err: BaseException) -> Any:
    """The return of a job whose process died: exit status 128 + signal (the job's marker
    says ``lost``; the record it was writing is marked ``interrupted``)."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import open_dict

    from clbench.results.records import write_json_atomic

    name, code = _signal_of(err)
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(config):
        config.hydra.job.num = idx
        config.hydra.job.id = f"{config.hydra.job.name}_{idx}"
    out = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
    started = _read(out / MARKER)
    record = mark_interrupted(started, name) if started else None
    reason = f"its process was killed ({name})" if name.startswith("SIG") else "its process died"
    log.error(f"job #{idx} ({' '.join(overrides)}): {reason}; the other jobs go on")
    write_json_atomic(out / MARKER, {"overrides": list(overrides), "exit": code, "record": record, "status": "lost",
                                     "reason": reason, "skipped": None})
    return JobReturn(overrides=list(overrides), cfg=None, hydra_cfg=None, working_dir=str(out),
                     task_name=str(config.hydra.job.name), status=JobStatus.COMPLETED, _return_value=code)


def _read(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def mark_interrupted(started: dict, signal_name: str) -> Optional[str]:
    """Find the record the lost job was writing (``running``, by the pid its start marker
    names, under its results folder) and mark it ``interrupted``; return its path."""
    from clbench.results import records

    pid, results_dir = started.get("pid"), started.get("results_dir")
    if not isinstance(pid, int) or not isinstance(results_dir, str):
        return None
    for path in records.find(results_dir):
        try:
            record = records.load(path)
        except records.RecordError:
            continue
        if record.status == "running" and record.pid == pid and records.liveness(record) == "gone":
            record.status = "interrupted"
            record.error = f"its process was killed ({signal_name}) during a sweep; resume=auto continues it"
            try:
                records.save(record, results_dir)
            except OSError:
                pass
            return str(path.resolve())
    return None

