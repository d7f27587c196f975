"""The learner's memory format (channels_last by default): one conversion that every place
building or reloading a learner uses, so a resumed or reloaded learner computes bit for bit
as the one it continues."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from clbench.settings import RunSettings


def learner_memory_format(settings: RunSettings, strategy: Any) -> Optional[torch.memory_format]:
    """channels_last where the run asks for it (the default) and the strategy allows it
    (``Strategy.channels_last_ok``); None: the standard format, nothing converted."""
    return torch.channels_last if settings.channels_last and strategy.channels_last_ok else None


def to_memory_format(module: nn.Module, memory_format: torch.memory_format) -> None:
    """``module.to(memory_format=...)`` for its 4-d parameters and buffers (conv weights), in
    place (optimisers keep their parameters): ``Module.to`` would also convert 5-d tensors,
    which channels_last refuses (a MULTI-LANE prompt bank); this leaves those be. ``Tensor.to``,
    not ``contiguous``: it restrides a one-channel kernel too, as ``Module.to`` does."""
    module._apply(lambda t: t.to(memory_format=memory_format) if t.dim() == 4 else t)
