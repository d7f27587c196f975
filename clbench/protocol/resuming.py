"""Which checkpoint a ``resume=`` means (``auto``, a run id, a path), which complete record
``resume=auto`` skips instead of running again, and falling back past a damaged checkpoint."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from clbench.protocol.checkpoints import DAMAGED, DamagedCheckpointError, ResumeError, config_diff, latest, load, \
    meta_of, step_of, steps
from clbench.protocol.claims import run_state
from clbench.results import records


class AlreadyComplete(Exception):
    """``resume=auto`` for a config whose run is already complete: nothing to do."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"a run of this config is already complete (record {path}): nothing to do "
                         "(without resume=auto, a new run starts)")
        self.path = path


def find(resume: str, results_dir: Union[str, Path], config: dict, force: bool = False) -> Optional[Path]:
    """The checkpoint ``resume`` names: ``auto`` (the newest interrupted or killed run of
    exactly this config under ``results_dir``; None if there is none; a failed run is
    resumed only by name), a run id, or a path (a checkpoint file or a run's checkpoint
    folder). Raises :class:`ResumeError` naming what is wrong: nothing found (with the runs
    that are there), not a checkpoint, a config that differs (with the differing keys), a
    run that is complete, still running, or held by another host's claim (``force``:
    ``resume_force=true`` takes that one over)."""
    root = Path(results_dir) / "checkpoints"
    if resume == "auto":
        return _find_auto(root, config, force)
    path = Path(resume).expanduser()
    directory: Path
    if path.is_file():
        directory, chosen = path.parent, path
        if step_of(path) is None or meta_of(directory) is None:
            raise ResumeError(f"resume={resume!r}: {path} is not a clbench checkpoint (a step-NNNN.pt file in a "
                              "run's checkpoint folder, beside its meta.json)")
    else:
        if path.is_dir() and meta_of(path) is not None:
            directory = path
        elif records.valid_run_id(resume):
            directory = root / resume
        elif path.is_dir():
            raise ResumeError(f"resume={resume!r}: {path} is not a run's checkpoint folder (no valid meta.json)")
        else:
            raise ResumeError(f"resume={resume!r}: not a run id (letters, digits, '.', '_', '+', '=', '@', '-'), "
                              f"nor a checkpoint file or folder; runs with checkpoints under {root}: {_runs_there(root)}")
        chosen = latest(directory) if directory.is_dir() else None
    if chosen is None:
        raise ResumeError(f"resume={resume!r}: no checkpoint there (looked for a file, a folder and "
                          f"{root / resume}); runs with checkpoints under {root}: {_runs_there(root)}")
    meta = meta_of(directory)
    if meta is None:
        raise ResumeError(f"resume={resume!r}: {directory} is not a run's checkpoint folder (no valid meta.json)")
    differs = config_diff(meta.get("config", {}), config)
    if differs:
        raise ResumeError(f"resume={resume!r}: the config differs from the checkpoint's in {len(differs)} key(s): "
                          + "; ".join(differs) + " (resume with the run's own settings, or start a new run)")
    state, why = run_state(directory, meta)
    if state in ("complete", "live") or (state == "held" and not force):
        raise ResumeError(f"resume={resume!r}: {why}")
    return chosen


def _find_auto(root: Path, config: dict, force: bool) -> Optional[Path]:
    candidates, held = [], []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if directory.is_symlink() or not directory.is_dir():
            continue
        meta = meta_of(directory)
        if meta is None or latest(directory) is None or config_diff(meta.get("config", {}), config):
            continue
        state, why = run_state(directory, meta)
        if state in ("interrupted", "killed") or (state == "held" and force):
            candidates.append((str(meta.get("updated") or ""), directory))
        elif state == "held":
            held.append(why)
    if candidates:
        return latest(max(candidates)[1])
    if held:  # a run of this config that may still be running elsewhere: neither resumed nor duplicated
        raise ResumeError(f"resume=auto: {held[0]}")
    return None


def _runs_there(root: Path) -> str:
    there = sorted(p.name for p in root.glob("*/") if latest(p)) if root.is_dir() else []
    return ", ".join(there) or "none"


def find_complete(results_dir: Union[str, Path], config: dict) -> Optional[Path]:
    """The newest complete record of exactly ``config`` under ``results_dir`` (execution
    keys aside), or None: what ``resume=auto`` skips instead of running again."""
    scenario = config.get("scenario", {}).get("name") if isinstance(config.get("scenario"), dict) else None
    folder = Path(results_dir) / "runs"
    found = []
    for path in sorted((folder / str(scenario)).glob("*/*.json") if scenario else folder.glob("*/*/*.json")):
        try:
            record = records.load(path)
        except records.RecordError:
            continue
        if record.status == "complete" and not config_diff(record.config, config):
            found.append((record.updated or record.created, path))
    return max(found)[1] if found else None

def load_usable(path: Union[str, Path]) -> tuple[dict, Path, list[str]]:
    """The payload of ``path`` or, where it is damaged, of the newest earlier checkpoint of
    its run that is not (``keep_checkpoints=true`` keeps them); a damaged file of a run's
    folder is set aside (``<name>.damaged``), so ``resume=auto`` never picks it again.
    Returns (payload, the file it came from, one line per file set aside). Raises
    :class:`ResumeError` (one line: the file, how to discard it) when none is usable."""
    path, notes = Path(path), []
    while True:
        try:
            return load(path), path, notes
        except DamagedCheckpointError as err:
            aside = _set_aside(path)
            earlier = [p for p in steps(path.parent) if (step_of(p) or 0) < (step_of(path) or 0)] if aside else []
            where = f"set aside as {aside} (rm {aside} deletes it)" if aside else f"rm {path} deletes it"
            if not earlier:
                raise ResumeError(f"{err}; {where}; no earlier checkpoint of this run to fall back on: start a new "
                                  "run (resume=auto no longer chooses it)") from None
            notes.append(f"{err}; {where}; falling back to {earlier[-1].name}")
            path = earlier[-1]


def _set_aside(path: Path) -> Optional[Path]:
    """Rename a damaged checkpoint of a run's folder to ``<name>.damaged``; None for a file
    that is not one (never renamed) or that cannot be renamed."""
    if step_of(path) is None or meta_of(path.parent) is None:
        return None
    aside = path.with_name(path.name + DAMAGED)
    try:
        os.replace(path, aside)
    except OSError:
        return None
    return aside
