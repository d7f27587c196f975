"""Replay memories shared by rehearsal strategies."""
from __future__ import annotations

from typing import Optional

import torch

from clbench.types import Batch


class ReservoirBuffer:
    """A fixed-size memory filled by reservoir sampling (Vitter's algorithm R) over the
    whole stream: each sample seen so far is kept with equal probability. Randomness
    comes from the generator given, never global state. Stores ``x``, ``y`` and, for
    multi-label data, the ``known`` mask; ``logits`` optionally (for distillation)."""

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity, self.generator = capacity, generator
        self.seen = 0
        self.x: Optional[torch.Tensor] = None
        self.y: Optional[torch.Tensor] = None
        self.known: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, batch: Batch) -> None:
        """Offer every sample of ``batch`` to the reservoir."""
        if self.capacity == 0:
            self.seen += len(batch)
            return
        x, y, known = batch.x.detach(), batch.y.detach(), None if batch.known is None else batch.known.detach()
        if self.x is None:
            self.x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype, device=x.device)
            self.y = torch.empty((self.capacity, *y.shape[1:]), dtype=y.dtype, device=y.device)
            if known is not None:
                self.known = torch.empty((self.capacity, *known.shape[1:]), dtype=known.dtype, device=known.device)
        for k in range(len(y)):
            if self.seen < self.capacity:
                slot = self.seen
            else:
                slot = int(torch.randint(0, self.seen + 1, (1,), generator=self.generator))
                if slot >= self.capacity:
                    slot = -1
            if slot >= 0:
                self.x[slot], self.y[slot] = x[k], y[k]
                if known is not None:
                    self.known[slot] = known[k]
            self.seen += 1

    def sample(self, n: int) -> Optional[Batch]:
        """``n`` stored samples drawn without replacement (fewer if the buffer is smaller)."""
        size = len(self)
        if size == 0 or n <= 0:
            return None
        idx = torch.randperm(size, generator=self.generator)[: min(n, size)].to(self.x.device)
        return Batch(x=self.x[idx], y=self.y[idx], known=None if self.known is None else self.known[idx])

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "seen": self.seen, "x": self.x, "y": self.y, "known": self.known}

    def load_state_dict(self, state: dict) -> None:
        self.capacity, self.seen = state["capacity"], state["seen"]
        self.x, self.y, self.known = state["x"], state["y"], state["known"]
