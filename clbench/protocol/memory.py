"""A learner's memory in bytes, per kind (the memory-matched comparisons of PROTOCOL.md):
the model, its frozen copies (teachers, old experts), the data it stores (replay buffer
samples and their stored logits, any tensor a strategy keeps in ``state_attrs``), and its
optimiser state apart. ``budget.memory_bytes`` caps model + frozen copies + stored data."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from clbench.errors import UserError


class MemoryBudgetError(UserError, ValueError):
    """The learner holds more bytes than ``budget.memory_bytes`` allows."""


def tensor_bytes(obj: Any, seen: set[int]) -> int:
    """Bytes of every tensor in ``obj`` (nested dicts, lists, tuples), each storage once."""
    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr() if obj.device.type != "meta" else id(obj)
        if key in seen:
            return 0
        seen.add(key)
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


def _module_tensors(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    return [t for m in modules for t in list(m.parameters()) + list(m.buffers())]


def memory_bytes(strategy: Any) -> dict[str, int]:
    """``{model, frozen_copies, stored, optimizer, total}`` in bytes; ``stored`` = replay
    buffers (samples, labels, stored logits) and tensors in ``state_attrs``; ``total`` =
    model + frozen copies + stored (the optimiser's state is reported apart)."""
    seen: set[int] = set()
    copies = strategy.frozen_copies() if hasattr(strategy, "frozen_copies") else {}
    frozen = tensor_bytes(_module_tensors(copies.values()), seen)
    model = tensor_bytes(_module_tensors([strategy]), seen)
    stored = optimizer = 0
    from clbench.api.strategy import _stateful_attrs

    for _, holder in _stateful_attrs(strategy):
        if isinstance(holder, torch.optim.Optimizer):
            optimizer += tensor_bytes(holder.state_dict().get("state", {}), seen)
        elif not isinstance(holder, torch.optim.lr_scheduler.LRScheduler):
            stored += tensor_bytes(holder.state_dict(), seen)
    for name in getattr(strategy, "state_attrs", ()):
        stored += tensor_bytes(getattr(strategy, name, None), seen)
    return {"model": model, "frozen_copies": frozen, "stored": stored, "optimizer": optimizer,
            "total": model + frozen + stored}


def check_memory(used: dict[str, int], limit: Any, where: str) -> None:
    """Raise :class:`MemoryBudgetError` when ``used["total"]`` exceeds ``limit`` bytes (None: no limit)."""
    if limit is not None and used["total"] > limit:
        raise MemoryBudgetError(
            f"budget.memory_bytes={limit} exceeded {where}: the learner holds {used['total']:,} bytes (model "
            f"{used['model']:,}, frozen copies {used['frozen_copies']:,}, stored data {used['stored']:,}); raise "
            f"budget.memory_bytes= or shrink the method's memory (e.g. its buffer size)")
