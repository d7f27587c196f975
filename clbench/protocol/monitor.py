"""The protocol's listener on every optimisation step of the live learner."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Optional

import torch

from clbench.protocol.evaluation import NonFiniteError
from clbench.types import Batch


class StepMonitor:
    """Per optimisation step: the loss curve (accumulated on the device, read every
    ``log_every`` steps, when ``on_window`` is called), non-finite losses, the routes each
    experience trained with, and ``after_step`` (the add-on's, if any)."""

    def __init__(self, log_every: int, *, after_step: Optional[Callable[[Batch, Any], None]] = None,
                 on_window: Optional[Callable[[], None]] = None) -> None:
        self.log_every = max(1, log_every)
        self.after_step, self.on_window = after_step, on_window
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
        if self.after_step is not None:
            self.after_step(batch, stats)
        if len(self._window) >= self.log_every and self.on_window is not None:
            self.on_window()

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
