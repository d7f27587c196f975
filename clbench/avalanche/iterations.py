"""What Avalanche's iteration and epoch callbacks need from a clbench strategy's own steps.

A clbench strategy trains itself (``observe``, its own ``train_experience``), so the
adapter reads its steps instead of running Avalanche's loop:

- :class:`LossCapture`: the logits and targets of the first loss a step computes
  (``torch.nn.functional`` cross-entropy, NLL or BCE-with-logits, caught with a
  ``TorchFunctionMode``): Avalanche's ``mb_output`` and ``mb_y``, whatever module or
  method of the strategy produced them;
- :class:`EpochView`: the strategy's :class:`~clbench.api.view.LearnerView`, which tells
  the template where each shuffled pass over training batches (an epoch) and each batch
  (an iteration) begins and ends, and ends a pass early when a plugin stops training;
- :func:`minibatch_rows`: the rows of a captured loss that belong to the incoming batch
  (a replay method's loss also covers its replayed samples).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from clbench.api.view import LearnerView
from clbench.types import Batch

#: the losses whose (input, target) are a step's (mb_output, mb_y)
LOSSES = (F.cross_entropy, F.nll_loss, F.binary_cross_entropy_with_logits)


class LossCapture(TorchFunctionMode):
    """While active, remembers ``(logits, target)`` of the first loss call since :meth:`arm`
    (detached); every torch call passes through unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.captured: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._armed = True

    def arm(self) -> None:
        """Forget what was captured; catch the next loss."""
        self.captured, self._armed = None, True

    def take(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """What was captured since :meth:`arm` (None if no loss was computed); re-arms."""
        captured = self.captured
        self.arm()
        return captured

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        if self._armed and func in LOSSES:
            logits = args[0] if args else kwargs.get("input")
            target = args[1] if len(args) > 1 else kwargs.get("target")
            if isinstance(logits, torch.Tensor) and isinstance(target, torch.Tensor):
                self.captured, self._armed = (logits.detach(), target.detach()), False
        return func(*args, **kwargs)


def minibatch_rows(captured: Optional[tuple[torch.Tensor, torch.Tensor]],
                   batch: Batch) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """``(mb_output, mb_y)`` for ``batch`` from a captured loss: all of it where it has the
    batch's rows; the batch's own rows where the loss also covers replayed samples placed
    after (or before) them; the whole capture otherwise. None where nothing was captured."""
    if captured is None:
        return None
    logits, target = captured
    n, rows = len(batch), len(target)
    if rows > n and logits.shape[0] == rows and target.dim() == batch.y.dim():
        y = batch.y.to(target.device)
        if torch.equal(target[:n], y):
            return logits[:n], target[:n]
        if torch.equal(target[-n:], y):
            return logits[-n:], target[-n:]
    return logits, target


class EpochView(LearnerView):
    """A :class:`LearnerView` whose shuffled passes (``batches`` of the training split,
    ``batches_of`` with ``shuffle=True``: training batches) run through ``epoch(batches,
    n_batches)``, the template's generator that fires the epoch and iteration callbacks.
    Unshuffled passes (validation, statistics) are no epochs."""

    def __init__(self, *args: Any, epoch: Callable[[Iterator[Batch], int], Iterator[Batch]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = epoch

    def batches_of(self, data: Any, batch_size: int, *, shuffle: bool = True, task_id: Optional[int] = None,
                   augment: Optional[bool] = None) -> Iterator[Batch]:
        batches = super().batches_of(data, batch_size, shuffle=shuffle, task_id=task_id, augment=augment)
        if not shuffle:
            return batches
        return self._epoch(batches, math.ceil(len(data) / batch_size))
