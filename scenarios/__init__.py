"""clbench's scenarios: stream builders by family over data sources.

This package is the ``clbench.plugins`` entry point: ``plugin_modules`` lists the
modules that register scenarios, data sources and auxiliary data sets, which
``clbench.registry`` imports (all of them for ``clbench list``; for a run, only those
that register what it uses). Adding a scenario = its builder or preset here and its
module in this list.
"""
from __future__ import annotations

import importlib
from typing import Any

plugin_modules = (
    "sources.cifar", "sources.coco", "sources.digits", "sources.fmnist", "sources.mlfmnist", "sources.mnist",
    "sources.voc",
    "auxiliary", "avalanche_benchmarks", "cifar_digits", "class_incremental", "multilabel", "split53", "task_agnostic",
)


def __getattr__(name: str) -> Any:  # `import scenarios; scenarios.split53` imports the module on first use
    if name in {m.split(".")[0] for m in plugin_modules}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
