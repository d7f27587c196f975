"""Add-ons: extensions composed onto ANY strategy (``clbench run strategy=er addon=fpf``).

An add-on is attached to the live learner before the stream. It may read and change
the strategy's modules and its replay buffer (``strategy.buffer`` where it has one, or
its own), and is called by the protocol:

- ``after_step(batch, stats)``: after every optimisation step of the strategy;
- ``end_experience()``: after an experience, only where boundaries are visible;
- ``end_stream()``: once, after the strategy's own ``end_stream``.

Each call runs in its own phase (``addon:<name>``): timed, FLOP-counted and booked as
training compute. The record and the leaderboard name the row ``<strategy>+<addon>``.
An add-on's ``state_dict`` is saved with the strategy's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from clbench import fields
from clbench.registry import Registry
from clbench.types import Batch, ScenarioInfo, StepStats


@dataclass
class AddonConfig:
    """Fields every add-on config has; ``name: none`` means no add-on."""

    name: str = "none"


class Addon:
    """Base class of add-ons. ``config_class``: its config dataclass (paper defaults);
    ``needs``: what it must see, like a strategy's ``needs``."""

    config_class: ClassVar[type] = AddonConfig
    needs: ClassVar[frozenset[str]] = frozenset()
    name: ClassVar[str] = "?"

    def __init__(self, config: Any, info: ScenarioInfo, *, seed: int = 0) -> None:
        import torch

        fields.check(config, "addon.")  # the ranges the config's fields declare
        self.config, self.info = config, info
        self.generator = torch.Generator().manual_seed(seed + 7919)  # its own randomness, apart from the strategy's
        self.strategy: Any = None

    def attach(self, strategy: Any) -> None:
        """Called once before the stream (after the strategy's ``prepare``)."""
        self.strategy = strategy

    def after_step(self, batch: Batch, stats: StepStats) -> None:
        """After every optimisation step of the strategy."""

    def end_experience(self) -> None:
        """After each experience, only where boundaries are visible."""

    def end_stream(self) -> None:
        """Once, after the last training step of the stream."""

    def describe(self) -> dict:
        """Facts for the record (e.g. the modules it finetunes and their size)."""
        return {}

    def metrics(self) -> dict[str, float]:
        """Named scalars at an evaluation point (like ``Strategy.metrics``)."""
        return {}

    def deviations(self) -> list[str]:
        out = []
        paper = self.config_class()
        for f in dataclasses.fields(paper):
            recipe = f.metadata.get("recipe", True)
            if f.name != "name" and recipe is not False and getattr(self.config, f.name) != getattr(paper, f.name):
                whose = "our default" if recipe == "ours" else "paper"
                out.append(f"{self.name}.{f.name}={getattr(self.config, f.name)!r} ({whose}: {getattr(paper, f.name)!r})")
        return out

    def state_dict(self) -> dict:
        """Plain data and tensors (``weights_only``-loadable); the default saves the generator."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


ADDONS: Registry[type[Addon]] = Registry("addon")


def register_addon(name: str):
    """Class decorator: register an add-on and store its config as ``addon/<name>``."""

    def decorate(cls: type[Addon]) -> type[Addon]:
        if not dataclasses.is_dataclass(cls.config_class) or not issubclass(cls.config_class, AddonConfig):
            raise TypeError(f"addon {name!r}: config_class must be an AddonConfig dataclass")
        cls.name = name
        ADDONS.register(name, cls)
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(group="addon", name=name, node=cls.config_class(name=name))
        return cls

    return decorate


def build_addon(config: Any, info: ScenarioInfo, *, seed: int) -> Optional[Addon]:
    """The add-on ``config`` names, or None for ``none``."""
    if config is None or getattr(config, "name", "none") == "none":
        return None
    return ADDONS.get(config.name)(config, info, seed=seed)
