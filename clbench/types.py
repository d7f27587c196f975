"""The small value types shared by scenarios, strategies and the protocol."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.utils.data import Dataset

CLASS_INCREMENTAL = "class_incremental"
TASK_INCREMENTAL = "task_incremental"
MULTILABEL = "multilabel"
TASK_AGNOSTIC = "task_agnostic"
KINDS = (CLASS_INCREMENTAL, TASK_INCREMENTAL, MULTILABEL, TASK_AGNOSTIC)

#: What a strategy may ask to see (its ``needs``); the fields of :class:`Visibility`.
VISIBLE_THINGS = ("task_id_train", "task_id_test", "boundaries")


@dataclass(frozen=True)
class Visibility:
    """What the learner may see: task ids in training / at test, experience boundaries."""

    task_id_train: bool
    task_id_test: bool
    boundaries: bool

    def shows(self, thing: str) -> bool:
        return bool(getattr(self, thing))


#: Each scenario family fixes what its learner may see (ARCHITECTURE.md, "Visibility").
VISIBILITY_BY_KIND = {
    CLASS_INCREMENTAL: Visibility(task_id_train=False, task_id_test=False, boundaries=True),
    TASK_INCREMENTAL: Visibility(task_id_train=True, task_id_test=True, boundaries=True),
    MULTILABEL: Visibility(task_id_train=False, task_id_test=False, boundaries=True),
    TASK_AGNOSTIC: Visibility(task_id_train=False, task_id_test=False, boundaries=False),
}


@dataclass(frozen=True)
class ScenarioInfo:
    """What a strategy is told when it is built; never the content of future experiences."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    num_classes: int
    visibility: Visibility

    @property
    def multilabel(self) -> bool:
        return self.kind == MULTILABEL


@dataclass
class Experience:
    """One experience of a stream. Owned by the protocol: strategies never get one.

    ``train`` and ``test`` yield ``(x, y)`` (single-label, ``y`` a global class id) or
    ``(x, y, known)`` (multi-label: multi-hot ``y`` and a mask of the labels that are
    known in this experience). Task ids are never stored in the data; the protocol
    attaches them to batches only where the scenario shows them.
    """

    index: int  # 0-based; the matrix row after training it is index + 1
    train: Dataset
    test: Dataset
    classes: tuple[int, ...]
    task_id: int


@dataclass(frozen=True)
class ExperienceInfo:
    """What ``begin_experience`` is told (only where boundaries are visible)."""

    index: int
    classes: tuple[int, ...]
    task_id: Optional[int]  # None where task ids are hidden in training


@dataclass
class Batch:
    """One training batch as the learner sees it.

    ``task`` is None where task ids are hidden; ``known`` is None for single-label
    data and otherwise a bool mask (same shape as ``y``) of the labels that are known.
    """

    x: torch.Tensor
    y: torch.Tensor
    task: Optional[torch.Tensor] = None
    known: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class StepStats:
    """What one optimisation step reports back."""

    loss: float
    n: int = 0
    extra: dict = field(default_factory=dict)
