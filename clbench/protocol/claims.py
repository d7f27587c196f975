"""Claims on a run's checkpoint folder: two processes never continue one run at once, and
a run whose process died (on this host, or on another whose lease expired, or before SLURM
requeued it) is taken over; what state a run is in; leftovers of killed runs.

A process that runs a run holds ``<results_dir>/checkpoints/<run_id>/claim`` (its pid, host,
start time, a heartbeat renewed every :data:`HEARTBEAT_S` seconds, its SLURM job), written
under an exclusive ``flock`` so that of processes that try at once exactly one gets it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from clbench.protocol.checkpoints import CLAIM, LOCK, META, ResumeError, delete_own_files, meta_of, read_json, \
    remove, steps
from clbench.results import records

#: a claim whose heartbeat is older than this (seconds) is taken over: its process is gone
LEASE_S = 300.0
#: how often a running process renews its claim's heartbeat (seconds)
HEARTBEAT_S = 30.0


def _slurm_job() -> Optional[dict]:
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        restart = 0
    return {"job": job, "restart": restart}


def holder(directory: Path) -> Optional[dict]:
    """Who claims ``directory``'s run: ``pid``, ``host``, ``since``, ``heartbeat`` (epoch
    seconds; None in a claim of an older clbench, ``pid@host``) and ``slurm``; None if nobody."""
    try:
        text = (directory / CLAIM).read_text().strip()
    except OSError:
        return None
    data = read_json(directory / CLAIM) if text.startswith("{") else None
    if isinstance(data, dict) and isinstance(data.get("pid"), int) and isinstance(data.get("host"), str):
        return data
    pid, _, host = text.partition("@")
    return {"pid": int(pid), "host": host, "heartbeat": None} if pid.isdigit() and host else \
        {"pid": -1, "host": "?", "heartbeat": None}


def claim_state(directory: Path) -> tuple[str, str]:
    """``(state, why)`` of ``directory``'s claim: ``free`` (none), ``mine``, ``live`` (a live
    process on this host), ``dead`` (a process of this host that is gone), ``requeued`` (an
    earlier run of this very SLURM job, which SLURM requeued), ``expired`` (another host's,
    heartbeat older than :data:`LEASE_S`) or ``held`` (another host's, fresh or without heartbeat)."""
    h = holder(directory)
    if h is None:
        return "free", ""
    pid, host, here = h["pid"], h["host"], socket.gethostname()
    who = f"pid {pid} on {'this host' if host == here else 'host ' + host}"
    if host == here:
        if pid == os.getpid():
            return "mine", ""
        return ("live", f"run {directory.name} is still running ({who})") if _alive(pid, h.get("since")) else \
            ("dead", f"run {directory.name}: its process ({who}) is gone")
    mine, theirs = _slurm_job(), h.get("slurm")
    if mine and isinstance(theirs, dict) and theirs.get("job") == mine["job"] \
            and isinstance(theirs.get("restart"), int) and mine["restart"] > theirs["restart"]:
        return "requeued", (f"run {directory.name}: taken over from {who} by SLURM job {mine['job']} requeued "
                            f"(restart {mine['restart']}; that run was restart {theirs['restart']})")
    beat = h.get("heartbeat")
    if not isinstance(beat, (int, float)):
        return "held", (f"run {directory.name} is claimed by {who} with no heartbeat (an older clbench): it cannot "
                        "be told whether it still runs; if it does not, resume_force=true takes it over")
    age = time.time() - beat
    if age > LEASE_S:
        return "expired", (f"run {directory.name}: the claim of {who} is taken over, its lease expired (last "
                           f"heartbeat {age:.0f} s ago, lease {LEASE_S:.0f} s)")
    return "held", (f"run {directory.name} is held by {who} (heartbeat {max(age, 0):.0f} s ago): it may still run "
                    f"there; if that process is dead (a node crash), resume_force=true takes it over now, else its "
                    f"lease expires in {LEASE_S - age:.0f} s")


def _alive(pid: int, since: Any) -> bool:
    """Whether process ``pid`` of this host runs and is not a later process with the same pid."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return True
    started = records.process_start(pid)
    return not (isinstance(since, (int, float)) and started is not None and started > since + 5)


def claimed_elsewhere(directory: Path) -> bool:
    """Whether another process holds ``directory``'s run, or may (another host's fresh claim)."""
    return claim_state(directory)[0] in ("live", "held")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock (``flock`` on ``.claim.lock``) around reading and writing the claim."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_claim(directory: Path, since: Optional[float] = None) -> None:
    now = time.time()
    records.write_json_atomic(directory / CLAIM, {"pid": os.getpid(), "host": socket.gethostname(),
                                                  "since": since or now, "heartbeat": now, "slurm": _slurm_job()})


def claim(directory: Path, force: bool = False) -> str:
    """Claim ``directory``'s run for this process, atomically (under a file lock, so of
    processes that try at once exactly one gets it). Refused (:class:`ResumeError`) while
    a live process of this host holds it, or another host's claim whose heartbeat is
    younger than :data:`LEASE_S` (unless ``force``: ``resume_force=true``). A claim of a
    process that is gone, an expired lease, or one of this SLURM job before it was
    requeued, is taken over. Returns a line saying what was taken over ('' if nothing)."""
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        state, why = claim_state(directory)
        if state == "live":
            raise ResumeError(f"{why}: two processes never continue one run (stop it first)")
        if state == "held" and not force:
            raise ResumeError(why)
        previous = holder(directory) if state == "held" else None
        _write_claim(directory)
    if previous is not None:
        return (f"run {directory.name}: taken over from pid {previous['pid']} on host {previous['host']} "
                "(resume_force=true)")
    return why if state in ("expired", "requeued") else ""


def _renew(directory: Path) -> bool:
    """Renew this process's heartbeat; False once the claim is no longer ours."""
    with _locked(directory):
        h = holder(directory)
        if h is None or h["pid"] != os.getpid() or h["host"] != socket.gethostname():
            return False
        _write_claim(directory, since=h.get("since"))
        return True


def release(directory: Path) -> None:
    """Drop this process's claim; a folder left with nothing of a run in it (a run that
    ended before its first checkpoint) is removed."""
    if not (directory / CLAIM).exists() and not (directory / LOCK).exists():
        return
    try:
        with _locked(directory):
            h = holder(directory)
            if h is not None and h["pid"] == os.getpid() and h["host"] == socket.gethostname():
                (directory / CLAIM).unlink()
        if not (directory / CLAIM).exists() and not (directory / META).exists() and not steps(directory):
            delete_own_files(directory)
    except OSError:
        pass


@contextlib.contextmanager
def holding(directory: Path, force: bool = False) -> Iterator[str]:
    """Hold ``directory``'s claim (:func:`claim`) while the block runs, renewing its
    heartbeat every :data:`HEARTBEAT_S` seconds from a daemon thread; yield what
    :func:`claim` says it took over."""
    note = claim(directory, force)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                if not _renew(directory):
                    return
            except OSError:
                continue

    thread = threading.Thread(target=beat, name=f"clbench-claim-{directory.name}", daemon=True)
    thread.start()
    try:
        yield note
    finally:
        stop.set()
        thread.join(timeout=10)
        release(directory)


# -- what state a run is in ------------------------------------------------------------------

def record_file(directory: Path, meta: dict) -> Optional[Path]:
    """The record of the run in ``directory``: ``meta.json``'s ``record_path``, relative to the
    results folder (the folder above ``checkpoints/``; absolute in older metas), else where
    its names put it; None if neither is a file inside the results folder."""
    root = directory.parent.parent
    tried = []
    stored = meta.get("record_path")
    if isinstance(stored, str) and stored:
        tried.append(Path(stored) if Path(stored).is_absolute() else root / stored)
    try:
        tried.append(records.path_for(root, meta.get("scenario"), meta.get("strategy"), meta["run_id"]))
    except records.RecordError:
        pass
    for path in tried:
        if path.name == f"{meta['run_id']}.json" and path.is_file() and records.inside(root, path):
            return path
    return None


def run_state(directory: Path, meta: dict) -> tuple[Optional[str], str]:
    """``(state, why)`` of the run in ``directory``: ``interrupted`` or ``failed`` (as its record
    says), ``killed`` (``running``, but its process is gone: on this host, or its claim's lease
    expired, or SLURM requeued it), ``live`` (its process runs on this host), ``held`` (another
    host's claim that may still be live), ``complete``, or None (no record)."""
    path = record_file(directory, meta)
    try:
        record = records.load(path) if path is not None else None
    except records.RecordError:
        record = None
    if record is None or record.run_id != meta["run_id"]:
        return None, f"no record of run {meta['run_id']} under {directory.parent.parent}"
    if record.status != "running":
        return record.status, f"run {record.run_id} is {record.status} (record {path})"
    state, why = claim_state(directory)
    if state in ("dead", "expired", "requeued"):
        return "killed", why
    if state in ("live", "mine"):
        return "live", why
    if state == "held":
        return "held", why
    alive = records.liveness(record)  # no claim: what the record says of its writer
    if alive == "gone":
        return "killed", f"run {record.run_id}: its process (pid {record.pid}) is gone"
    if alive == "live":
        return "live", f"run {record.run_id} is still running (pid {record.pid} on this host)"
    return "held", (f"run {record.run_id} is running on host {record.host} (pid {record.pid}) with no claim that "
                    "tells whether it still runs; if it does not (a node crash), resume_force=true takes it over")

# -- leftovers of killed runs ------------------------------------------------------------------

def clean_leftovers(results_dir: Union[str, Path]) -> list[Path]:
    """What runs killed at a bad moment left under ``results_dir`` and nobody needs, removed:
    temporary files of a record or checkpoint write, the checkpoint folder of a run whose
    record is complete (killed just before it removed it; ``keep_checkpoints=false``), and
    a folder whose run ended before its first checkpoint. Only clbench's own file names are
    touched, and nothing of a run that a live (or possibly live) process holds."""
    removed = records.clean_temp(results_dir)
    root = Path(results_dir) / "checkpoints"
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if directory.is_symlink() or not directory.is_dir() or not records.valid_run_id(directory.name):
            continue
        if claim_state(directory)[0] in ("live", "held", "mine"):
            continue
        for path in records.stale_temp_files(directory):
            path.unlink(missing_ok=True)
            removed.append(path)
        meta = meta_of(directory)
        if meta is None:
            names = {p.name for p in directory.iterdir()}
            if names <= {CLAIM, LOCK}:  # a run that ended (or was killed) before its first checkpoint
                (directory / CLAIM).unlink(missing_ok=True)
                if delete_own_files(directory):
                    removed.append(directory)
            continue
        state, _ = run_state(directory, meta)
        keep = meta.get("keep_checkpoints", (meta.get("config") or {}).get("keep_checkpoints", True))
        if state == "complete" and keep is False and remove(directory, meta["run_id"], results_dir):
            removed.append(directory)
    return removed
