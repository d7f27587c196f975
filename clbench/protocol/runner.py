"""``run``: one strategy (with an add-on, if any) on one scenario under the protocol,
from a new record or a checkpoint to a complete (or failed, or interrupted) record."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from clbench.api.addon import Addon
from clbench.api.scenario import Scenario
from clbench.api.strategy import Strategy
from clbench.progress import PhaseProgress
from clbench.protocol import bookkeeping, checkpoints
from clbench.protocol.compat import check_addon_compatible, check_compatible, resolve_device
from clbench.protocol.phases import PhaseClock
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
    strategy.to(device)
    if settings.channels_last:  # opt-in: faster convolutions (oneDNN, cuDNN), last-bit numerics differ
        strategy.to(memory_format=torch.channels_last)
    payload = None
    if resume is not None:
        if not resumable(strategy, addon):
            raise checkpoints.ResumeError(f"strategy {bookkeeping.record_name(strategy, addon)!r} cannot be resumed: "
                                          "its trainer keeps state outside its state_dict; start a new run")
        payload = checkpoints.load(resume)
        record = bookkeeping.resumed_record(payload, config or {}, resume)
    else:
        record = bookkeeping.new_record(scenario, strategy, settings, config or {}, run_id, device, addon)
    path = records.record_path(settings.results_dir, record)
    ckpt_dir = checkpoints.checkpoint_dir(settings.results_dir, record.run_id)
    if payload is not None:
        checkpoints.claim(ckpt_dir)
    for lg in loggers:
        safely(lg, "start", record)
    guard = SignalGuard()
    guard.install()
    session = None
    try:
        with PhaseProgress(settings.progress) as progress, PhaseClock(settings.count_flops, device) as clock:
            session = Session(scenario, strategy, settings, device, clock, progress, record, loggers, addon,
                              guard=guard, checkpoints=ckpt_dir if resumable(strategy, addon) else None)
            session.run(data_root, resume=payload)
    except BaseException as err:
        record.status = "interrupted" if isinstance(err, (Interrupted, KeyboardInterrupt)) else "failed"
        record.error = f"{type(err).__name__}: {err}"
        if session is not None:
            session.flush_curve(check=False)
        _save_quietly(record, settings.results_dir)
        try:
            err.record_path = path  # type: ignore[attr-defined]  (the CLI names it)
        except AttributeError:
            pass
        for lg in loggers:
            safely(lg, "finish", record)
        if isinstance(err, Interrupted):
            guard.restore()
            guard.chain()  # e.g. Submitit's handler of its preemption signal: requeue the job
        raise
    finally:
        guard.restore()
        if payload is not None:
            checkpoints.release(ckpt_dir)

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
    if not settings.keep_checkpoints:
        checkpoints.remove(ckpt_dir)
    return record, path


def resumable(strategy: Strategy, addon: Optional[Addon]) -> bool:
    """Whether the strategy's (and add-on's) ``state_dict`` hold all their training state."""
    return bool(getattr(strategy, "resumable", True)) and (addon is None or bool(getattr(addon, "resumable", True)))


def _save_quietly(record: RunRecord, results_dir: str) -> None:
    try:
        records.save(record, results_dir)
    except Exception as err:  # noqa: BLE001 - the original error is what the user must see
        warnings.warn(f"could not save the record: {type(err).__name__}: {err}", RuntimeWarning)
