"""Evaluation of one matrix row: the model after step i on every experience's test set."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import torch
from torch.utils.data import Dataset

from clbench.data import iterate
from clbench.registry import Registry
from clbench.scenario import Scenario
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL

Predict = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


@dataclass
class RowResult:
    """Row i of the accuracy matrix, plus the accuracy on the union of seen test sets."""

    accuracy: list[float]
    union_accuracy: Optional[float]  # None for row 0
    extra: dict = field(default_factory=dict)


class Evaluator(Protocol):
    def __call__(self, predict: Predict, scenario: Scenario, step: int, test_sets: list[Dataset],
                 *, device: torch.device, batch_size: int) -> RowResult: ...


EVALUATORS: Registry[Evaluator] = Registry("evaluator")


def seen_classes(scenario: Scenario, step: int) -> list[int]:
    """Classes introduced by experiences 1..step."""
    return sorted({c for e in scenario.experiences[:step] for c in e.classes})


@torch.no_grad()
def evaluate_single_label(predict: Predict, scenario: Scenario, step: int, test_sets: list[Dataset],
                          *, device: torch.device, batch_size: int) -> RowResult:
    """PROTOCOL.md: class-incremental argmax over the classes seen by ``step``, so an
    experience not yet trained (j > step, and every j in row 0) scores 0 by
    construction and is not run; task-incremental argmax over experience j's classes,
    with j's task id passed to ``predict``."""
    task_aware = scenario.visibility.task_id_test
    seen = seen_classes(scenario, step)
    correct, total = [], []
    for j, (exp, data) in enumerate(zip(scenario.experiences, test_sets)):
        if not task_aware and j >= step:  # all of its classes are masked out
            correct.append(0)
            total.append(len(data))
            continue
        allowed = torch.zeros(scenario.num_classes, dtype=torch.bool, device=device)
        allowed[list(exp.classes) if task_aware else seen] = True
        n_right = n = 0
        for x, y, *_ in iterate(data, batch_size, shuffle=False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            task = torch.full((len(y),), exp.task_id, dtype=torch.long, device=device) if task_aware else None
            scores = predict(x, task).masked_fill(~allowed, float("-inf"))
            n_right += int((scores.argmax(dim=1) == y).sum())
            n += len(y)
        correct.append(n_right)
        total.append(n)
    accuracy = [c / n if n else 0.0 for c, n in zip(correct, total)]
    union = sum(correct[:step]) / max(1, sum(total[:step])) if step > 0 else None
    return RowResult(accuracy, union, {"correct": correct, "total": total})


for _kind in (CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC):
    EVALUATORS.register(_kind, evaluate_single_label)

from clbench import multilabel as _multilabel  # noqa: E402,F401  (registers the multi-label evaluator)
