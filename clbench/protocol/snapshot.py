"""The evaluation copy: what the protocol evaluates instead of the live learner."""
from __future__ import annotations

import copy
import types
from typing import Any

from torch.utils.data import Dataset


def evaluation_copy(strategy: Any) -> tuple[Any, int]:
    """A deep copy of the learner for evaluation that SHARES its frozen tensors
    (parameters without gradients, the frozen encoder's buffers, datasets it holds):
    the copy can be switched to eval mode, get ``before_eval`` and ``predict`` without
    the live learner ever noticing. Returns the copy and the bytes of tensors copied."""
    memo: dict[int, Any] = {}
    for p in strategy.parameters():
        if not p.requires_grad:
            memo[id(p)] = p
    encoder = strategy.frozen_encoder()
    if encoder is not None:
        for t in list(encoder.parameters()) + list(encoder.buffers()):
            memo[id(t)] = t
    for value in _held_datasets(strategy):
        memo[id(value)] = value
    copy_ = _deepcopy_skipping_generators(strategy, memo)
    copied = 0
    for t in list(copy_.parameters()) + list(copy_.buffers()):
        if id(t) not in memo:
            copied += t.numel() * t.element_size()
    return copy_, copied


def _deepcopy_skipping_generators(obj: Any, memo: dict) -> Any:
    """``copy.deepcopy``, except that Python generators (which cannot be copied; e.g. a
    data iterator inside an Avalanche plugin) become exhausted iterators in the copy:
    evaluation never resumes them."""
    dispatch = copy._deepcopy_dispatch  # type: ignore[attr-defined]
    had = dispatch.get(types.GeneratorType)
    dispatch[types.GeneratorType] = lambda gen, memo: iter(())
    try:
        return copy.deepcopy(obj, memo)
    finally:
        if had is None:
            dispatch.pop(types.GeneratorType, None)
        else:
            dispatch[types.GeneratorType] = had


def _held_datasets(strategy: Any) -> list[Any]:
    out = []
    for value in vars(strategy).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        out += [v for v in items if isinstance(v, Dataset)]
    return out
