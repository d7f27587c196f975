"""Replay memories shared by rehearsal strategies and add-ons, one storage policy each
(as Avalanche's storage policies): :class:`ReservoirBuffer` (uniform over the stream),
:class:`ClassBalancedBuffer` (CLIB's random-priority, balanced among the classes seen so
far) and :class:`PriorityBuffer` (TAME's: a fixed share per group, the highest random
priorities kept).

The first two store the RAW inputs (``Batch.raw``: before the scenario's training
augmentation), the labels, the multi-label ``known`` mask where there is one, and any
extra per-sample fields a method asks for (logits for distillation, the id of the
active expert, ...). ``sample`` returns a :class:`Batch` of raw inputs plus a dict of
the extra fields; augment replayed inputs with ``Strategy.augment``. All randomness
comes from the generator given, never global state. ``state_dict`` holds tensors and
plain values only (loadable with ``torch.load(..., weights_only=True)``).
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch

from clbench.types import Batch


class _Store:
    """Fixed-capacity named tensors, allocated on the first write."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.fields: dict[str, torch.Tensor] = {}

    def write(self, slots: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        for name, v in values.items():
            if name not in self.fields:
                self.fields[name] = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype, device=v.device)
            store = self.fields[name]
            if v.shape[1:] != store.shape[1:]:
                raise ValueError(f"buffer field {name!r} has per-sample shape {tuple(store.shape[1:])}, "
                                 f"got {tuple(v.shape[1:])}; pad it to a fixed width (e.g. num_classes)")
            store[slots.to(store.device)] = v.to(store.dtype)

    def read(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v[idx.to(v.device)] for k, v in self.fields.items()}


def _batch_fields(batch: Batch, extra: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    values = {"x": batch.raw.detach(), "y": batch.y.detach()}
    if batch.known is not None:
        values["known"] = batch.known.detach()
    for k, v in extra.items():
        if k in ("x", "y", "known"):
            raise ValueError(f"extra buffer field {k!r} clashes with a built-in one ('x', 'y', 'known')")
        v = torch.as_tensor(v)
        values[k] = (v.expand(len(batch)) if v.dim() == 0 else v).detach()
    return values


def _as_batch(values: dict[str, torch.Tensor]) -> tuple[Batch, dict[str, torch.Tensor]]:
    extra = {k: v for k, v in values.items() if k not in ("x", "y", "known")}
    return Batch(x=values["x"], y=values["y"], known=values.get("known")), extra


class ReservoirBuffer:
    """Reservoir sampling (Vitter's algorithm R) over the whole stream: after n offers,
    each sample offered so far is held with probability capacity / n."""

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity, self.generator = capacity, generator
        self.seen = 0
        self._store = _Store(capacity)

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    @property
    def x(self) -> Optional[torch.Tensor]:
        return self._store.fields.get("x")

    @property
    def y(self) -> Optional[torch.Tensor]:
        return self._store.fields.get("y")

    def field(self, name: str) -> Optional[torch.Tensor]:
        """The stored values of one field (all ``capacity`` rows; the first ``len`` are filled)."""
        return self._store.fields.get(name)

    def add(self, batch: Batch, **extra: torch.Tensor) -> torch.Tensor:
        """Offer every sample of ``batch`` (with its ``extra`` fields) in order; returns
        the slot each took (-1 if not kept). Equivalent to offering them one by one."""
        n = len(batch)
        if self.capacity == 0 or n == 0:
            self.seen += n
            return torch.full((n,), -1, dtype=torch.long)
        counts = self.seen + torch.arange(n) + 1  # offers so far, this one included
        draws = (torch.rand(n, generator=self.generator, dtype=torch.float64) * counts).long()
        slots = torch.where(counts <= self.capacity, counts - 1, draws)
        slots = torch.where(slots < self.capacity, slots, torch.full_like(slots, -1))
        self.seen += n
        kept = torch.nonzero(slots >= 0).flatten()
        if len(kept):
            # later samples overwrite earlier ones that drew the same slot, as one by one
            last = {}
            for k in kept.tolist():
                last[int(slots[k])] = k
            rows = torch.tensor(list(last.values()), dtype=torch.long)
            values = _batch_fields(batch, extra)
            self._store.write(slots[rows], {k: v[rows.to(v.device)] for k, v in values.items()})
        return slots

    def sample(self, n: int) -> Optional[Batch]:
        """``n`` stored samples without replacement (fewer if the buffer holds fewer), as a
        Batch of raw inputs; see :meth:`sample_with` for the extra fields."""
        out = self.sample_with(n)
        return None if out is None else out[0]

    def sample_with(self, n: int) -> Optional[tuple[Batch, dict[str, torch.Tensor]]]:
        size = len(self)
        if size == 0 or n <= 0:
            return None
        idx = torch.randperm(size, generator=self.generator)[: min(n, size)]
        return _as_batch(self._store.read(idx))

    def all(self) -> Optional[tuple[Batch, dict[str, torch.Tensor]]]:
        """Everything stored, in slot order."""
        if len(self) == 0:
            return None
        return _as_batch(self._store.read(torch.arange(len(self))))

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "seen": self.seen, "fields": dict(self._store.fields)}

    def load_state_dict(self, state: dict) -> None:
        self.capacity, self.seen = int(state["capacity"]), int(state["seen"])
        self._store = _Store(self.capacity)
        self._store.fields = dict(state["fields"])


class ClassBalancedBuffer:
    """A class-balanced memory with random priorities (the "random priority" variant of
    Rainbow Memory / CLIB): while there is room every sample is kept; when full, a new
    sample replaces the LOWEST-priority sample of the currently LARGEST class, if its own
    random priority is higher or its class is smaller than that class. Every class keeps
    about capacity / classes seen so far, and a sample offered twice is stored twice.
    (TAME's official buffer differs: a fixed capacity // num_classes per class, each
    sample once: :class:`PriorityBuffer`.)"""

    def __init__(self, capacity: int, generator: torch.Generator) -> None:
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0, got {capacity}")
        self.capacity, self.generator = capacity, generator
        self.seen = 0
        self.size = 0
        self._store = _Store(capacity)
        self.priority = torch.zeros(capacity, dtype=torch.float64)
        self.label = torch.full((capacity,), -1, dtype=torch.long)

    def __len__(self) -> int:
        return self.size

    def field(self, name: str) -> Optional[torch.Tensor]:
        return self._store.fields.get(name)

    def add(self, batch: Batch, **extra: torch.Tensor) -> None:
        """Offer each sample in order. Class = ``y`` (single-label only)."""
        if batch.y.dim() != 1:
            raise ValueError("ClassBalancedBuffer balances single-label data (y of shape (B,))")
        values = _batch_fields(batch, extra)
        prio = torch.rand(len(batch), generator=self.generator, dtype=torch.float64)
        ys = batch.y.detach().cpu()
        for k in range(len(batch)):
            self.seen += 1
            if self.capacity == 0:
                continue
            cls = int(ys[k])
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            else:
                counts = torch.bincount(self.label[self.label >= 0], minlength=cls + 1)
                largest = int(torch.argmax(counts))
                if counts[cls] >= counts[largest] and cls != largest:
                    continue
                members = torch.nonzero(self.label == largest).flatten()
                victim = members[torch.argmin(self.priority[members])]
                if largest == cls and self.priority[victim] >= prio[k]:
                    continue
                slot = int(victim)
            self.priority[slot], self.label[slot] = prio[k], cls
            self._store.write(torch.tensor([slot]), {f: v[k:k + 1] for f, v in values.items()})

    def class_counts(self) -> dict[int, int]:
        labels, counts = torch.unique(self.label[: self.size], return_counts=True)
        return {int(a): int(b) for a, b in zip(labels, counts)}

    def sample_with(self, n: int) -> Optional[tuple[Batch, dict[str, torch.Tensor]]]:
        if self.size == 0 or n <= 0:
            return None
        idx = torch.randperm(self.size, generator=self.generator)[: min(n, self.size)]
        return _as_batch(self._store.read(idx))

    def sample(self, n: int) -> Optional[Batch]:
        out = self.sample_with(n)
        return None if out is None else out[0]

    def all(self) -> Optional[tuple[Batch, dict[str, torch.Tensor]]]:
        if self.size == 0:
            return None
        return _as_batch(self._store.read(torch.arange(self.size)))

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "seen": self.seen, "size": self.size, "fields": dict(self._store.fields),
                "priority": self.priority, "label": self.label}

    def load_state_dict(self, state: dict) -> None:
        self.capacity, self.seen, self.size = int(state["capacity"]), int(state["seen"]), int(state["size"])
        self._store = _Store(self.capacity)
        self._store.fields = dict(state["fields"])
        self.priority, self.label = state["priority"], state["label"]


class PriorityBuffer:
    """A random-priority memory split into equal shares per group (TAME's buffers).

    ``groups`` x ``per_group`` slots. Each offered sample draws a uniform priority; a
    group keeps the ``per_group`` highest priorities it was offered (the official code's
    per-class heaps: push, then pop the lowest), i.e. a uniform random subset of what it
    was offered. With group = class and per_group = capacity // num_classes this is the
    selector's class-balanced buffer; with one group, the per-stretch pruning buffer.

    Unlike :class:`ClassBalancedBuffer` (CLIB's variant, which fills the whole capacity at
    once and shares it among the classes seen so far), each group has a fixed share from
    the start, as in TAME's code (capacity / number of classes of the data set).
    """

    def __init__(self, groups: int, per_group: int, generator: torch.Generator) -> None:
        if groups < 1 or per_group < 0:
            raise ValueError(f"a priority buffer needs groups >= 1 and per_group >= 0, got {groups} and {per_group}")
        self.groups, self.per_group, self.generator = groups, per_group, generator
        self.priority = torch.full((groups * per_group,), -1.0, dtype=torch.float64)  # -1: empty slot
        self.fields: dict[str, torch.Tensor] = {}
        self.offered = 0

    @property
    def capacity(self) -> int:
        return self.groups * self.per_group

    def __len__(self) -> int:
        return int((self.priority >= 0).sum())

    def offer(self, group: torch.Tensor, values: Mapping[str, torch.Tensor]) -> None:
        """Offer each sample in order: ``group[k]`` its group, ``values[name][k]`` its fields."""
        n = len(group)
        groups = group.detach().cpu().long()
        bad = groups[(groups < 0) | (groups >= self.groups)]
        if len(bad):
            raise ValueError(f"buffer group {int(bad[0])} out of range; valid groups: 0..{self.groups - 1}")
        prio = torch.rand(n, generator=self.generator, dtype=torch.float64)
        self.offered += n
        if self.per_group == 0:
            return
        for k in range(n):
            lo = int(groups[k]) * self.per_group
            share = self.priority[lo:lo + self.per_group]
            j = int(torch.argmin(share))
            if share[j] >= prio[k]:
                continue
            slot = lo + j
            self.priority[slot] = prio[k]
            for name, v in values.items():
                if name not in self.fields:
                    self.fields[name] = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype, device=v.device)
                self.fields[name][slot] = v[k]

    def all(self) -> Optional[dict[str, torch.Tensor]]:
        """Every stored sample's fields, in slot order; None when empty."""
        idx = torch.nonzero(self.priority >= 0).flatten()
        if len(idx) == 0:
            return None
        return {name: v[idx.to(v.device)] for name, v in self.fields.items()}

    def clear(self) -> None:
        self.priority.fill_(-1.0)

    def state_dict(self) -> dict:
        return {"groups": self.groups, "per_group": self.per_group, "offered": self.offered,
                "priority": self.priority, "fields": dict(self.fields)}

    def load_state_dict(self, state: dict) -> None:
        self.groups, self.per_group = int(state["groups"]), int(state["per_group"])
        self.offered, self.priority, self.fields = int(state["offered"]), state["priority"], dict(state["fields"])
