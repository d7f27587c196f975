"""Wall time and FLOPs per phase of a run (prepare, train, before_eval, end_stream,
add-on phases, eval), each counted exclusively: time spent in a nested phase (an
add-on's finetuning inside a training step) belongs to that phase, not its parent.

FLOPs come from one ``torch.utils.flop_counter.FlopCounterMode`` for the whole run
(``count_flops=true``); each phase switch reads the counter's total and books the
difference to the phase that was running. Which phases count as training compute:
:data:`TRAINING_PHASES` and every ``addon:*`` and ``strategy:*`` phase (a strategy books
its own sub-phases with ``Strategy.phase(name)``, e.g. k-FPF's finetuning).
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from typing import Iterator, Optional

import torch

TRAINING_PHASES = ("train", "before_eval", "end_stream")


def is_training_phase(name: str) -> bool:
    """Training compute: train, before_eval, end_stream, add-on and strategy sub-phases."""
    return name in TRAINING_PHASES or name.startswith(("addon:", "strategy:"))


class PhaseClock:
    """Exclusive seconds and FLOPs per phase name, since the last :meth:`take`."""

    def __init__(self, count_flops: bool = False, device: Optional[torch.device] = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self._stack: list[str] = []
        self._mark = time.perf_counter()
        self._flop_mark = 0
        self._training_total = 0  # training FLOPs of the whole run (not reset by take)
        self._device = device
        self._counter = None
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)

    @property
    def counting_flops(self) -> bool:
        return self._counter is not None

    def __enter__(self) -> "PhaseClock":
        if self._counter is not None:
            self._counter.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._counter is not None:
            self._counter.__exit__(*exc)

    def _book(self) -> None:
        now = time.perf_counter()
        if self._stack:
            self.seconds[self._stack[-1]] += now - self._mark
            if self._counter is not None:
                total = int(self._counter.get_total_flops())
                self.flops[self._stack[-1]] += total - self._flop_mark
                if is_training_phase(self._stack[-1]):
                    self._training_total += total - self._flop_mark
                self._flop_mark = total
        elif self._counter is not None:
            self._flop_mark = int(self._counter.get_total_flops())
        self._mark = now

    @contextlib.contextmanager
    def phase(self, name: str, sync: bool = False) -> Iterator[None]:
        """Book everything until the block ends to ``name`` (``sync``: wait for the device
        at both ends, for phases long enough that a sync costs nothing)."""
        if sync:
            _sync(self._device)
        self._book()
        self._stack.append(name)
        try:
            yield
        finally:
            if sync:
                _sync(self._device)
            self._book()
            self._stack.pop()

    def training_flops(self) -> int:
        """Training FLOPs of the run so far, up to now (0 when FLOPs are not counted); the
        compute budget (``clbench.protocol.budget``) reads it between steps."""
        if self._counter is None:
            return 0
        self._book()
        return self._training_total

    def take(self) -> tuple[dict[str, float], Optional[dict[str, int]]]:
        """Seconds (and FLOPs, if counted) per phase since the last call; resets them."""
        self._book()
        seconds = {k: v for k, v in self.seconds.items()}
        flops = {k: v for k, v in self.flops.items()} if self._counter is not None else None
        self.seconds.clear()
        self.flops.clear()
        return seconds, flops


def _sync(device: Optional[torch.device]) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
