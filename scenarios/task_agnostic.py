"""Task-agnostic streams: a class-incremental scenario as one continuous stream.

The learner gets batches only (``observe``): no task ids, no ``begin/end_experience``
calls (the protocol does this for kind ``task_agnostic``). Experiences come back to back;
each is repeated ``repeats`` times in a row (E in TAME's protocol, 10 on the MNIST family;
our presets use 1: a single pass, the plain online stream). The protocol still evaluates
at the true boundaries.

Blurry boundaries (``blurry`` = m in [0, 0.5]): let stretch i be the ``repeats`` shuffled
passes over experience i's training set, L_i samples long. The boundary region between
experiences i and i+1 is the last floor(m * L_i) samples of stretch i (its tail) and the
first floor(m * L_{i+1}) samples of stretch i+1 (its head). In it, s = floor(min(tail,
head) / 2) samples of each side, at random positions, trade places: the tail then holds
exactly s samples of i+1 and the head exactly s samples of i, about half and half, so
batches there mix both experiences. Outside boundary regions stretches stay pure. Every
sample is used exactly as often as without blurring and each stretch keeps its length
(the evaluation points do not move). With m = 0 the stream is the plain one.

Recurring tasks (``split_fmnist_recurring``): the experiences are trained in the order
``schedule`` (0-based indices, default tasks 1 2 3 2 4 5 3), still one continuous stream
with no ids and no boundaries; the matrix has one row per step of the schedule and one
column per distinct experience.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import List, Optional

import torch

from clbench.api.scenario import Scenario, register_scenario
from clbench.fields import setting
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC
from scenarios.class_incremental import ClassIncrementalConfig, build_class_incremental


@dataclass
class TaskAgnosticConfig(ClassIncrementalConfig):
    """A class-incremental config streamed task-agnostically; ``blurry`` mixes boundaries."""

    kind: str = TASK_AGNOSTIC
    repeats: int = setting(1, "passes over each experience, back to back (E in TAME's protocol)", ge=1)
    blurry: float = setting(0.0, "fraction of each boundary region that is mixed", ge=0, le=0.5)


@dataclass
class TaskAgnosticScenario(Scenario):
    """A task-agnostic scenario whose stream can blur boundaries (module docstring)."""

    blurry: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_stream_settings(self.repeats, self.blurry)

    def stream_plan(self, sizes: list[int], generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The plain plan, with each boundary region blurred (module docstring)."""
        plan = super().stream_plan(sizes, generator)
        return blur(plan, self.blurry, generator) if self.blurry > 0 else plan


def check_stream_settings(repeats: int, blurry: float) -> None:
    if repeats < 1:
        raise ValueError(f"scenario.repeats must be >= 1, got {repeats}")
    if not 0.0 <= blurry <= 0.5:
        raise ValueError(f"scenario.blurry must be in [0, 0.5] (a fraction of each stretch at each end), got {blurry}")


def blur(plan: list[tuple[torch.Tensor, torch.Tensor]], blurry: float, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Swap samples across each boundary region of ``plan`` (stretches of (experience,
    row) pairs) as the module docstring defines; stretch lengths are kept."""
    plan = [(src.clone(), rows.clone()) for src, rows in plan]
    for i in range(len(plan) - 1):
        (src_a, rows_a), (src_b, rows_b) = plan[i], plan[i + 1]
        tail, head = int(blurry * len(rows_a)), int(blurry * len(rows_b))
        s = min(tail, head) // 2
        if s == 0:
            continue
        pos_a = len(rows_a) - tail + torch.randperm(tail, generator=generator)[:s]
        pos_b = torch.randperm(head, generator=generator)[:s]
        src_a[pos_a], src_b[pos_b] = src_b[pos_b].clone(), src_a[pos_a].clone()
        rows_a[pos_a], rows_b[pos_b] = rows_b[pos_b].clone(), rows_a[pos_a].clone()
    return plan


def blurry_plan(sizes: list[int], repeats: int, blurry: float, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each experience in order: (experience of each sample, row of each sample)."""
    plan = []
    for i, n in enumerate(sizes):
        rows = torch.cat([torch.randperm(n, generator=generator) for _ in range(repeats)])
        plan.append((torch.full((len(rows),), i, dtype=torch.long), rows))
    return blur(plan, blurry, generator)


def as_task_agnostic(scenario: Scenario, *, repeats: int = 1, blurry: float = 0.0, name: Optional[str] = None) -> TaskAgnosticScenario:
    """Any class-incremental scenario as a task-agnostic stream."""
    if scenario.kind not in (CLASS_INCREMENTAL, TASK_AGNOSTIC):
        raise ValueError(f"only class-incremental scenarios can become task-agnostic streams; {scenario.name!r} is {scenario.kind}")
    base = {f.name: getattr(scenario, f.name) for f in fields(Scenario)}
    description = {**scenario.description, "repeats": repeats, "blurry": blurry}
    base.update(name=name or scenario.name, kind=TASK_AGNOSTIC, repeats=repeats, description=description)
    return TaskAgnosticScenario(**base, blurry=blurry)


def build_task_agnostic(cfg: TaskAgnosticConfig, *, data_root: Optional[Path], seed: int) -> TaskAgnosticScenario:
    """Build the class-incremental stream ``cfg`` describes, streamed task-agnostically."""
    check_stream_settings(cfg.repeats, cfg.blurry)
    scenario = build_class_incremental(cfg, data_root=data_root, seed=seed)
    return as_task_agnostic(scenario, repeats=cfg.repeats, blurry=cfg.blurry)


@dataclass
class RecurringConfig(TaskAgnosticConfig):
    """A task-agnostic stream that revisits experiences in the order ``schedule``."""

    schedule: List[int] = field(default_factory=lambda: [0, 1, 2, 1, 3, 4, 2])


def build_recurring(cfg: RecurringConfig, *, data_root: Optional[Path], seed: int) -> TaskAgnosticScenario:
    """The task-agnostic stream of ``cfg`` trained in the order ``cfg.schedule``."""
    scenario = build_task_agnostic(cfg, data_root=data_root, seed=seed)
    T = len(scenario.experiences)
    schedule = [int(s) for s in cfg.schedule]
    if not schedule or any(not 0 <= s < T for s in schedule):
        raise ValueError(f"scenario.schedule={schedule} must be a non-empty list of experience indices; "
                         f"valid: integers in 0..{T - 1}")
    scenario.schedule = schedule
    scenario.description = {**scenario.description, "schedule": schedule}
    return scenario


register_scenario("split_fmnist_stream", build_task_agnostic, TaskAgnosticConfig())
register_scenario("split_fmnist_blurry", build_task_agnostic, TaskAgnosticConfig(blurry=0.1))
register_scenario("split_fmnist_recurring", build_recurring, RecurringConfig())
