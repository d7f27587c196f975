"""The config layer's plugin finder: a registry asked for a missing name imports only the
module the config index names for it, and a full load of the plugins rewrites a stale
index.

Installed into ``clbench.registry`` when the config layer is imported, in place of the
default ``clbench.plugins.PluginFinder``. Also here: what ``clbench list`` shows and the
keys of a config option, each from the fresh index (no torch) or from a full load.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Optional

from clbench import plugins
from clbench.config import index
from clbench.paths import cache_root


class IndexFinder(plugins.PluginFinder):
    """``find``: import the module the fresh index names; ``load_all``: every plugin,
    then (the first time) rewrite the index if it is stale. ``store_builtins`` and
    ``builtin_options``: the options the config layer stores itself (backbone and logger
    presets), which the index records beside the plugins' own."""

    def __init__(self, store_builtins: Callable[[], None], builtin_options: Callable[[], dict]) -> None:
        self.store_builtins, self.builtin_options = store_builtins, builtin_options

    def find(self, kind: str, name: str) -> None:
        module = index.module_for(kind, name)
        if module is not None and module not in sys.modules:
            importlib.import_module(module)

    def load_all(self) -> None:
        if plugins.loaded():
            return
        before = index.fingerprint() if cache_root() is not None else None
        plugins.load_all()
        index.after_full_load(self._build, before)

    def _build(self, fp: str) -> dict:
        self.store_builtins()
        return index.build(fp, builtins=self.builtin_options(), listing=listing_from_registries)


def listing_from_registries(only: Optional[dict] = None) -> dict:
    """What ``clbench list`` shows, from the registries (after the full load); with
    ``only`` (``{kind: names}``), only those strategies and scenarios."""
    from hydra.core.config_store import ConfigStore

    from clbench.api.scenario import SCENARIOS
    from clbench.api.strategy import STRATEGIES
    from clbench.types import VISIBILITY_BY_KIND

    repo = ConfigStore.instance().repo
    strategies = {}
    for name in STRATEGIES.names():
        if only is not None and name not in only.get("strategy", ()):
            continue
        cls = STRATEGIES.get(name)
        strategies[name] = {"needs": sorted(cls.needs), "kinds": sorted(cls.kinds),
                            "paper_recipe": bool(cls.paper_defaults)}
    scenarios = {}
    for name in SCENARIOS.names():
        if only is not None and name not in only.get("scenario", ()):
            continue
        node = repo["scenario"][f"{name}.yaml"].node
        vis = VISIBILITY_BY_KIND[node.kind]
        scenarios[name] = {"kind": node.kind, "task_id_train": vis.task_id_train, "task_id_test": vis.task_id_test,
                           "boundaries": vis.boundaries, "default_backbone": node.default_backbone}
    return {"strategies": strategies, "scenarios": scenarios}


def listing() -> dict:
    """What ``clbench list`` shows: from the fresh index, else from a full load."""
    found = index.listing()
    if found is not None:
        return found
    from clbench.config.store import store_configs

    store_configs()
    return listing_from_registries()


def option_keys(group: str, name: str) -> Optional[list[str]]:
    """The keys of option ``name`` of config ``group`` (e.g. ``option_keys("strategy",
    "er")``), in declaration order, without Hydra's ``defaults``; None when there is no
    such option. From the index when it is fresh (no torch), else from the registered
    config (a full load of the plugins)."""
    entry = index.entry(group, name)
    if entry is not None and index.entry_keys(entry) is not None:
        return index.entry_keys(entry)
    from hydra.core.config_store import ConfigStore

    from clbench.config.store import load_plugins, store_configs

    if index.is_fresh() and entry is None and f"{name}.yaml" not in ConfigStore.instance().repo.get(group, {}):
        return None  # neither indexed nor registered in this process: no import needed to say so
    store_configs()
    load_plugins()
    options = ConfigStore.instance().repo.get(group, {})
    if f"{name}.yaml" not in options:
        return None
    node = options[f"{name}.yaml"].node
    return [str(k) for k in node.keys() if k != "defaults"]
