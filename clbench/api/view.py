"""The learner's view of an experience: only what the scenario's visibility allows."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import Dataset

from clbench.api.augment import Augmentation
from clbench.api.data import iterate, resident
from clbench.types import Batch


class LearnerView:
    """Training (and validation) data of one experience, batched for the learner.

    Built by the protocol. It holds no test split, and a task id only where the
    scenario shows task ids in training: there is nothing hidden to reach for.
    """

    def __init__(
        self,
        train: Dataset,
        validation: Optional[Dataset],
        *,
        task_id: Optional[int],
        device: torch.device,
        generator: torch.Generator,
        on_batch: Optional[Callable[[int], None]] = None,
        num_workers: int = 0,
        augmentation: Optional[Augmentation] = None,
    ) -> None:
        self.train = train
        self.validation = validation
        self.task_id = task_id
        self.device = device
        self._generator = generator
        self._on_batch = on_batch
        self._num_workers = num_workers
        self._augmentation = augmentation
        self._resident: dict[int, tuple[Dataset, Dataset]] = {}  # id -> (data set, its copy on the device)

    def batches(self, batch_size: int, *, split: str = "train", shuffle: Optional[bool] = None) -> Iterator[Batch]:
        """Batches of ``split`` ("train" or "validation"), shuffled by default for training."""
        data = {"train": self.train, "validation": self.validation}.get(split, KeyError)
        if data is KeyError:
            raise ValueError(f"unknown split {split!r}; valid choices: 'train', 'validation'")
        if data is None:
            return iter(())
        return self.batches_of(data, batch_size, shuffle=(split == "train") if shuffle is None else shuffle)

    def batches_of(self, data: Dataset, batch_size: int, *, shuffle: bool = True, task_id: Optional[int] = None,
                   augment: Optional[bool] = None) -> Iterator[Batch]:
        """Batches of any dataset the learner holds (e.g. its own store of past data).
        Training batches (``augment``, default: when shuffled) get the scenario's
        augmentation; ``Batch.raw`` keeps the inputs before it."""
        task_id = self.task_id if task_id is None else task_id
        aug = self._augmentation if (shuffle if augment is None else augment) else None
        if self.device.type != "cpu":  # small tensor data sets: moved to the device once, per view
            key = id(data)
            if key not in self._resident:
                self._resident[key] = (data, resident(data, self.device))
            data = self._resident[key][1]
        for tensors in iterate(data, batch_size, shuffle=shuffle, generator=self._generator, num_workers=self._num_workers):
            yield make_batch(tensors, task_id, self.device, aug, self._generator)
            if self._on_batch is not None:
                self._on_batch(len(tensors[0]))


def make_batch(tensors: tuple[torch.Tensor, ...], task_id: Optional[int], device: torch.device,
               augmentation: Optional[Augmentation] = None, generator: Optional[torch.Generator] = None) -> Batch:
    """Move a tuple ``(x, y[, known])`` to ``device`` as a :class:`Batch`, augmenting
    ``x`` where an augmentation is given (``raw`` keeps the un-augmented inputs)."""
    raw, y = tensors[0].to(device, non_blocking=True), tensors[1].to(device, non_blocking=True)
    known = tensors[2].to(device, non_blocking=True) if len(tensors) > 2 else None
    task = None if task_id is None else torch.full((len(y),), task_id, dtype=torch.long, device=device)
    x = raw if augmentation is None else augmentation(raw, generator)
    return Batch(x=x, y=y, task=task, known=known, raw=raw)
