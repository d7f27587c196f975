"""The Avalanche bridge, both ways.

- ``make_strategy(name, benchmark=bm, evaluator=ev, **overrides)``: any registered
  clbench strategy as an Avalanche strategy (``ClbenchTemplate``), for the usual
  ``for exp in bm.train_stream: s.train(exp); s.eval(bm.test_stream)`` loop; its own
  steps feed Avalanche's training metrics and loggers; ``model=`` takes your backbone.
- ``scenario_from_benchmark(bm)``: an Avalanche benchmark as a clbench Scenario.

Importing this package does not import Avalanche (it costs seconds); calling
``make_strategy`` or touching ``ClbenchTemplate`` does.
"""
from __future__ import annotations

from typing import Any

from clbench.avalanche.benchmark import BridgeError, BridgeTypeError, read_layout, scenario_from_benchmark


def make_strategy(name: str, *, benchmark: Any, **kwargs: Any):
    """Build clbench strategy ``name`` as an Avalanche strategy; see :func:`clbench.avalanche.adapter.make_strategy`."""
    from clbench.avalanche.adapter import make_strategy as _make

    return _make(name, benchmark=benchmark, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "ClbenchTemplate":
        from clbench.avalanche.adapter import ClbenchTemplate

        return ClbenchTemplate
    raise AttributeError(f"module 'clbench.avalanche' has no attribute {name!r}")


__all__ = ["make_strategy", "scenario_from_benchmark", "read_layout", "ClbenchTemplate", "BridgeError", "BridgeTypeError"]
