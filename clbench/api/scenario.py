"""Scenarios: a stream of experiences plus what the learner may see of it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch

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
    """A built stream. ``experiences`` hold train and test data (the matrix's columns);
    the protocol hands the learner only views of the training data.

    ``schedule``: the order in which experiences are trained, as indices into
    ``experiences`` (default: each once, in order). A recurring stream repeats some
    (e.g. tasks 1 2 3 2 4 5 3): the matrix then has one row per stretch of the schedule
    and one column per distinct experience. ``augmentation``: the training-time
    augmentation (``clbench.api.augment``) the protocol applies to training batches.
    ``dataset``: the source data set's name (aux data from it is refused).
    """

    name: str
    kind: str
    experiences: list[Experience]
    num_classes: int
    input_shape: tuple[int, ...]
    class_order: list[int]
    class_names: Optional[list[str]] = None
    description: dict = field(default_factory=dict)  # source, deviations, extra data used
    repeats: int = 1  # task-agnostic streams: each stretch repeats its experience back to back
    schedule: Optional[list[int]] = None
    augmentation: str = "none"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown scenario kind {self.kind!r}; valid choices: {list(KINDS)}")
        T = len(self.experiences)
        if self.schedule is not None:
            bad = [s for s in self.schedule if not 0 <= s < T]
            if bad or not self.schedule:
                raise ValueError(f"schedule {self.schedule} must list experience indices in 0..{T - 1}")
            if self.visibility.boundaries and len(set(self.schedule)) != len(self.schedule):
                raise ValueError("a schedule that revisits experiences needs a task-agnostic scenario")

    @property
    def visibility(self) -> Visibility:
        return VISIBILITY_BY_KIND[self.kind]

    @property
    def steps(self) -> list[int]:
        """The experience index trained at each step (row 1..S of the matrix)."""
        return list(self.schedule) if self.schedule is not None else list(range(len(self.experiences)))

    @property
    def dataset(self) -> str:
        d = self.description
        return str(d.get("dataset") or d.get("source") or self.name)

    def train_sizes(self, val_fraction: float) -> list[int]:
        """Training samples of each experience after the validation hold-out (where
        boundaries are visible; the task-agnostic stream holds nothing out)."""
        if not self.visibility.boundaries:
            return [len(e.train) for e in self.experiences]
        return [len(e.train) - int(round(len(e.train) * val_fraction)) for e in self.experiences]

    def stream_size(self, val_fraction: float) -> int:
        """Training samples the whole stream delivers (repeats included)."""
        sizes = self.train_sizes(val_fraction)
        return sum(sizes[s] for s in self.steps) * self.repeats

    def info_for(self, val_fraction: float) -> ScenarioInfo:
        """What a strategy is told: shapes, classes, visibility, the stream's size."""
        return ScenarioInfo(
            self.name, self.kind, tuple(self.input_shape), self.num_classes, self.visibility,
            stream_size=self.stream_size(val_fraction),
            num_experiences=len(self.steps) if self.visibility.boundaries else None,
            dataset=self.dataset, augmentation=self.augmentation,
        )

    @property
    def info(self) -> ScenarioInfo:
        return self.info_for(0.0)

    def stream_plan(self, sizes: list[int], generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The task-agnostic stream, one stretch per step of the schedule: for each
        stretch, (experience of each sample, row of each sample). Plain: ``repeats``
        shuffled passes over the stretch's experience. The protocol concatenates the
        stretches and cuts batches from that one sequence."""
        plan = []
        for e in self.steps:
            rows = torch.cat([torch.randperm(sizes[e], generator=generator) for _ in range(self.repeats)])
            plan.append((torch.full((len(rows),), e, dtype=torch.long), rows))
        return plan


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
