"""The small value types shared by scenarios, strategies and the protocol."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

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
    """What a strategy is told when it is built; never the content of future experiences.

    ``stream_size``: training samples the whole stream will deliver (after the validation
    hold-out, repeats included): what a method that plans over the stream (k-FPF) needs,
    and nothing about where boundaries fall. ``num_experiences``: T where boundaries are
    visible, None in the task-agnostic family. ``dataset``: the source data set's name
    (a method may pick its recipe by it, e.g. MULTI-LANE's VOC vs COCO settings).
    ``augmentation``: the training augmentation the scenario declares (``clbench.api.augment``).
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    num_classes: int
    visibility: Visibility
    stream_size: int = 0
    num_experiences: Optional[int] = None
    dataset: str = "?"
    augmentation: str = "none"

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
    ``raw``: the inputs before the scenario's training augmentation (Mammoth's
    ``not_aug_inputs``); buffers store these and augment them again when replayed.
    It is ``x`` itself where the scenario declares no augmentation.
    """

    x: torch.Tensor
    y: torch.Tensor
    task: Optional[torch.Tensor] = None
    known: Optional[torch.Tensor] = None
    raw: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.raw is None:
            self.raw = self.x

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class StepStats:
    """What one optimisation step reports back.

    ``loss``: a tensor (kept on the device: the protocol accumulates it without a host
    sync per step) or a float. ``route``: an id of the path this step trained (e.g. the
    active expert), from which the protocol computes routing accuracy; None if the
    method has no routes. ``extra``: other per-step scalars (tensors or floats).
    """

    loss: Union[torch.Tensor, float]
    n: int = 0
    route: Optional[int] = None
    extra: dict = field(default_factory=dict)


@dataclass
class Prediction:
    """What ``predict`` may return instead of bare scores: the scores and, per sample,
    the route the method chose (e.g. the expert its selector picked). The protocol
    scores routes against the true experiences; the method never sees the truth."""

    scores: torch.Tensor
    route: Optional[torch.Tensor] = None
