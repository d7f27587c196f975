"""One run's training and evaluation: the loop over experiences (or the one continuous
task-agnostic stream), lazy encoding by a frozen encoder, and one matrix row per step
evaluated on an evaluation copy of the learner (PROTOCOL.md)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from clbench import rng
from clbench.api.addon import Addon
from clbench.api.augment import get_augmentation
from clbench.api.auxdata import load_aux
from clbench.api.data import gather, split_validation
from clbench.api.scenario import Scenario
from clbench.api.strategy import Strategy, harnessed
from clbench.api.view import LearnerView, make_batch
from clbench.models.features import encode
from clbench.progress import run_progress
from clbench.protocol import bookkeeping, budget, checkpoints, memory
from clbench.protocol.online import OnlineEvaluator
from clbench.protocol.evaluation import EVALUATORS, RowResult, routing_accuracy, score_mixed
from clbench.protocol.memory_format import learner_memory_format, to_memory_format
from clbench.protocol.monitor import StepMonitor
from clbench.protocol.phases import PhaseClock, is_training_phase
from clbench.protocol.snapshot import evaluation_copy
from clbench.results import records
from clbench.results.records import RunRecord
from clbench.settings import RunSettings
from clbench.types import ExperienceInfo

import clbench.protocol.multilabel  # noqa: F401  (registers the multi-label evaluator)


def train_experience(strategy: Strategy, view: LearnerView, info: ExperienceInfo,
                     memory_format: Optional[torch.memory_format] = None) -> None:
    """One experience where boundaries are visible: ``begin_experience``, the strategy's
    ``train_experience`` on ``view``, ``end_experience``, in training mode. The protocol
    and the Avalanche adapter both train through here. ``memory_format``: the learner's
    weights in it once the experience's modules exist (``channels_last``: what the
    strategy grew in ``begin_experience`` too)."""
    strategy.train()
    strategy.begin_experience(info)
    if memory_format is not None:
        to_memory_format(strategy, memory_format)
    strategy.train_experience(view)
    strategy.end_experience()


class Session:
    """One run's training and evaluation. ``protocol.run`` drives it; the Avalanche
    adapter uses the same pieces (``train_experience``, ``evaluation_copy``)."""

    def __init__(self, scenario: Scenario, strategy: Strategy, settings: RunSettings, device: torch.device,
                 clock: PhaseClock, progress: Any, record: RunRecord, loggers: Sequence[Any] = (),
                 addon: Optional[Addon] = None, guard: Any = None, checkpoints: Optional[Path] = None) -> None:
        self.scenario, self.strategy, self.settings, self.device = scenario, strategy, settings, device
        self.clock, self.progress, self.record, self.loggers, self.addon = clock, progress, record, loggers, addon
        self.evaluator = EVALUATORS.get(scenario.kind)
        self.generator = torch.Generator().manual_seed(settings.seed)  # splits and training order
        self.augmentation = get_augmentation(scenario.augmentation)
        self.encoder: Optional[nn.Module] = None
        #: the learner's conv weights in channels_last (the default): faster oneDNN/cuDNN kernels
        self.memory_format = learner_memory_format(settings, strategy)
        self._encoded: dict[tuple[str, int], Any] = {}
        self.monitor = StepMonitor(settings.log_every, after_step=self._addon_step if addon is not None else None,
                                   on_window=self.flush_curve)
        self.guard = guard  # signals wait while the record or a checkpoint is written
        self.checkpoints = checkpoints  # where experience checkpoints go (None: none are saved)
        self.stream_state: Optional[dict] = None  # task-agnostic: the planned stream and the position in it
        self.meter = budget.BudgetMeter(settings.budget, clock, lambda: self.monitor.steps) \
            if settings.budget.active() else None  # compute-/memory-matched mode (budget.*)
        if self.meter is not None:
            budget.declare(record, settings.budget)
        self.online = OnlineEvaluator(self, settings.eval_every) if settings.eval_every else None

    def _on_step(self, batch: Any, stats: Any) -> None:
        self.monitor(batch, stats)
        if self.online is not None:
            self.online.after_step(self.monitor.steps)

    # -- the run ---------------------------------------------------------------
    def run(self, data_root: Optional[Path], resume: Optional[dict] = None) -> None:
        """The whole run; ``resume``: a checkpoint's payload to continue from (after the
        same preparation as the original run, its saved state replaces the live one)."""
        s, sc, rec = self.strategy, self.scenario, self.record
        aux, facts = load_aux(s.aux_requests(), data_root=data_root, input_shape=sc.input_shape,
                              stream_dataset=sc.dataset)
        rec.strategy["aux_data"] = facts
        printer = getattr(self.progress, "print", None)
        if printer is not None and self.settings.progress:
            for line in bookkeeping.plan_lines(sc, s, self.settings, rec):
                printer(line)
        with self.clock.phase("prepare", sync=True), self.progress.phase("prepare"), run_progress(self.progress):
            s.prepare(aux)  # setup loops inside (key init, pretraining) report to the run's progress
        if self.memory_format is not None:  # a trunk built in prepare() (pretrained, loaded) is converted too
            to_memory_format(s, self.memory_format)
        if self.addon is not None:
            self.addon.attach(s)
        self.encoder = s.frozen_encoder()
        if self.encoder is not None:
            self.encoder.to(self.device)
        self.initial_keys = set(s.state_dict())  # what a strategy built the same way can load
        self.train_sets, self.val_sets = self._splits()
        self.test_sets = [e.test for e in sc.experiences]
        if resume is None:
            rec.params = {"initial": bookkeeping.parameter_counts(s), "after": [], "added": []}
            rec.timing.update(train_s=[], eval_s=[], flops=[], phases=[])
            rec.extra.update(rows=[], aux=[], routing=[], loss_curve=[], first_steps=[])
            self.evaluate_row(0)
            self.end_row(0)
            first = 1
        else:
            first = checkpoints.restore_session(self, resume) + 1
        self._plan_progress(first)
        with harnessed(s, clock=self.clock, on_step=self._on_step if self.online is not None else self.monitor):
            if sc.visibility.boundaries:
                self._run_experiences(first)
            else:
                self._run_stream()

    def _plan_progress(self, first: int) -> None:
        """Tell the progress the whole run's training samples (those of steps before ``first``
        are done), so that it shows the run's ETA, not only the phase's."""
        plan = getattr(self.progress, "plan_run", None)
        if plan is None:
            return
        sc, sizes = self.scenario, self.scenario.train_sizes(self.settings.val_fraction)
        if sc.visibility.boundaries:
            per_step = [sizes[e] * max(1, getattr(self.strategy.config, "epochs", 1) or 1) for e in sc.steps]
            plan(sum(per_step), done=sum(per_step[:first - 1]), phases=("train ",))
        else:  # a resumed stream advances by its position first: the progress does not take it for speed
            plan(sc.stream_size(self.settings.val_fraction), phases=("stream",))

    def _addon_step(self, batch: Any, stats: Any) -> None:
        with self.clock.phase(f"addon:{self.addon.name}"):
            self.addon.after_step(batch, stats)

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
            self.record.extra["first_steps"].append(self.monitor.steps)  # where this experience's training begins
            train = self.encoded("train", e, self.train_sets[e])
            validation = self.encoded("validation", e, self.val_sets[e])
            self.monitor.experience = e
            task_id = exp.task_id if vis.task_id_train else None
            with self.progress.phase(f"train {step}/{len(steps)}", total=len(train) * max(1, s.config.epochs)) as advance:
                view = budget.budgeted_view(self.meter, train, validation, task_id=task_id, device=self.device,
                                            generator=self.generator, on_batch=advance,
                                            num_workers=self.settings.num_workers,
                                            augmentation=None if self.encoder is not None else self.augmentation)
                if self.online is not None:
                    self.online.row = step
                if self.meter is not None:
                    self.meter.start()  # this experience's budget (also right after a resume)
                with self.clock.phase("train", sync=True):
                    train_experience(s, view, ExperienceInfo(e, tuple(exp.classes), task_id), self.memory_format)
                if self.online is not None:
                    self.online.row = 0
                    self.online.end_experience(self.monitor.steps)
                if self.addon is not None:
                    with self.clock.phase(f"addon:{self.addon.name}", sync=True):
                        self.addon.end_experience()
                if step == len(steps):
                    self._end_stream()
                self.flush_curve()  # the experience's loss on its progress line, even with fewer steps than log_every
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
            starts = [0] + self.stream_state["ends"][:-1]  # the batch holding each stretch's first sample
            self.record.extra["first_steps"] = [self.monitor.steps + start // bs for start in starts]
            self._warn_short_tasks([len(p[0]) for p in plan], bs)
        state = self.stream_state
        if self.meter is not None:
            self.meter.start()  # the current stretch's budget (also right after a resume)
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
                if self.online is not None:
                    self.online.row = next_row
                if self.meter is not None and self.meter.compute_limited and self.meter.exhausted():
                    self.meter.stopped = True  # the stretch's budget is spent: its remaining batches pass untrained
                else:
                    with self.clock.phase("train"):
                        s.observe(batch)
                done = start + len(src)
                if advance is not None:
                    advance(len(src))
                while next_row <= len(ends) and ends[next_row - 1] <= done:
                    if self.online is not None:
                        self.online.row = 0
                        self.online.end_experience(self.monitor.steps)
                    if next_row == len(ends):
                        self._end_stream()
                    state.update(position=done, next_row=next_row + 1)  # where a resume continues
                    self.evaluate_row(next_row)
                    self.end_row(next_row)
                    next_row += 1

    def _warn_short_tasks(self, lengths: list[int], bs: int) -> None:
        """Stretches of the planned stream shorter than the strategy's ``min_batches_per_task``:
        a warning in ``record.extra["warnings"]``, as a RuntimeWarning and on the progress output."""
        need, name = self.strategy.min_batches_per_task(), self.record.strategy.get("name")
        batches = [n / bs for n in lengths]
        short = [b for b in batches if need and b < need]
        if not short:
            return
        span = f"{min(short):.3g}" + ("" if min(short) == max(short) else f"-{max(short):.3g}")
        message = (f"{name}: tasks shorter than it needs: {len(short)} of {len(batches)} stretches of the stream last "
                   f"{span} batches of {bs}, and {name} needs {need} batches per task "
                   f"(min_batches_per_task); this run does not measure the method (lengthen the tasks: "
                   f"scenario.repeats=, scenario.train_per_class=)")
        import warnings

        warnings.warn(message, RuntimeWarning, stacklevel=2)
        self.record.extra.setdefault("warnings", []).append(message)
        if hasattr(self.progress, "print"):
            self.progress.print(f"warning: {message}")

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
        seed = rng.eval_seed(self.settings.seed, step)
        generator = torch.Generator().manual_seed(seed)
        with rng.forked(seed, self.device):  # the copy's global draws: seeded, then forgotten
            with self.clock.phase("eval", sync=True):
                copy_, copied_bytes = evaluation_copy(self.strategy)
                self.record.compute["snapshot_bytes"] = copied_bytes
            with self.clock.phase("before_eval", sync=True):
                copy_.before_eval()
            aux = bookkeeping.plain_numbers(copy_.metrics())
            if self.addon is not None:
                aux.update({f"{self.addon.name}.{k}": v
                            for k, v in bookkeeping.plain_numbers(self.addon.metrics()).items()})
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
        if self.meter is not None and step > 0 and self.meter.compute_limited:
            budget.book(rec, self.meter, flops)
        used = memory.memory_bytes(self.strategy)
        rec.compute.setdefault("memory", []).append(used)  # row 0: after preparation
        rec.timing["phases"].append({k: round(v, 6) for k, v in seconds.items()})
        if flops is not None:
            rec.compute.setdefault("flops_phases", []).append(flops)
        if step == 0:
            rec.timing["prepare_s"] = seconds.get("prepare", 0.0)
            rec.timing["encode_s"] = seconds.get("encode", 0.0)
            self._after_row(0, used)
            return
        rec.timing["encode_s"] = rec.timing.get("encode_s", 0.0) + seconds.get("encode", 0.0)
        rec.timing["train_s"].append(sum(v for k, v in seconds.items() if is_training_phase(k)))
        rec.timing["eval_s"].append(seconds.get("eval", 0.0))
        train_flops = None if flops is None else sum(v for k, v in flops.items() if is_training_phase(k))
        rec.timing["flops"].append(train_flops)
        if flops is not None:
            rec.compute["train_flops"] = sum(f for f in rec.timing["flops"] if f is not None)
        counts = bookkeeping.parameter_counts(self.strategy)
        rec.params["after"].append(counts)
        prev = rec.params["after"][-2] if step > 1 else rec.params["initial"]
        rec.params["added"].append({k: counts[k] - prev.get(k, 0) for k in counts})
        rec.experiences_done = step
        self.flush_curve()
        bookkeeping.update_metrics(rec, sc, self.evaluator)
        rec.compute["peak_memory_bytes"] = bookkeeping.peak_memory(self.device)
        with self.critical():  # a signal now waits until the record and checkpoint are whole
            records.save(rec, self.settings.results_dir)
            if step < len(sc.steps) and self.checkpoints is not None:
                checkpoints.save_session(self, step)
        for lg in self.loggers:
            safely(lg, "log_row", step, rec.matrix[-1], rec)
        self._after_row(step, used)

    def _after_row(self, step: int, used: dict) -> None:
        """The budget's checks between rows: the memory cap (the record of the rows done is
        saved first), then a fresh compute budget for the next experience."""
        if self.meter is not None:
            memory.check_memory(used, self.settings.budget.memory_bytes,
                                "after preparation" if step == 0 else f"after experience {step}")
            self.meter.start()

    def critical(self) -> Any:
        return self.guard.critical() if self.guard is not None else contextlib.nullcontext()

    def flush_curve(self, check: bool = True) -> None:
        points = self.monitor.flush(check=check)
        self.record.extra.setdefault("loss_curve", []).extend(points)
        if points and points[-1][1] is not None and hasattr(self.progress, "set_postfix"):
            self.progress.set_postfix(f"step {points[-1][0]:,} loss {points[-1][1]:.4f}")
        for lg in self.loggers:
            if hasattr(lg, "log_steps"):
                for step, loss in points:
                    safely(lg, "log_steps", step, {"train/loss": loss})


def safely(logger: Any, method: str, *args: Any) -> Any:
    """Call a logger hook; a logger failure warns and never stops the run."""
    import warnings

    try:
        return getattr(logger, method)(*args)
    except Exception as err:  # noqa: BLE001 - loggers are best effort by design
        warnings.warn(f"{type(logger).__name__}.{method} failed: {type(err).__name__}: {err}", RuntimeWarning)
        return None
