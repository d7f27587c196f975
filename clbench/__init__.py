"""clbench: a continual-learning benchmark harness.

The core knows no concrete strategy or dataset: those plug in through the registries
(``clbench.strategy.register_strategy``, ``clbench.scenario.register_scenario``),
found via the ``clbench.plugins`` entry-point group.
"""
__version__ = "0.1.0"
