"""The evaluation protocol: the only loop over experiences (PROTOCOL.md).

For each experience the learner is trained on what the scenario lets it see, then
every experience's test split is evaluated (row i of the accuracy matrix); a row 0 is
evaluated before any training. After each experience the record is saved (status
"running"), so a crash loses nothing already computed.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections import defaultdict
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from clbench import checkpoints, metrics, records
from clbench.addon import Addon
from clbench.augment import get_augmentation
from clbench.auxdata import load_aux
from clbench.backbones import Backbone, count_parameters
from clbench.data import gather, split_validation
from clbench.evaluation import EVALUATORS, NonFiniteError, RowResult, routing_accuracy, score_mixed
from clbench.features import encode
from clbench.phases import PhaseClock, is_training_phase
from clbench.progress import PhaseProgress, run_progress
from clbench.records import RunRecord
from clbench.scenario import Scenario
from clbench.settings import RunSettings
from clbench.strategy import _PHASE_CLOCKS, _STEP_LISTENERS, Strategy
from clbench.types import KINDS, VISIBLE_THINGS, Batch, ExperienceInfo
from clbench.view import LearnerView, make_batch

import clbench.multilabel  # noqa: E402,F401  (registers the multi-label evaluator)


class IncompatibleError(ValueError):
    """A strategy paired with a scenario it cannot run on (refused before training)."""


def check_compatible(strategy_cls: type[Strategy], kind: str, scenario_name: str = "?") -> None:
    """Refuse a pairing whose scenario hides something the strategy needs, or whose
    family the strategy does not support; the message names both and the choices."""
    from clbench.types import VISIBILITY_BY_KIND

    name = getattr(strategy_cls, "name", strategy_cls.__name__)
    if kind not in KINDS:
        raise IncompatibleError(f"unknown scenario kind {kind!r}; valid choices: {list(KINDS)}")
    if kind not in strategy_cls.kinds:
        raise IncompatibleError(
            f"strategy {name!r} does not support {kind} scenarios such as {scenario_name!r}; "
            f"it supports: {sorted(strategy_cls.kinds)}"
        )
    vis = VISIBILITY_BY_KIND[kind]
    hidden = [t for t in VISIBLE_THINGS if t in strategy_cls.needs and not vis.shows(t)]
    if hidden:
        fits = [k for k in strategy_cls.kinds if all(VISIBILITY_BY_KIND[k].shows(t) for t in strategy_cls.needs)]
        raise IncompatibleError(
            f"strategy {name!r} needs {hidden}, which scenario {scenario_name!r} ({kind}) hides; "
            f"it runs on scenario kinds: {sorted(fits)}"
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; valid choices: 'auto', 'cpu', 'cuda', 'cuda:N'")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but no CUDA device is available; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (the strategy and data order use their own generators)."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Interrupted(BaseException):
    """SIGTERM (e.g. a SLURM time limit) or Ctrl-C: the run ends as ``interrupted``."""


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
    ``resume``: a checkpoint of this run (``clbench.checkpoints``) to continue from; the
    strategy and scenario must be built exactly as for the original run."""
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
        if not _resumable(strategy, addon):
            raise checkpoints.ResumeError(f"strategy {record_name(strategy, addon)!r} cannot be resumed: "
                                          "its trainer keeps state outside its state_dict; start a new run")
        payload = checkpoints.load(resume)
        record = _resumed_record(payload, config or {}, resume)
    else:
        record = _new_record(scenario, strategy, settings, config or {}, run_id, device, addon)
    path = records.record_path(settings.results_dir, record)
    ckpt_dir = checkpoints.checkpoint_dir(settings.results_dir, record.run_id)
    if payload is not None:
        checkpoints.claim(ckpt_dir)
    for lg in loggers:
        _safely(lg, "start", record)
    guard = SignalGuard()
    guard.install()
    session = None
    try:
        with PhaseProgress(settings.progress) as progress, PhaseClock(settings.count_flops, device) as clock:
            session = Session(scenario, strategy, settings, device, clock, progress, record, loggers, addon,
                              guard=guard, checkpoints=ckpt_dir if _resumable(strategy, addon) else None)
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
            _safely(lg, "finish", record)
        if isinstance(err, Interrupted):
            guard.restore()
            guard.chain()  # e.g. Submitit's handler of its preemption signal: requeue the job
        raise
    finally:
        guard.restore()
        if payload is not None:
            checkpoints.release(ckpt_dir)

    record.status = "complete"
    record.params["backbone"] = _backbone_params(strategy)
    record.strategy["details"] = _plain(strategy.describe())
    if addon is not None:
        record.strategy["addon"]["details"] = _plain(addon.describe())
    for lg in loggers:
        where = _safely(lg, "finish", record)
        if where:
            record.environment.setdefault("logs", {})[type(lg).__name__] = where
    records.save(record, settings.results_dir)
    if not settings.keep_checkpoints:
        checkpoints.remove(ckpt_dir)
    return record, path


def record_name(strategy: Strategy, addon: Optional[Addon] = None) -> str:
    name = getattr(strategy, "name", type(strategy).__name__)
    return f"{name}+{addon.name}" if addon is not None else name


def _resumable(strategy: Strategy, addon: Optional[Addon]) -> bool:
    return bool(getattr(strategy, "resumable", True)) and (addon is None or bool(getattr(addon, "resumable", True)))


def _resumed_record(payload: dict, config: dict, source: Path) -> RunRecord:
    """The record saved with a checkpoint, made the live record of this process again."""
    record = RunRecord.from_dict(json.loads(payload["record"]), str(source))
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record.extra.setdefault("resumed", []).append({"at": now, "from_step": int(payload["step"]),
                                                   "checkpoint": str(source)})
    record.config = config  # execution-only keys (resume, results_dir, ...) may differ; nothing else does
    record.status, record.error, record.pid, record.host = "running", None, os.getpid(), socket.gethostname()
    return record


def check_addon_compatible(addon: Addon, scenario: Scenario) -> None:
    vis = scenario.visibility
    hidden = [t for t in addon.needs if not vis.shows(t)]
    if hidden:
        raise IncompatibleError(f"addon {addon.name!r} needs {hidden}, which scenario {scenario.name!r} "
                                f"({scenario.kind}) hides")


class Session:
    """One run's training and evaluation: the phases, the per-step monitor, lazy
    encoding, the task-agnostic stream and snapshot evaluation. ``protocol.run`` drives
    it; the Avalanche adapter uses the same pieces for its own loop."""

    def __init__(self, scenario: Scenario, strategy: Strategy, settings: RunSettings, device: torch.device,
                 clock: PhaseClock, progress: Any, record: RunRecord, loggers: Sequence[Any] = (),
                 addon: Optional[Addon] = None, guard: Optional["SignalGuard"] = None,
                 checkpoints: Optional[Path] = None) -> None:
        self.scenario, self.strategy, self.settings, self.device = scenario, strategy, settings, device
        self.clock, self.progress, self.record, self.loggers, self.addon = clock, progress, record, loggers, addon
        self.evaluator = EVALUATORS.get(scenario.kind)
        self.generator = torch.Generator().manual_seed(settings.seed)  # splits and training order
        self.augmentation = get_augmentation(scenario.augmentation)
        self.encoder: Optional[nn.Module] = None
        self._encoded: dict[tuple[str, int], Any] = {}
        self.monitor = StepMonitor(self, settings.log_every)
        self.guard = guard  # signals wait while the record or a checkpoint is written
        self.checkpoints = checkpoints  # where experience checkpoints go (None: none are saved)
        self.stream_state: Optional[dict] = None  # task-agnostic: the planned stream and the position in it

    # -- the run ---------------------------------------------------------------
    def run(self, data_root: Optional[Path], resume: Optional[dict] = None) -> None:
        """The whole run; ``resume``: a checkpoint's payload to continue from (after the
        same preparation as the original run, its saved state replaces the live one)."""
        s, sc, rec = self.strategy, self.scenario, self.record
        aux, facts = load_aux(s.aux_requests(), data_root=data_root, input_shape=sc.input_shape,
                              stream_dataset=sc.dataset)
        rec.strategy["aux_data"] = facts
        self.print_plan()
        with self.clock.phase("prepare", sync=True), self.progress.phase("prepare"), run_progress(self.progress):
            s.prepare(aux)  # setup loops inside (key init, pretraining) report to the run's progress
        if self.addon is not None:
            self.addon.attach(s)
        self.encoder = s.frozen_encoder()
        if self.encoder is not None:
            self.encoder.to(self.device)
        self.train_sets, self.val_sets = self._splits()
        self.test_sets = [e.test for e in sc.experiences]
        if resume is None:
            rec.params = {"initial": count_parameters(s), "after": [], "added": []}
            rec.timing.update(train_s=[], eval_s=[], flops=[], phases=[])
            rec.extra.update(rows=[], aux=[], routing=[], loss_curve=[])
            self.evaluate_row(0)
            self.end_row(0)
            first = 1
        else:
            first = self.restore(resume) + 1
        _STEP_LISTENERS[s] = self.monitor
        _PHASE_CLOCKS[s] = self.clock
        try:
            if sc.visibility.boundaries:
                self._run_experiences(first)
            else:
                self._run_stream()
        finally:
            _STEP_LISTENERS.pop(s, None)
            _PHASE_CLOCKS.pop(s, None)

    def print_plan(self) -> None:
        """Say what the run will do before it does it (a paper recipe can mean hours)."""
        printer = getattr(self.progress, "print", None)
        if printer is None or not self.settings.progress:
            return
        s, sc = self.strategy, self.scenario
        bs, epochs = s.config.batch_size, getattr(s.config, "epochs", 1)
        size = sc.stream_size(self.settings.val_fraction)
        passes = epochs if sc.visibility.boundaries else 1
        steps = sum(-(-n // bs) for n in sc.train_sizes(self.settings.val_fraction)) * passes
        if not sc.visibility.boundaries:
            steps = -(-size // bs)
        name = self.record.strategy["name"]
        lines = [f"plan: {name} on {sc.name} ({sc.kind}): {len(sc.steps)} experiences, {size:,} training samples, "
                 f"{passes} epoch(s) each, batch {bs}: about {steps:,} optimisation steps; evaluation after each "
                 f"experience on up to {sum(len(e.test) for e in sc.experiences):,} test samples"]
        if self.record.deviations:
            lines.append("deviations from the paper: " + "; ".join(self.record.deviations[:4])
                         + (" ..." if len(self.record.deviations) > 4 else ""))
        if steps > 20_000:
            lines.append("this is a long run (the method's paper recipe); for a quick look: debug=fast, or "
                         "strategy.epochs=1 scenario.train_per_class=500")
        for line in lines:
            printer(line)

    def _splits(self) -> tuple[list, list]:
        train, validation = [], []
        for exp in self.scenario.experiences:
            if self.scenario.visibility.boundaries:
                tr, val = split_validation(exp.train, self.settings.val_fraction, self.generator)
            else:
                tr, val = exp.train, None
            train.append(tr)
            validation.append(val)
        return train, validation

    def encoded(self, split: str, j: int, data: Any, encoder: Optional[nn.Module] = None) -> Any:
        """``data`` as the learner gets it: encoded by the frozen encoder (cached), or raw."""
        if data is None or self.encoder is None:
            return data
        key = (split, j)
        if key not in self._encoded:
            with self.clock.phase("encode"), self.progress.phase(f"encode {split} {j + 1}"):
                self._encoded[key] = encode(encoder or self.encoder, data, device=self.device,
                                            batch_size=self.settings.eval_batch_size)
        return self._encoded[key]

    def _run_experiences(self, first: int = 1) -> None:
        s, sc = self.strategy, self.scenario
        vis, steps = sc.visibility, sc.steps
        for step, e in enumerate(steps, start=1):
            if step < first:  # done before the run was resumed
                continue
            exp = sc.experiences[e]
            train = self.encoded("train", e, self.train_sets[e])
            validation = self.encoded("validation", e, self.val_sets[e])
            self.monitor.experience = e
            task_id = exp.task_id if vis.task_id_train else None
            with self.progress.phase(f"train {step}/{len(steps)}", total=len(train) * max(1, s.config.epochs)) as advance:
                view = LearnerView(train, validation, task_id=task_id, device=self.device, generator=self.generator,
                                   on_batch=advance, num_workers=self.settings.num_workers,
                                   augmentation=None if self.encoder is not None else self.augmentation)
                with self.clock.phase("train", sync=True):
                    train_experience(s, view, ExperienceInfo(e, tuple(exp.classes), task_id))
                if self.addon is not None:
                    with self.clock.phase(f"addon:{self.addon.name}", sync=True):
                        self.addon.end_experience()
                if step == len(steps):
                    self._end_stream()
            self.evaluate_row(step)
            self.end_row(step)

    def _run_stream(self) -> None:
        """One continuous sequence of batches; rows at the hidden true boundaries."""
        s, sc, bs = self.strategy, self.scenario, self.strategy.config.batch_size
        if self.stream_state is None:
            sizes = [len(d) for d in self.train_sets]
            plan = sc.stream_plan(sizes, self.generator)
            self.stream_state = {"source": torch.cat([p[0] for p in plan]), "rows": torch.cat([p[1] for p in plan]),
                                 "ends": torch.cumsum(torch.tensor([len(p[0]) for p in plan]), 0).tolist(),
                                 "position": 0, "next_row": 1}
        state = self.stream_state
        source, rows, ends = state["source"], state["rows"], state["ends"]
        total, next_row, done = len(source), state["next_row"], state["position"]
        s.train()
        with self.progress.phase("stream", total=total) as advance:
            if advance is not None and done:
                advance(done)
            for start in range(done, total, bs):
                src, idx = source[start:start + bs], rows[start:start + bs]
                present = set(src.tolist())
                sets = [self.encoded("train", e, self.train_sets[e]) if e in present else self.train_sets[e]
                        for e in range(len(self.train_sets))]
                self.monitor.sources = src
                batch = make_batch(gather(sets, src, idx), None, self.device,
                                   None if self.encoder is not None else self.augmentation, self.generator)
                with self.clock.phase("train"):
                    s.observe(batch)
                done = start + len(src)
                if advance is not None:
                    advance(len(src))
                while next_row <= len(ends) and ends[next_row - 1] <= done:
                    if next_row == len(ends):
                        self._end_stream()
                    state.update(position=done, next_row=next_row + 1)  # where a resume continues
                    self.evaluate_row(next_row)
                    self.end_row(next_row)
                    next_row += 1

    def _end_stream(self) -> None:
        with self.clock.phase("end_stream", sync=True):
            self.strategy.end_stream()
        if self.addon is not None:
            with self.clock.phase(f"addon:{self.addon.name}", sync=True):
                self.addon.end_stream()

    # -- evaluation ----------------------------------------------------------------
    def evaluate_row(self, step: int) -> None:
        """Row ``step`` on an evaluation copy of the learner (PROTOCOL.md)."""
        rec, sc = self.record, self.scenario
        if self.settings.eval_rows == "final" and 0 < step < len(sc.steps):
            row = RowResult([None] * len(sc.experiences), None, {"skipped": "eval_rows=final"})
            rec.matrix.append(row.accuracy)
            rec.union_accuracy.append(None)
            rec.extra["rows"].append(row.extra)
            return
        generator = torch.Generator().manual_seed(_eval_seed(self.settings.seed, step))
        with torch.random.fork_rng(devices=_rng_devices(self.device)):
            torch.manual_seed(_eval_seed(self.settings.seed, step))  # the copy's global draws: seeded, then forgotten
            with self.clock.phase("eval", sync=True):
                copy_, copied_bytes = evaluation_copy(self.strategy)
                self.record.compute["snapshot_bytes"] = copied_bytes
            with self.clock.phase("before_eval", sync=True):
                copy_.before_eval()
            aux = _plain_numbers(copy_.metrics())
            if self.addon is not None:
                aux.update({f"{self.addon.name}.{k}": v for k, v in _plain_numbers(self.addon.metrics()).items()})
            with self.clock.phase("eval", sync=True):
                copy_.eval()
                test_encoder = copy_.frozen_encoder()
                test_sets = [self.encoded("test", j, d, test_encoder) for j, d in enumerate(self.test_sets)]
                total = sum(len(test_sets[j]) for j in self.evaluator.evaluated(sc, step))
                with self.progress.phase(f"eval {step}/{len(sc.steps)}", total=total) as advance:
                    scored = score_mixed(copy_.predict, self.evaluator, sc, step, test_sets, device=self.device,
                                         batch_size=self.settings.eval_batch_size, generator=generator,
                                         on_batch=advance)
                row = self.evaluator.row(sc, step, scored, test_sets)
            del copy_
        rec.matrix.append(row.accuracy)
        if step > 0:
            rec.union_accuracy.append(row.union_accuracy)
            rec.extra["aux"].append(aux)
            rec.extra["routing"].append(routing_accuracy(scored, self.monitor.route_counts))
        rec.extra["rows"].append(row.extra)

    def end_row(self, step: int) -> None:
        """Book the row's phases, parameters and metrics; save the record; tell loggers."""
        rec, sc = self.record, self.scenario
        seconds, flops = self.clock.take()
        rec.timing["phases"].append({k: round(v, 6) for k, v in seconds.items()})
        if flops is not None:
            rec.compute.setdefault("flops_phases", []).append(flops)
        if step == 0:
            rec.timing["prepare_s"] = seconds.get("prepare", 0.0)
            rec.timing["encode_s"] = seconds.get("encode", 0.0)
            return
        rec.timing["encode_s"] = rec.timing.get("encode_s", 0.0) + seconds.get("encode", 0.0)
        rec.timing["train_s"].append(sum(v for k, v in seconds.items() if is_training_phase(k)))
        rec.timing["eval_s"].append(seconds.get("eval", 0.0))
        train_flops = None if flops is None else sum(v for k, v in flops.items() if is_training_phase(k))
        rec.timing["flops"].append(train_flops)
        if flops is not None:
            rec.compute["train_flops"] = sum(f for f in rec.timing["flops"] if f is not None)
        counts = count_parameters(self.strategy)
        rec.params["after"].append(counts)
        prev = rec.params["after"][-2] if step > 1 else rec.params["initial"]
        rec.params["added"].append({k: counts[k] - prev[k] for k in counts})
        rec.experiences_done = step
        self.flush_curve()
        _update_metrics(rec, sc, self.evaluator)
        rec.compute["peak_memory_bytes"] = _peak_memory(self.device)
        with self.critical():  # a signal now waits until the record and checkpoint are whole
            records.save(rec, self.settings.results_dir)
            if step < len(sc.steps):
                self.save_checkpoint(step)
        for lg in self.loggers:
            _safely(lg, "log_row", step, rec.matrix[-1], rec)

    # -- checkpoints -----------------------------------------------------------------
    def critical(self) -> Any:
        return self.guard.critical() if self.guard is not None else contextlib.nullcontext()

    def save_checkpoint(self, step: int) -> None:
        """Everything the rest of the run depends on, after row ``step`` (clbench.checkpoints)."""
        if self.checkpoints is None:
            return
        started = time.perf_counter()
        rec = self.record
        payload = {
            "run_id": rec.run_id, "step": step,
            "record": json.dumps(records.record_data(rec)),
            "strategy": self.strategy.state_dict(),
            "addon": self.addon.state_dict() if self.addon is not None else None,
            "session": {"generator": self.generator.get_state(), "monitor": self.monitor.state(),
                        "stream": self.stream_state},
            "rng": checkpoints.rng_state(),
        }
        meta = {"run_id": rec.run_id, "record_path": str(records.record_path(self.settings.results_dir, rec)),
                "config": rec.config, "strategy": rec.strategy.get("name"), "scenario": rec.scenario.get("name"),
                "seed": rec.seed, "updated": rec.updated}
        path = checkpoints.save(self.checkpoints, step, payload, meta, keep_all=self.settings.keep_checkpoints)
        rec.timing.setdefault("checkpoint_s", []).append(round(time.perf_counter() - started, 6))
        rec.compute["checkpoint_bytes"] = path.stat().st_size

    def restore(self, payload: dict) -> int:
        """Put the state of a checkpoint back (after preparation); return its step."""
        started = time.perf_counter()
        self.strategy.load_state_dict(payload["strategy"])
        self.strategy.to(self.device)
        if self.addon is not None and payload.get("addon") is not None:
            self.addon.load_state_dict(payload["addon"])
        session = payload["session"]
        self.generator.set_state(session["generator"])
        self.monitor.load_state(session["monitor"])
        self.stream_state = session.get("stream")
        checkpoints.set_rng_state(payload["rng"])
        seconds, _ = self.clock.take()  # preparing again is the resume's cost, not the next row's
        self.record.extra["resumed"][-1]["setup_s"] = round(sum(seconds.values()) + time.perf_counter() - started, 6)
        return int(payload["step"])

    def flush_curve(self, check: bool = True) -> None:
        points = self.monitor.flush(check=check)
        self.record.extra.setdefault("loss_curve", []).extend(points)
        if points and points[-1][1] is not None and hasattr(self.progress, "set_postfix"):
            self.progress.set_postfix(f"step {points[-1][0]:,} loss {points[-1][1]:.4f}")
        for lg in self.loggers:
            if hasattr(lg, "log_steps"):
                for step, loss in points:
                    _safely(lg, "log_steps", step, {"train/loss": loss})


def train_experience(strategy: Strategy, view: LearnerView, info: ExperienceInfo) -> None:
    """One experience where boundaries are visible: ``begin_experience``, the strategy's
    ``train_experience`` on ``view``, ``end_experience``, in training mode. The protocol
    and the Avalanche adapter both train through here."""
    strategy.train()
    strategy.begin_experience(info)
    strategy.train_experience(view)
    strategy.end_experience()


class StepMonitor:
    """The protocol's listener on every optimisation step of the live learner: the loss
    curve (accumulated on the device, read every ``log_every`` steps), non-finite losses,
    the routes each experience trained with, and the add-on's ``after_step``."""

    def __init__(self, session: Session, log_every: int) -> None:
        self.session, self.log_every = session, max(1, log_every)
        self.steps = 0
        self.experience: Optional[int] = None  # boundaries visible: the experience being trained
        self.sources: Optional[torch.Tensor] = None  # task-agnostic: the experience of each sample
        self.route_counts: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._window: list[torch.Tensor] = []
        self._window_start = 1

    def state(self) -> dict:
        """Plain data for a checkpoint (taken after a row, when the loss window is empty)."""
        return {"steps": self.steps, "window_start": self._window_start,
                "routes": [[e, r, n] for e, counts in self.route_counts.items() for r, n in counts.items()]}

    def load_state(self, state: dict) -> None:
        self.steps, self._window_start, self._window = int(state["steps"]), int(state["window_start"]), []
        self.route_counts.clear()
        for e, r, n in state["routes"]:
            self.route_counts[int(e)][int(r)] = int(n)

    def __call__(self, batch: Batch, stats: Any) -> None:
        self.steps += 1
        loss = getattr(stats, "loss", None)
        if loss is not None:
            self._window.append(torch.as_tensor(loss).detach().float().reshape(()))
        route = getattr(stats, "route", None)
        if route is not None:
            if self.sources is not None:
                for e, n in zip(*torch.unique(self.sources, return_counts=True)):
                    self.route_counts[int(e)][int(route)] += int(n)
            elif self.experience is not None:
                self.route_counts[self.experience][int(route)] += len(batch)
        addon = self.session.addon
        if addon is not None:
            with self.session.clock.phase(f"addon:{addon.name}"):
                addon.after_step(batch, stats)
        if len(self._window) >= self.log_every:
            self.session.flush_curve()

    def flush(self, check: bool = True) -> list[list[float]]:
        """Mean loss of the steps since the last flush as ``[[last step, mean]]``; raise
        :class:`NonFiniteError` naming the first non-finite step (when ``check``)."""
        if not self._window:
            return []
        losses = torch.stack([t.to(self._window[0].device) for t in self._window]).cpu()
        first, self._window = self._window_start, []
        self._window_start = self.steps + 1
        bad = torch.nonzero(~torch.isfinite(losses)).flatten()
        if check and len(bad):
            where = f"experience {self.experience + 1}" if self.experience is not None else "the stream"
            raise NonFiniteError(f"non-finite training loss ({float(losses[bad[0]])}) at step {first + int(bad[0])} "
                                 f"of the run, in {where}; lower the learning rate")
        finite = losses[torch.isfinite(losses)]
        return [[self.steps, float(finite.mean())]] if len(finite) else [[self.steps, None]]


def evaluation_copy(strategy: Strategy) -> tuple[Strategy, int]:
    """A deep copy of the learner for evaluation that SHARES its frozen tensors
    (parameters without gradients, the frozen encoder's buffers, datasets it holds):
    the copy can be switched to eval mode, get ``before_eval`` and ``predict`` without
    the live learner ever noticing. Returns the copy and the bytes of tensors copied."""
    memo: dict[int, Any] = {}
    for p in strategy.parameters():
        if not p.requires_grad:
            memo[id(p)] = p
    encoder = strategy.frozen_encoder()
    if encoder is not None:
        for t in list(encoder.parameters()) + list(encoder.buffers()):
            memo[id(t)] = t
    for value in _held_datasets(strategy):
        memo[id(value)] = value
    copy_ = _deepcopy_skipping_generators(strategy, memo)
    copied = 0
    for t in list(copy_.parameters()) + list(copy_.buffers()):
        if id(t) not in memo:
            copied += t.numel() * t.element_size()
    return copy_, copied


def _deepcopy_skipping_generators(obj: Any, memo: dict) -> Any:
    """``copy.deepcopy``, except that Python generators (which cannot be copied; e.g. a
    data iterator inside an Avalanche plugin) become exhausted iterators in the copy:
    evaluation never resumes them."""
    import types

    dispatch = copy._deepcopy_dispatch  # type: ignore[attr-defined]
    had = dispatch.get(types.GeneratorType)
    dispatch[types.GeneratorType] = lambda gen, memo: iter(())
    try:
        return copy.deepcopy(obj, memo)
    finally:
        if had is None:
            dispatch.pop(types.GeneratorType, None)
        else:
            dispatch[types.GeneratorType] = had


def _held_datasets(strategy: Strategy) -> list[Any]:
    from torch.utils.data import Dataset

    out = []
    for value in vars(strategy).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        out += [v for v in items if isinstance(v, Dataset)]
    return out


def _eval_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def _plain_numbers(values: Any) -> dict:
    out = {}
    for k, v in dict(values or {}).items():
        if isinstance(v, torch.Tensor):
            v = v.item() if v.numel() == 1 else v.tolist()
        out[str(k)] = v
    return out


class SignalGuard:
    """SIGTERM (a time limit), SIGUSR1 and SIGUSR2 (Submitit's preemption signals) end the
    run as ``interrupted``, with the rows done so far and the checkpoint of the last
    finished experience. A signal that arrives while the record or a checkpoint is being
    written waits until the write is whole. Main thread only (elsewhere: does nothing)."""

    NAMES = ("SIGTERM", "SIGUSR1", "SIGUSR2")

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.received: Optional[int] = None
        self._pending: Optional[int] = None
        self._depth = 0
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.NAMES:
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    self.previous[sig] = signal.signal(sig, self._handle)
                    self._installed = True
                except (ValueError, OSError):  # pragma: no cover
                    pass

    def restore(self) -> None:
        """Put the previous handlers back (once; calling it again does nothing)."""
        if self._installed:
            for sig, handler in self.previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
            self._installed = False

    def chain(self) -> None:
        """Call the handler that was there before ours for the signal received, if it is a
        Python function (Submitit's requeue on its preemption signal)."""
        before = self.previous.get(self.received)
        if self.received is not None and callable(before):
            before(self.received, None)

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.received = signum
        if self._depth:
            self._pending = signum
            return
        raise Interrupted(f"signal {signum} ({signal.Signals(signum).name})")

    def critical(self) -> Any:
        @contextlib.contextmanager
        def section():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise Interrupted(f"signal {signum} ({signal.Signals(signum).name}), after the checkpoint was saved")

        return section()


def _save_quietly(record: RunRecord, results_dir: str) -> None:
    try:
        records.save(record, results_dir)
    except Exception as err:  # noqa: BLE001 - the original error is what the user must see
        warnings.warn(f"could not save the record: {type(err).__name__}: {err}", RuntimeWarning)


def _update_metrics(record: RunRecord, scenario: Scenario, evaluator) -> None:
    """Metrics of the matrix so far (columns = experiences seen so far, rows = steps
    done); an evaluator with ``extra_metrics(row_extras)`` (multi-label: avg/last mAP,
    CF1, OF1) adds its family's metrics from the extras of rows 1..done."""
    done = record.experiences_done
    steps = scenario.steps[:done]
    seen = list(dict.fromkeys(steps))
    first = [steps.index(e) + 1 for e in seen]
    partial = [[row[e] for e in seen] for row in record.matrix[: done + 1]]
    if any(v is None for row in partial for v in row):  # eval_rows=final: only the last row exists
        last = partial[-1]
        record.metrics = {"ACC": float(np.mean(last)) if last and None not in last else None}
        return
    record.metrics = metrics.summarize_schedule(partial, record.union_accuracy, scenario.kind, first)
    extra_metrics = getattr(evaluator, "extra_metrics", None)
    if extra_metrics is not None:
        record.metrics.update(extra_metrics(record.extra["rows"][1:]))
    routing = [r for r in record.extra.get("routing", []) if r]
    if routing:
        record.metrics["routing_accuracy"] = routing[-1]["accuracy"]
    record.forgetting_matrix = metrics.forgetting_matrix_schedule(partial, first)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def _backbone_params(strategy: Strategy) -> Optional[dict]:
    for m in strategy.modules():
        if isinstance(m, Backbone):
            return {**count_parameters(m), "weights_source": m.weights_source}
    return None


def _safely(logger: Any, method: str, *args: Any) -> Any:
    """Call a logger hook; a logger failure warns and never stops the run."""
    try:
        return getattr(logger, method)(*args)
    except Exception as err:  # noqa: BLE001 - loggers are best effort by design
        warnings.warn(f"{type(logger).__name__}.{method} failed: {type(err).__name__}: {err}", RuntimeWarning)
        return None


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(obj, DictConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return obj


def _new_record(scenario: Scenario, strategy: Strategy, settings: RunSettings, config: dict, run_id, device,
                addon: Optional[Addon] = None) -> RunRecord:
    now = _dt.datetime.now(_dt.timezone.utc)
    run_id = run_id or f"{now:%Y%m%dT%H%M%S}-s{settings.seed}-{uuid.uuid4().hex[:6]}"
    deviations = list(strategy.deviations()) + list(scenario.description.get("deviations", []))
    if not scenario.visibility.boundaries and "epochs" in _plain(strategy.config):
        deviations.append(f"epochs ignored: the task-agnostic stream repeats each experience {scenario.repeats}x")
    if scenario.visibility.boundaries and settings.val_fraction > 0 and strategy.paper_defaults \
            and not strategy.uses_validation:
        deviations.append(f"trained on {1 - settings.val_fraction:.0%} of each experience (val_fraction="
                          f"{settings.val_fraction} held out; the paper trains on all of it and selects nothing on it)")
    if addon is not None:
        deviations += addon.deviations()
    if scenario.augmentation != "none" and strategy.frozen_encoder() is not None:
        deviations.append(f"no training augmentation ({scenario.augmentation}): the frozen encoder's features are "
                          "computed once per image")
    name = getattr(strategy, "name", type(strategy).__name__)
    info = {
        "name": f"{name}+{addon.name}" if addon is not None else name, "base": name,
        "config": _plain(strategy.config), "backbone": _plain(strategy.backbone_config),
        "deviations": strategy.deviations(),
    }
    if addon is not None:
        info["addon"] = {"name": addon.name, "config": _plain(addon.config)}
    return RunRecord(
        run_id=run_id,
        created=now.isoformat(timespec="seconds"),
        seed=settings.seed,
        scenario={
            "name": scenario.name, "kind": scenario.kind, "visibility": asdict(scenario.visibility),
            "num_experiences": len(scenario.experiences), "num_classes": scenario.num_classes,
            "class_order": list(scenario.class_order), "class_names": scenario.class_names,
            "experience_classes": [list(e.classes) for e in scenario.experiences],
            "schedule": scenario.steps, "train_sizes": [len(e.train) for e in scenario.experiences],
            "test_sizes": [len(e.test) for e in scenario.experiences], "stream_size": scenario.stream_size(
                settings.val_fraction), "augmentation": scenario.augmentation,
            "description": scenario.description, "repeats": scenario.repeats,
        },
        strategy=info,
        config=config,
        matrix=[],
        deviations=deviations,
        environment=_environment(device),
        compute={},
        timing={},
    )


def _environment(device: torch.device) -> dict:
    import clbench

    from importlib import metadata

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod, dist in (("torchvision", "torchvision"), ("hydra", "hydra-core"), ("wandb", "wandb")):
        try:  # the installed version, without importing the package (torchvision + wandb: 0.4-1.5 s)
            versions[mod] = metadata.version(dist)
        except Exception:  # noqa: BLE001 - optional
            pass
    return {
        "clbench_version": clbench.__version__,
        "git_sha": _git_sha(),
        "versions": versions,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "host": platform.node(),
    }


def _git_sha() -> Optional[str]:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
