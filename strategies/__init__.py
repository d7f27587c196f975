"""clbench's strategies, one module per method. This package is the ``clbench.plugins``
entry point: ``plugin_modules`` lists its modules, which ``clbench.registry`` imports
(all of them for ``clbench list``; for a run, only the one that registers the chosen
strategy). Adding a method = its module + its name in this list."""
from __future__ import annotations

import importlib
from typing import Any

plugin_modules = ("avalanche_baselines", "baselines", "clr", "dkvb", "kfpf", "multilane", "ncm", "probes", "ranpac",
                  "slda", "tame")


def __getattr__(name: str) -> Any:  # `import strategies; strategies.tame` imports the module on first use
    if name in plugin_modules:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
