"""Compute-matched mode (PROTOCOL.md, "Budgets"): ``budget.steps`` / ``budget.flops`` per
experience. The learner's view stops handing out batches once the experience's budget is
spent, so the strategy's own loop ends where it would end after its last batch (its
``end_experience`` still runs); steps are counted by the protocol's step monitor, FLOPs
with the per-phase FLOP counter over the training phases. The record says the budget
and what each experience and phase used (``compute.budget``)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from clbench import fields
from clbench.api.view import LearnerView
from clbench.protocol.phases import PhaseClock, is_training_phase
from clbench.settings import BudgetSettingError, BudgetSettings
from clbench.types import Batch


def check_budget(budget: BudgetSettings) -> None:
    """Refuse out-of-range ``budget.*`` values, naming each and its valid range."""
    found = fields.problems(budget, "budget.")
    if found:
        raise BudgetSettingError("; ".join(found))


class BudgetMeter:
    """What the current experience has spent of its step and FLOP budget."""

    def __init__(self, budget: BudgetSettings, clock: PhaseClock, steps: Callable[[], int]) -> None:
        check_budget(budget)
        self.budget, self.clock, self._run_steps = budget, clock, steps  # steps: the run's step count so far
        self._steps_start = steps()
        self._flops_start = 0
        self.stopped = False  # whether the budget cut this experience's training short

    @property
    def compute_limited(self) -> bool:
        return self.budget.steps is not None or self.budget.flops is not None

    def start(self) -> None:
        """A new experience: nothing spent."""
        self._steps_start, self.stopped = self._run_steps(), False
        self._flops_start = self.clock.training_flops()

    @property
    def steps(self) -> int:
        """Optimisation steps of the live learner in this experience."""
        return self._run_steps() - self._steps_start

    @property
    def flops(self) -> int | None:
        """Training FLOPs spent in this experience (None when not counted)."""
        if not self.clock.counting_flops:
            return None
        return self.clock.training_flops() - self._flops_start

    def exhausted(self) -> bool:
        """Whether no further training step may start in this experience."""
        steps_spent = self.budget.steps is not None and self.steps >= self.budget.steps
        return steps_spent or (self.budget.flops is not None and (self.flops or 0) >= self.budget.flops)

    def report(self) -> dict[str, Any]:
        """This experience's use: steps, FLOPs, whether the budget stopped training."""
        return {"steps": self.steps, "flops": self.flops, "stopped": self.stopped}


class BudgetedView(LearnerView):
    """A :class:`LearnerView` that hands out no training batch once ``meter`` is exhausted
    (every shuffled loop a strategy runs over its view: the experience's data, its own store
    of past data); in-order passes (the validation split, scoring) are not training and pass."""

    meter: BudgetMeter

    def batches_of(self, data: Any, batch_size: int, **kwargs: Any) -> Iterator[Batch]:
        inner = super().batches_of(data, batch_size, **kwargs)
        if not kwargs.get("shuffle", True):  # an in-order pass (validation, scoring its own data): not training
            yield from inner
            return
        try:
            while True:
                if self.meter.exhausted():  # checked before a batch is drawn: no data order is consumed
                    self.meter.stopped = True
                    return
                try:
                    batch = next(inner)
                except StopIteration:
                    return
                yield batch
        finally:
            inner.close()


def budgeted_view(meter: BudgetMeter | None, *args: Any, **kwargs: Any) -> LearnerView:
    """The learner's view, stopped at ``meter``'s budget where a compute budget is set."""
    if meter is None or not meter.compute_limited:
        return LearnerView(*args, **kwargs)
    view = BudgetedView(*args, **kwargs)
    view.meter = meter
    return view


def declare(record: Any, budget: BudgetSettings) -> dict:
    """``record.compute["budget"]``: the limits, and a list for each experience's use."""
    return record.compute.setdefault("budget", {"steps": budget.steps, "flops": budget.flops,
                                                "memory_bytes": budget.memory_bytes, "per_experience": []})


def book(record: Any, meter: BudgetMeter, flops_phases: dict | None) -> None:
    """Add this experience's use (and each training phase's FLOPs) to ``compute.budget``."""
    entry = meter.report()
    if flops_phases is not None:
        entry["phases"] = {k: v for k, v in flops_phases.items() if is_training_phase(k)}
    declare(record, meter.budget)["per_experience"].append(entry)
