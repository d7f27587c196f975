"""clbench: a continual-learning benchmark harness.

The core knows no concrete strategy or dataset: those plug in through the registries
(``clbench.api.register_strategy``, ``clbench.api.register_scenario``, ...), found via
the ``clbench.plugins`` entry-point group. Layout, bottom to top:

- ground floor: ``types``, ``registry``, ``plugins``, ``errors``, ``fields``, ``paths``,
  ``rng``, ``settings``, ``progress``;
- ``results/``: records, metrics, console output, figures, leaderboards (no torch);
- ``api/``: what a plugin author writes against (strategy, scenario, add-on, data, buffers);
- ``models/``: backbones, frozen-encoder features, offline pretraining;
- ``protocol/``: the one evaluation protocol;
- ``loggers/``, ``config/`` (Hydra configs, the config index, validation),
  ``avalanche/`` (the bridge), ``cli/`` (the command and its launcher).
A module imports only from its own floor or below (``tests/core/test_layers.py``).
"""
from clbench import plugins as _plugins
from clbench import registry as _registry

__version__ = "0.1.0"

if _registry.current_finder() is None:  # the default finder: a missing name loads every plugin
    _registry.set_finder(_plugins.PluginFinder())
