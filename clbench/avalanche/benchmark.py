"""An Avalanche benchmark as a clbench :class:`~clbench.api.scenario.Scenario`.

The train and test streams are paired experience by experience. The family (and so
what the learner sees) comes from the benchmark's task labels: one distinct label
per experience makes it task-incremental, a single label throughout makes it
class-incremental. Class ids that repeat across tasks (``class_ids_from_zero_in_each_exp``)
are made global by offsetting each task's ids, as a multi-head model would.
Avalanche is imported by the caller; this module only reads the objects it is given.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from clbench.api.data import TensorData
from clbench.api.scenario import Scenario
from clbench.errors import UserError
from clbench.types import CLASS_INCREMENTAL, TASK_INCREMENTAL, Experience


class BridgeError(UserError, ValueError):
    """A benchmark, plugin or model the Avalanche bridge cannot use: the message names it
    and what would work (reported by the CLI without a traceback)."""


class BridgeTypeError(UserError, TypeError):
    """An argument of the Avalanche bridge of the wrong kind (an unknown keyword, a model
    that is no ``nn.Module``)."""


@dataclass
class BenchmarkLayout:
    """What clbench needs to know of an Avalanche benchmark, read without loading images."""

    kind: str
    task_labels: list[int]  # one per experience
    classes: list[tuple[int, ...]]  # global class ids of each experience
    offsets: list[int]  # added to an experience's targets to make them global
    num_classes: int
    input_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)
    train_sizes: list[int] = field(default_factory=list)  # training samples of each experience

    def info(self, name: str, val_fraction: float = 0.1):
        """What a strategy is told (``stream_size`` after the validation hold-out)."""
        from clbench.types import VISIBILITY_BY_KIND, ScenarioInfo

        stream = sum(n - int(round(n * val_fraction)) for n in self.train_sizes)
        return ScenarioInfo(name, self.kind, self.input_shape, self.num_classes, VISIBILITY_BY_KIND[self.kind],
                            stream_size=stream, num_experiences=len(self.classes), dataset=name)


def _targets(dataset: Any) -> list[int]:
    return [int(t) for t in dataset.targets]


def _task_labels_of(dataset: Any) -> list[int]:
    labels = getattr(dataset, "targets_task_labels", None)
    return sorted(int(t) for t in labels.uniques) if labels is not None else [0]


def read_layout(benchmark: Any, kind: Optional[str] = None) -> BenchmarkLayout:
    """Kind, task label and classes of each experience of ``benchmark`` (its train stream).

    ``kind=None`` derives the family from the task labels; ``class_incremental`` may be
    forced on a task-labelled benchmark (the labels are then hidden from the learner);
    ``task_incremental`` is refused where the labels do not tell experiences apart.
    """
    if kind not in (None, CLASS_INCREMENTAL, TASK_INCREMENTAL):
        raise BridgeError(f"unknown kind {kind!r} for an Avalanche benchmark; valid choices: None, "
                         f"{CLASS_INCREMENTAL!r}, {TASK_INCREMENTAL!r}")
    train, test = list(benchmark.train_stream), list(benchmark.test_stream)
    if len(train) != len(test) or not train:
        raise BridgeError(f"an Avalanche benchmark needs as many test as train experiences (>= 1); "
                         f"got {len(train)} train and {len(test)} test")
    tasks, local = [], []
    for i, exp in enumerate(train):
        labels = _task_labels_of(exp.dataset)
        if len(labels) != 1:
            raise BridgeError(f"train experience {i} mixes task labels {labels}; clbench experiences have one task")
        tasks.append(labels[0])
        local.append(tuple(sorted(set(_targets(exp.dataset)))))
    distinct = len(set(tasks)) == len(tasks) and len(tasks) > 1
    derived = TASK_INCREMENTAL if distinct else CLASS_INCREMENTAL
    if kind == TASK_INCREMENTAL and not distinct:
        raise BridgeError(f"kind {TASK_INCREMENTAL!r} asked for, but the benchmark's task labels {tasks} do not "
                         "tell its experiences apart; build it with task labels (e.g. return_task_id=True)")
    kind = kind or derived
    notes = []
    offsets = [0] * len(train)
    overlap = sum(len(c) for c in local) != len(set().union(*local))
    if overlap and kind == TASK_INCREMENTAL:
        width = max(max(c) + 1 for c in local)
        offsets = [width * i for i in range(len(train))]
        notes.append(f"class ids repeat across tasks: experience i's ids are offset by {width}*i to make them global")
    elif overlap:
        notes.append("classes repeat across experiences (new instances of the same classes, e.g. PermutedMNIST)")
    classes = [tuple(c + off for c in cl) for cl, off in zip(local, offsets)]
    num_classes = max(max(c) for c in classes) + 1
    x = train[0].dataset.eval()[0][0]
    x = torch.as_tensor(x)
    return BenchmarkLayout(kind, tasks, classes, offsets, num_classes, tuple(x.shape), notes,
                           [len(e.dataset) for e in train])


class AvalancheData(Dataset):
    """An Avalanche dataset read as clbench data: ``(x, y)`` with global class ids (the
    task label, which clbench attaches itself where it is visible, is dropped)."""

    def __init__(self, dataset: Any, offset: int, fingerprint: str) -> None:
        self.dataset, self.offset, self.fingerprint = dataset, offset, fingerprint

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        return torch.as_tensor(item[0]), torch.as_tensor(int(item[1]) + self.offset)


def materialize(data: AvalancheData, batch_size: int = 512) -> TensorData:
    """All of ``data`` in memory (transforms applied once) for the fast tensor path."""
    xs, ys = [], []
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(y)
    return TensorData(torch.cat(xs), torch.cat(ys).long(), fingerprint=data.fingerprint)


def _per_class_indices(targets: Sequence[int], per_class: Optional[int], seed: int) -> Optional[list[int]]:
    if per_class is None:
        return None
    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(list(targets))
    keep = []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(keep).sort().values.tolist()


def scenario_from_benchmark(
    benchmark: Any,
    *,
    name: str = "avalanche",
    kind: Optional[str] = None,
    class_names: Optional[list[str]] = None,
    materialize_data: bool = True,
    train_per_class: Optional[int] = None,
    test_per_class: Optional[int] = None,
    seed: int = 0,
    description: Optional[dict] = None,
    has_train_transforms: bool = True,
) -> Scenario:
    """Wrap an Avalanche benchmark (train_stream / test_stream) as a clbench Scenario.

    ``materialize_data`` loads each experience into memory once (fast; random train
    augmentations are then applied once, which is recorded as a deviation).
    ``train_per_class`` / ``test_per_class`` subsample each experience (seeded).
    ``has_train_transforms=False`` says there is no augmentation to lose by materializing.
    """
    layout = read_layout(benchmark, kind)
    description = dict(description or {})
    deviations = list(description.pop("deviations", []))
    experiences = []
    for i, (tr, te) in enumerate(zip(benchmark.train_stream, benchmark.test_stream)):
        sets = []
        for split, exp, per_class, s in (("train", tr, train_per_class, seed), ("test", te, test_per_class, seed + 1)):
            ds = exp.dataset.train() if split == "train" else exp.dataset.eval()
            targets = _targets(ds)
            keep = _per_class_indices(targets, per_class, s + 1000 * i)
            if keep is not None:
                ds = ds.subset(keep)
                targets = [targets[k] for k in keep]
            digest = hashlib.sha1(str(targets).encode()).hexdigest()[:12]
            data = AvalancheData(ds, layout.offsets[i], f"avalanche/{name}/{split}{i}/n{len(targets)}/{digest}")
            sets.append(materialize(data) if materialize_data else data)
        experiences.append(Experience(i, sets[0], sets[1], layout.classes[i], layout.task_labels[i]))
    if train_per_class is not None or test_per_class is not None:
        deviations.append(f"subsampled: {train_per_class} train / {test_per_class} test images per class")
    if materialize_data and has_train_transforms:
        deviations.append("avalanche data materialized: train transforms applied once, not per epoch")
    order = list(dict.fromkeys(c for cl in layout.classes for c in cl))
    return Scenario(
        name=name, kind=layout.kind, experiences=experiences, num_classes=layout.num_classes,
        input_shape=layout.input_shape, class_order=order, class_names=class_names,
        description={"source": "avalanche", **description, "notes": layout.notes, "deviations": deviations,
                     "task_labels": layout.task_labels},
    )
