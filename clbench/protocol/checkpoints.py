"""Experience checkpoints of a run, and finding the one to resume from.

After every experience (every matrix row) the protocol saves everything the rest of the
run depends on: the strategy's and add-on's ``state_dict`` (optimisers, buffers and
their generators included), the protocol's own generator and step monitor, the global
RNG states of torch, numpy and python, the position in a task-agnostic stream and the
record so far. A resumed run continues from there and ends with the same matrix as an
uninterrupted one.

Layout: ``<results_dir>/checkpoints/<run_id>/`` holds ``step-<k>.pt`` (written to a
temporary file and renamed, so a kill never leaves half a checkpoint) and ``meta.json``
(run id, config, record path and step: what ``resume=auto`` reads without torch).
Files hold tensors and plain data only; they load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch

from clbench import rng
from clbench.errors import UserError
from clbench.results import records

FORMAT = 1
#: config keys that say how a run is executed, not what it computes: a resume may change them
EXECUTION_KEYS = ("resume", "keep_checkpoints", "progress", "logger", "results_dir", "data_root", "num_workers")


class ResumeError(UserError, ValueError):
    """A ``resume=`` that cannot be honoured (nothing to resume, or a different config)."""


def checkpoint_dir(results_dir: Union[str, Path], run_id: str) -> Path:
    return Path(results_dir) / "checkpoints" / run_id


# -- writing and reading ----------------------------------------------------------------------

def save(directory: Path, step: int, payload: dict, meta: dict, keep_all: bool = False) -> Path:
    """Write ``payload`` as ``step-<step>.pt`` atomically (temp file, fsync, rename), then
    ``meta.json``; unless ``keep_all``, remove the checkpoints of earlier steps."""
    path = directory / f"step-{step:04d}.pt"
    with records.atomic_file(path, "wb") as f:
        torch.save({"format": FORMAT, **payload}, f)
    records.write_json_atomic(directory / "meta.json", {**meta, "step": step, "checkpoint": path.name})
    if not keep_all:
        for old in directory.glob("step-*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    return path


def load(path: Union[str, Path]) -> dict:
    """A checkpoint's payload (``weights_only=True``: tensors and plain data only)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ResumeError(f"{path}: not a clbench checkpoint of format {FORMAT}")
    return payload


def latest(directory: Path) -> Optional[Path]:
    found = sorted(directory.glob("step-*.pt"))
    return found[-1] if found else None


def remove(directory: Path) -> None:
    """Delete a finished run's checkpoint folder (what ``keep_checkpoints=false`` asks)."""
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
    try:
        directory.parent.rmdir()  # the results dir's checkpoints/ folder, once empty
    except OSError:
        pass


# -- comparing configs ------------------------------------------------------------------------

def flatten(config: Any, prefix: str = "") -> dict:
    if isinstance(config, dict):
        out: dict = {}
        for k, v in config.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: config}


def config_diff(saved: dict, current: dict) -> list[str]:
    """``key: saved -> current`` for every setting that differs, execution-only keys
    (:data:`EXECUTION_KEYS`) aside."""
    a, b = flatten(saved), flatten(current)

    def counts(key: str) -> bool:
        return key.split(".", 1)[0] not in EXECUTION_KEYS

    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if counts(k) and a.get(k, "<absent>") != b.get(k, "<absent>")]


# -- finding what to resume -------------------------------------------------------------------

def _meta(directory: Path) -> Optional[dict]:
    try:
        return json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _resumable_status(meta: dict) -> Optional[str]:
    """The run's status if it can be resumed (interrupted, failed, or running in a process
    that is gone); None if complete or still running."""
    try:
        record = records.load(meta["record_path"])
    except (records.RecordError, OSError, KeyError):
        return None
    if record.status == "running":
        return "killed" if records.liveness(record) == "gone" else None
    return record.status if record.status in ("interrupted", "failed") else None


def find(resume: str, results_dir: Union[str, Path], config: dict) -> Optional[Path]:
    """The checkpoint ``resume`` names: ``auto`` (the newest interrupted or killed run of
    exactly this config under ``results_dir``; None if there is none; a failed run is
    resumed only by name), a run id, or a path (a
    checkpoint file or a run's checkpoint folder). Raises :class:`ResumeError` naming what
    is wrong: nothing found (with the runs that are there), or a config that differs
    (with the differing keys)."""
    root = Path(results_dir) / "checkpoints"
    if resume == "auto":
        candidates = []
        for directory in root.glob("*/") if root.is_dir() else []:
            meta = _meta(directory)
            if meta and latest(directory) and not config_diff(meta.get("config", {}), config) \
                    and _resumable_status(meta) in ("interrupted", "killed") and not claimed_elsewhere(directory):
                candidates.append((meta.get("updated", ""), directory))
        return latest(max(candidates)[1]) if candidates else None
    path = Path(resume).expanduser()
    if path.is_file():
        directory = path.parent
        chosen: Optional[Path] = path
    else:
        directory = path if path.is_dir() else root / resume
        chosen = latest(directory) if directory.is_dir() else None
    if chosen is None:
        there = sorted(p.name for p in root.glob("*/") if latest(p)) if root.is_dir() else []
        raise ResumeError(f"resume={resume!r}: no checkpoint there (looked for a file, a folder and "
                          f"{root / resume}); runs with checkpoints under {root}: {', '.join(there) or 'none'}")
    meta = _meta(directory) or {}
    differs = config_diff(meta.get("config", {}), config)
    if differs:
        raise ResumeError(f"resume={resume!r}: the config differs from the checkpoint's in {len(differs)} key(s): "
                          + "; ".join(differs) + " (resume with the run's own settings, or start a new run)")
    if meta and _resumable_status(meta) is None:
        raise ResumeError(f"resume={resume!r}: run {meta.get('run_id')} is complete or still running "
                          f"(record {meta.get('record_path')})")
    return chosen


# -- claiming a run (two resumes of one run never run at once) ----------------------------------

def claim(directory: Path) -> None:
    """Mark ``directory``'s run as being continued by this process; a claim by a live
    process on this host refuses, a stale one (dead process) is taken over."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "claim"
    if claimed_elsewhere(directory):
        raise ResumeError(f"run {directory.name} is being continued by another process ({path.read_text().strip()})")
    with records.atomic_file(path) as f:
        f.write(f"{os.getpid()}@{socket.gethostname()}\n")


def release(directory: Path) -> None:
    path = directory / "claim"
    try:
        if path.read_text().strip() == f"{os.getpid()}@{socket.gethostname()}":
            path.unlink()
    except OSError:
        pass


def claimed_elsewhere(directory: Path) -> bool:
    try:
        pid, host = (directory / "claim").read_text().strip().split("@", 1)
    except (OSError, ValueError):
        return False
    if int(pid) == os.getpid() and host == socket.gethostname():
        return False
    if host != socket.gethostname():
        return True  # cannot tell: assume alive
    try:
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

# -- a session's state ------------------------------------------------------------------------

def save_session(session: Any, step: int) -> Path:
    """Everything the rest of ``session``'s run depends on, after row ``step``, into its
    checkpoint folder; the record books the seconds and bytes it took."""
    started = time.perf_counter()
    rec = session.record
    _warn_if_grown_without_structure(session)
    payload = {
        "run_id": rec.run_id, "step": step,
        "record": json.dumps(records.record_data(rec)),
        "strategy": session.strategy.state_dict(),
        "addon": session.addon.state_dict() if session.addon is not None else None,
        "session": {"generator": session.generator.get_state(), "monitor": session.monitor.state(),
                    "stream": session.stream_state},
        "rng": rng.state(),
    }
    meta = {"run_id": rec.run_id, "record_path": str(records.record_path(session.settings.results_dir, rec)),
            "config": rec.config, "strategy": rec.strategy.get("name"), "scenario": rec.scenario.get("name"),
            "seed": rec.seed, "updated": rec.updated}
    path = save(session.checkpoints, step, payload, meta, keep_all=session.settings.keep_checkpoints)
    rec.timing.setdefault("checkpoint_s", []).append(round(time.perf_counter() - started, 6))
    rec.compute["checkpoint_bytes"] = path.stat().st_size
    return path


def _warn_if_grown_without_structure(session: Any) -> None:
    """A strategy whose state gained modules since the stream began, with no
    ``structure()`` to rebuild them from, cannot be resumed from this checkpoint: say so
    (once per run; the record keeps the warning)."""
    strategy, rec = session.strategy, session.record
    if strategy.structure() is not None:
        return
    grown = sorted({k.split(".")[0] for k in set(strategy.state_dict()) - session.initial_keys})
    message = (f"strategy {rec.strategy.get('name')!r} grew modules during the stream ({', '.join(grown)}) but its "
               "structure() returns None: a resume from its checkpoints will fail; describe them in structure() "
               "and rebuild them in build_structure() (clbench check strategy=NAME tests it)")
    if grown and message not in rec.extra.get("warnings", []):
        import warnings

        warnings.warn(message, RuntimeWarning, stacklevel=2)
        rec.extra.setdefault("warnings", []).append(message)


def restore_session(session: Any, payload: dict) -> int:
    """Put the state of a checkpoint back into ``session`` (after preparation); return its step."""
    started = time.perf_counter()
    session.strategy.load_state_dict(payload["strategy"])
    session.strategy.to(session.device)
    if session.addon is not None and payload.get("addon") is not None:
        session.addon.load_state_dict(payload["addon"])
    state = payload["session"]
    session.generator.set_state(state["generator"])
    session.monitor.load_state(state["monitor"])
    session.stream_state = state.get("stream")
    rng.set_state(payload["rng"])
    seconds, _ = session.clock.take()  # preparing again is the resume's cost, not the next row's
    session.record.extra["resumed"][-1]["setup_s"] = round(sum(seconds.values()) + time.perf_counter() - started, 6)
    return int(payload["step"])
