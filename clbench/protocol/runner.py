"""``run``: one strategy (with an add-on, if any) on one scenario under the protocol,
from a new record or a checkpoint to a complete (or failed, or interrupted) record."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from clbench.api.addon import Addon
from clbench.api.scenario import Scenario
from clbench.api.strategy import Strategy
from clbench.errors import DiskFullError
from clbench.progress import PhaseProgress
from clbench.protocol import bookkeeping, checkpoints, claims, resuming
from clbench.protocol.compat import check_addon_compatible, check_compatible, resolve_device
from clbench.protocol.phases import PhaseClock
from clbench.protocol.memory_format import learner_memory_format, to_memory_format
from clbench.protocol.session import Session, safely
from clbench.protocol.signals import Interrupted, SignalGuard
from clbench.results import records
from clbench.results.records import RunRecord
from clbench.settings import RunSettings


def run(
    scenario: Scenario,
    strategy: Strategy,
    *,
    settings: RunSettings,
    loggers: Sequence[Any] = (),
    config: Optional[dict] = None,
    run_id: Optional[str] = None,
    addon: Optional[Addon] = None,
    data_root: Optional[Path] = None,
    resume: Optional[Path] = None,
) -> tuple[RunRecord, Path]:
    """Train ``strategy`` (with ``addon``, if any) on ``scenario`` under the protocol;
    return the record and its path. ``data_root``: where auxiliary data sets are read.
    ``resume``: a checkpoint of this run (``clbench.protocol.checkpoints``) to continue
    from; the strategy and scenario must be built exactly as for the original run."""
    check_compatible(type(strategy), scenario.kind, scenario.name)
    if addon is not None:
        check_addon_compatible(addon, scenario)
    if settings.eval_rows not in ("all", "final"):
        raise ValueError(f"eval_rows must be 'all' or 'final', got {settings.eval_rows!r}")
    device = resolve_device(settings.device)
    records.check_writable(settings.results_dir)  # before any work: a result that cannot be saved is lost
    _clean_leftovers(settings.results_dir)
    strategy.to(device)
    memory_format = learner_memory_format(settings, strategy)
    if memory_format is not None:  # before prepare() computes; the session converts what it and begin_experience() build
        to_memory_format(strategy, memory_format)
    payload = None
    if resume is not None:
        if not resumable(strategy, addon):
            raise checkpoints.ResumeError(f"strategy {bookkeeping.record_name(strategy, addon)!r} cannot be resumed: "
                                          "its trainer keeps state outside its state_dict; start a new run")
        payload, resume, notes = resuming.load_usable(resume)
        for note in notes:
            print(f"clbench: {note}", file=sys.stderr)
        record = bookkeeping.resumed_record(payload, config or {}, resume)
    else:
        record = bookkeeping.new_record(scenario, strategy, settings, config or {}, run_id, device, addon)
        if settings.channels_last and memory_format is None:
            record.extra["memory_format"] = (f"contiguous: strategy {bookkeeping.record_name(strategy, addon)!r} "
                                             "keeps the standard format (its code assumes contiguous tensors)")
    path = records.record_path(settings.results_dir, record)  # checks the run id and names: never outside
    saves = resumable(strategy, addon)
    ckpt_dir = checkpoints.checkpoint_dir(settings.results_dir, record.run_id) if saves else None
    with claims.holding(ckpt_dir, settings.resume_force) if ckpt_dir else contextlib.nullcontext("") as note:
        if note:
            print(f"clbench: {note}", file=sys.stderr)
        for lg in loggers:
            safely(lg, "start", record)
        _run_session(scenario, strategy, settings, loggers, addon, device, record, path, ckpt_dir, data_root, payload)
    record.status = "complete"
    record.params["backbone"] = bookkeeping.backbone_params(strategy)
    record.strategy["details"] = bookkeeping.plain(strategy.describe())
    if addon is not None:
        record.strategy["addon"]["details"] = bookkeeping.plain(addon.describe())
    for lg in loggers:
        where = safely(lg, "finish", record)
        if where:
            record.environment.setdefault("logs", {})[type(lg).__name__] = where
    records.save(record, settings.results_dir)
    if ckpt_dir is not None and not settings.keep_checkpoints:
        checkpoints.remove(ckpt_dir, record.run_id, settings.results_dir)
    return record, path


def _run_session(scenario: Scenario, strategy: Strategy, settings: RunSettings, loggers: Sequence[Any],
                 addon: Optional[Addon], device: torch.device, record: RunRecord, path: Path,
                 ckpt_dir: Optional[Path], data_root: Optional[Path], payload: Optional[dict]) -> None:
    """The session of one run; a run that stops books why: ``interrupted`` (a signal, Ctrl-C,
    or a full disk: resumable) or ``failed``, and saves the record before the error goes on."""
    guard = SignalGuard()
    guard.install()
    session = None
    try:
        with PhaseProgress(settings.progress) as progress, PhaseClock(settings.count_flops, device) as clock:
            session = Session(scenario, strategy, settings, device, clock, progress, record, loggers, addon,
                              guard=guard, checkpoints=ckpt_dir)
            session.run(data_root, resume=payload)
    except BaseException as err:
        full = records.disk_full(err)
        stopped = full or isinstance(err, (Interrupted, KeyboardInterrupt))
        shown = _explained(err, record.config)
        record.status = "interrupted" if stopped else "failed"
        record.error = f"{type(shown).__name__}: {shown}"
        if session is not None:
            session.flush_curve(check=False)
        unsaved = _save_quietly(record, settings.results_dir)
        if unsaved and not full:
            print(f"clbench: warning: could not save the record: {unsaved}", file=sys.stderr)
        if full:
            kept = f"the record {path} is not updated either ({unsaved})" if unsaved else f"record {path}"
            shown = DiskFullError(f"{err}; the run stopped as interrupted ({kept}): once there is space, "
                                  "resume=auto continues it from its last checkpoint")
        for lg in loggers:
            safely(lg, "finish", record)
        try:
            shown.record_path = path  # type: ignore[attr-defined]  (the CLI names it)
        except AttributeError:
            pass
        if isinstance(err, Interrupted):
            guard.restore()
            guard.chain()  # e.g. Submitit's handler of its preemption signal: requeue the job
        if shown is not err:
            raise shown from err
        raise
    finally:
        guard.restore()


class OutOfRangeError(FloatingPointError):
    """A setting beyond what the learner's numbers can hold (e.g. ``strategy.lr=1e300``
    with float32 weights): the run stops as ``failed``."""


def _explained(err: BaseException, config: dict) -> BaseException:
    """``err``, or for torch's "cannot be converted ... without overflow" an
    :class:`OutOfRangeError` naming the settings beyond the float32 range."""
    if not isinstance(err, RuntimeError) or "overflow" not in str(err):
        return err
    limit = torch.finfo(torch.float32).max
    huge = [f"{k}={v!r}" for k, v in checkpoints.flatten(config or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > limit]
    what = (f"{', '.join(huge)} is beyond the float32 range (±{limit:.2e}) of the learner's numbers; choose a "
            "smaller value") if huge else "a value beyond the float32 range of the learner's numbers"
    return OutOfRangeError(f"{what} ({str(err).strip().splitlines()[0]})")


def _clean_leftovers(results_dir: str) -> None:
    """Remove what killed runs left in ``results_dir`` (claims.clean_leftovers); say so in one line."""
    try:
        removed = claims.clean_leftovers(results_dir)
    except OSError:
        return
    if removed:
        folders = sum(1 for p in removed if not p.name.endswith(".tmp"))
        print(f"clbench: cleaned up after killed runs in {results_dir}: {len(removed) - folders} temporary file(s), "
              f"{folders} checkpoint folder(s) nobody needs", file=sys.stderr)


def resumable(strategy: Strategy, addon: Optional[Addon]) -> bool:
    """Whether the strategy's (and add-on's) ``state_dict`` hold all their training state."""
    return bool(getattr(strategy, "resumable", True)) and (addon is None or bool(getattr(addon, "resumable", True)))


def _save_quietly(record: RunRecord, results_dir: str) -> Optional[str]:
    """Save ``record``; what went wrong if it could not be (the original error is what the user must see)."""
    try:
        records.save(record, results_dir)
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    return None
