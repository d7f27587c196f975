"""Experience checkpoints of a run: their files, their format, and a session's state.

After every experience (every matrix row) the protocol saves everything the rest of the
run depends on: the strategy's and add-on's ``state_dict`` (optimisers, buffers and
their generators included), the protocol's own generator and step monitor, the global
RNG states of torch, numpy and python, the position in a task-agnostic stream and the
record so far. A resumed run continues from there and ends with the same matrix as an
uninterrupted one.

Layout: ``<results_dir>/checkpoints/<run_id>/`` holds ``step-<k>.pt`` (temp file, fsync,
rename: a kill never leaves half a checkpoint), ``meta.json`` (run id, config, the record's
path relative to the results folder, step: what ``resume=auto`` reads without torch) and,
while a process runs it, ``claim`` (:mod:`clbench.protocol.claims`). Files hold tensors
and plain data only (``torch.load(weights_only=True)``). A run id is checked
(:data:`clbench.results.records.RUN_ID`) wherever it enters, and only a folder that this
run created is ever deleted (:func:`remove`). Which checkpoint a ``resume=`` means:
:mod:`clbench.protocol.resuming`.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch

from clbench import rng
from clbench.errors import UserError
from clbench.protocol.memory_format import to_memory_format
from clbench.results import records

FORMAT = 1
#: config keys that say how a run is executed, not what it computes: a resume may change them
EXECUTION_KEYS = ("resume", "resume_force", "keep_checkpoints", "progress", "logger", "results_dir", "data_root",
                  "num_workers")
META, CLAIM, LOCK = "meta.json", "claim", ".claim.lock"
STEP = re.compile(r"step-(\d{4,})\.pt")
#: a damaged checkpoint is renamed to ``<name>`` + this, so that ``resume=auto`` never picks it again
DAMAGED = ".damaged"

class ResumeError(UserError, ValueError):
    """A ``resume=`` that cannot be honoured (nothing to resume, or a different config)."""


class DamagedCheckpointError(ResumeError):
    """A checkpoint file that cannot be read, or holds what no clbench checkpoint holds."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint {path} is damaged or not a clbench checkpoint ({reason})")
        self.path, self.reason = path, reason


def checkpoint_dir(results_dir: Union[str, Path], run_id: str) -> Path:
    """``<results_dir>/checkpoints/<run_id>``, once ``run_id`` is checked to be a run id."""
    try:
        records.check_run_id(run_id, "checkpoint")
    except records.RecordError as err:
        raise ResumeError(str(err)) from None
    return Path(results_dir) / "checkpoints" / run_id


def step_of(path: Path) -> Optional[int]:
    """The step of a ``step-<k>.pt`` file name; None for any other name."""
    match = STEP.fullmatch(path.name)
    return int(match[1]) if match else None


def steps(directory: Path) -> list[Path]:
    """The checkpoint files of a run's folder, oldest first."""
    return sorted((p for p in directory.glob("step-*.pt") if step_of(p) is not None and p.is_file()), key=step_of)


def latest(directory: Path) -> Optional[Path]:
    """The newest checkpoint file of a run's folder; None if there is none."""
    found = steps(directory) if directory.is_dir() else []
    return found[-1] if found else None


# -- writing and reading ----------------------------------------------------------------------

def save(directory: Path, step: int, payload: dict, meta: dict, keep_all: bool = False) -> Path:
    """Write ``payload`` as ``step-<step>.pt`` atomically (temp file, fsync, rename), then
    ``meta.json``; unless ``keep_all``, remove the checkpoints of earlier steps. A full
    disk raises :class:`DiskFullError`, any other failed write ``RecordWriteError`` (one line each)."""
    path = directory / f"step-{step:04d}.pt"
    try:
        with records.atomic_file(path, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
        records.write_json_atomic(directory / META, {**meta, "step": step, "checkpoint": path.name})
    except OSError as err:
        reason = err.strerror or str(err)
        if records.disk_full(err):
            raise records.DiskFullWriteError(f"disk full: could not write the checkpoint {path} ({reason})") from err
        raise records.RecordWriteError(f"could not write the checkpoint {path}: {reason}") from err
    if not keep_all:
        for old in steps(directory):
            if old != path:
                old.unlink(missing_ok=True)
    return path


_KEYS = {"run_id": str, "step": int, "record": str, "strategy": dict, "session": dict, "rng": dict}


def load(path: Union[str, Path]) -> dict:
    """A checkpoint's payload (``weights_only=True``: tensors and plain data only), checked:
    its run id, step and record. Anything else raises :class:`DamagedCheckpointError`."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated, zeroed, or a pickle that asks for code
        raise DamagedCheckpointError(path, first_line(err)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DamagedCheckpointError(path, f"not a clbench checkpoint of format {FORMAT}")
    for key, typ in _KEYS.items():
        if not isinstance(payload.get(key), typ) or (typ is int and isinstance(payload[key], bool)):
            raise DamagedCheckpointError(path, f"{key!r} missing or not a {typ.__name__}")
    if not records.valid_run_id(payload["run_id"]):
        raise DamagedCheckpointError(path, f"{payload['run_id']!r} is not a valid run id")
    try:
        record = records.RunRecord.from_dict(json.loads(payload["record"]), f"{path} (its record)")
    except (ValueError, records.RecordError) as err:
        raise DamagedCheckpointError(path, first_line(err)) from None
    if record.run_id != payload["run_id"] or payload["step"] < 1:
        raise DamagedCheckpointError(path, f"its record's run id {record.run_id!r} is not its run id "
                                           f"{payload['run_id']!r}" if record.run_id != payload["run_id"]
                                     else f"step {payload['step']}")
    meta = meta_of(path.parent)
    if meta is not None and meta["run_id"] != payload["run_id"]:
        raise DamagedCheckpointError(path, f"run id {payload['run_id']!r}, but its folder is run {meta['run_id']!r}")
    return payload

def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` of ``err`` (at most 300 characters)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def remove(directory: Path, run_id: str, results_dir: Union[str, Path]) -> bool:
    """Delete the checkpoint folder of run ``run_id`` (what ``keep_checkpoints=false`` asks),
    only if it is that run's own: ``<results_dir>/checkpoints/<run_id>`` (resolved, not a
    symbolic link) whose ``meta.json`` names ``run_id``; only the files clbench writes there
    are deleted. Return whether the folder is gone."""
    expected = checkpoint_dir(results_dir, run_id)
    root = Path(results_dir) / "checkpoints"
    try:
        if directory.is_symlink() or not directory.is_dir() \
                or os.path.abspath(directory) != os.path.abspath(expected) \
                or directory.resolve().parent != root.resolve():
            return False
    except OSError:
        return False
    meta = read_json(directory / META)
    if not isinstance(meta, dict) or meta.get("run_id") != run_id:
        return False
    return delete_own_files(directory)


def _ours(name: str) -> bool:
    """Whether a file name in a run's checkpoint folder is one clbench writes there."""
    return (name in (META, CLAIM, LOCK) or STEP.fullmatch(name) is not None
            or (name.endswith(DAMAGED) and STEP.fullmatch(name[:-len(DAMAGED)]) is not None)
            or records.TEMP_FILE.fullmatch(name) is not None)


def delete_own_files(directory: Path) -> bool:
    """Unlink clbench's files in ``directory``, then the folder (and ``checkpoints/`` once
    empty); anything else in it stays, and so does the folder."""
    for f in directory.iterdir():
        if _ours(f.name) and (f.is_file() or f.is_symlink()):
            f.unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:
        return False
    try:
        directory.parent.rmdir()  # the results dir's checkpoints/ folder, once empty
    except OSError:
        pass
    return True


# -- comparing configs ------------------------------------------------------------------------

def flatten(config: Any, prefix: str = "") -> dict:
    """A nested config as ``{"a.b": value}``."""
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


# -- what a run's folder says ------------------------------------------------------------------

def read_json(path: Path) -> Any:
    """The JSON in ``path``; None if it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None


def meta_of(directory: Path) -> Optional[dict]:
    """``meta.json`` of a run's checkpoint folder; None unless it names a valid run id that
    is the folder's own name (a crafted or foreign meta is never followed)."""
    meta = read_json(directory / META)
    if not isinstance(meta, dict) or not records.valid_run_id(meta.get("run_id")) \
            or meta["run_id"] != directory.name or not isinstance(meta.get("config", {}), dict):
        return None
    return meta

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
    meta = {"run_id": rec.run_id, "record_path": records.record_path("", rec).as_posix(),  # results_dir-relative
            "config": rec.config, "strategy": rec.strategy.get("name"), "scenario": rec.scenario.get("name"),
            "seed": rec.seed, "updated": rec.updated, "keep_checkpoints": bool(session.settings.keep_checkpoints)}
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
    try:
        session.strategy.load_state_dict(payload["strategy"])
        session.strategy.to(session.device)
        if session.memory_format is not None:  # modules build_structure() grew: as the original run had them
            to_memory_format(session.strategy, session.memory_format)
        if session.addon is not None and payload.get("addon") is not None:
            session.addon.load_state_dict(payload["addon"])
        state = payload["session"]
        session.generator.set_state(state["generator"])
        session.monitor.load_state(state["monitor"])
        session.stream_state = state.get("stream")
        rng.set_state(payload["rng"])
    except Exception as err:  # noqa: BLE001 - a crafted or foreign state: one line, not a traceback
        where = session.record.extra.get("resumed", [{}])[-1].get("checkpoint", "the checkpoint")
        raise ResumeError(f"checkpoint {where} does not fit this run's strategy ({first_line(err)}); rm it (or "
                          "its run's checkpoint folder) and start a new run") from None
    seconds, _ = session.clock.take()  # preparing again is the resume's cost, not the next row's
    session.record.extra["resumed"][-1]["setup_s"] = round(sum(seconds.values()) + time.perf_counter() - started, 6)
    return int(payload["step"])
