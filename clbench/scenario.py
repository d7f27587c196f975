"""Scenarios: a stream of experiences plus what the learner may see of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import torch

from clbench.data import iterate
from clbench.registry import Registry
from clbench.types import KINDS, VISIBILITY_BY_KIND, Experience, ScenarioInfo, Visibility


@dataclass
class ScenarioConfig:
    """Fields every scenario config has; builders add their own.

    ``defaults`` is Hydra's defaults list: registration fills it so that choosing a
    scenario also chooses its default backbone (``backbone=...`` still overrides it).
    """

    defaults: List[Any] = field(default_factory=list)
    name: str = "?"
    kind: str = "class_incremental"
    default_backbone: str = "cnn28"


@dataclass
class Scenario:
    """A built stream. ``experiences`` hold train and test data; the protocol hands the
    learner only views of the training data."""

    name: str
    kind: str
    experiences: list[Experience]
    num_classes: int
    input_shape: tuple[int, ...]
    class_order: list[int]
    class_names: Optional[list[str]] = None
    description: dict = field(default_factory=dict)  # source, deviations, extra data used
    repeats: int = 1  # task-agnostic streams: each experience repeated back to back

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown scenario kind {self.kind!r}; valid choices: {list(KINDS)}")

    @property
    def visibility(self) -> Visibility:
        return VISIBILITY_BY_KIND[self.kind]

    @property
    def info(self) -> ScenarioInfo:
        return ScenarioInfo(self.name, self.kind, tuple(self.input_shape), self.num_classes, self.visibility)

    def stream(
        self, index: int, batch_size: int, generator: torch.Generator, train_sets: list
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """The continuous stream's batches for the stretch of experience ``index``
        (task-agnostic family): ``train_sets[index]`` (the protocol's, possibly
        encoded, copy of its training data), ``repeats`` shuffled passes."""
        for _ in range(self.repeats):
            yield from iterate(train_sets[index], batch_size, shuffle=True, generator=generator)


ScenarioBuilder = Callable[..., Scenario]  # builder(config, *, data_root, seed) -> Scenario
SCENARIOS: Registry[ScenarioBuilder] = Registry("scenario")
#: ``clbench data <action> <scenario>`` handlers, keyed "action/scenario" (e.g. "check/split53")
DATA_COMMANDS: Registry[Callable[[list], int]] = Registry("data command")


def register_scenario(name: str, builder: ScenarioBuilder, config: ScenarioConfig) -> None:
    """Register a named scenario: its builder and its preset config (stored for Hydra)."""
    if config.kind not in KINDS:
        raise ValueError(f"scenario {name!r}: unknown kind {config.kind!r}; valid choices: {list(KINDS)}")
    config.name = name
    config.defaults = [{"override /backbone@_global_.backbone": config.default_backbone}]
    SCENARIOS.register(name, builder)
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="scenario", name=name, node=config)


def build_scenario(config: Any, *, data_root: Optional[Path], seed: int) -> Scenario:
    """Build the scenario named by ``config.name`` with that config."""
    return SCENARIOS.get(config.name)(config, data_root=data_root, seed=seed)
