"""Task-agnostic streams: any class-incremental scenario as one continuous stream.

``scenario=stream scenario.base=<name>`` streams the class-incremental scenario ``<name>``
(``split_mnist``, ``split_fmnist``, ``split_cifar10``, ``split_digits``, ``avalanche``, ...):
it is built with its own preset config, and the wrapper's overrides (``train_per_class``,
``class_order``, ... ; null: the base's value; ``+scenario.base_options.<key>=`` for any other
field of the base's config, e.g. Avalanche's ``benchmark``) are applied to it first.
``blurry`` and ``recurring`` are the same wrapper with blurred boundaries and with a
revisiting schedule. The stream is named ``<base>_stream`` / ``<base>_blurry`` /
``<base>_recurring`` in records; the presets ``split_fmnist_stream``, ``split_fmnist_blurry``
and ``split_fmnist_recurring`` are these wrappers over ``split_fmnist``.

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

Recurring tasks (``recurring``, ``split_fmnist_recurring``): the experiences are trained in
the order ``schedule`` (0-based indices, default tasks 1 2 3 2 4 5 3), still one continuous
stream with no ids and no boundaries; the matrix has one row per step of the schedule and
one column per distinct experience.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from clbench.api.scenario import SCENARIOS, Scenario, ScenarioConfig, build_scenario, register_scenario
from clbench.fields import setting
from clbench.registry import UnknownNameError
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC

#: the wrapper presets: ``scenario=<name> scenario.base=<class-incremental scenario>``
WRAPPERS = ("stream", "blurry", "recurring")
#: the wrapper's fields that override the same field of the base's config when not null
OVERRIDES = ("source", "classes_per_experience", "base_classes", "class_order", "shuffle_classes",
             "train_per_class", "test_per_class", "download", "augmentation")


@dataclass
class StreamConfig(ScenarioConfig):
    """The class-incremental scenario ``base`` streamed task-agnostically; ``blurry``
    mixes boundaries. The override fields (null: the base's own value) and
    ``base_options`` are applied to the base's preset config before it is built."""

    kind: str = TASK_AGNOSTIC
    base: str = setting("split_fmnist", "the class-incremental scenario to stream (split_mnist, split_fmnist, "
                        "split_cifar10, split_digits, avalanche, ...)")
    repeats: int = setting(1, "passes over each experience, back to back (E in TAME's protocol)", ge=1)
    blurry: float = setting(0.0, "fraction of each boundary region that is mixed", ge=0, le=0.5)
    source: Optional[str] = setting(None, "the base's data source (null: the base's)")
    classes_per_experience: Optional[int] = setting(None, "new classes per experience (null: the base's)", ge=1)
    base_classes: Optional[int] = setting(None, "classes of the first experience (null: the base's)", ge=0)
    class_order: Optional[List[int]] = setting(None, "the class order (null: the base's, seeded by seed)")
    shuffle_classes: Optional[bool] = setting(None, "shuffle the class order by the seed (null: the base's)")
    train_per_class: Optional[int] = setting(None, "training images per class (null: the base's; a recorded "
                                             "deviation)", ge=1)
    test_per_class: Optional[int] = setting(None, "test images per class (null: the base's; a recorded deviation)",
                                            ge=1)
    download: Optional[bool] = setting(None, "let torchvision download the base's data set (null: the base's)")
    augmentation: Optional[str] = setting(None, "training-time augmentation (null: the base's)")
    base_options: Dict[str, Any] = setting(default_factory=dict, help="other fields of the base's config "
                                           "(+scenario.base_options.<key>=<value>)")


TaskAgnosticConfig = StreamConfig  # the name before the wrappers (kept for plugins that import it)


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


def base_config(cfg: StreamConfig) -> Any:
    """The base scenario's preset config with the wrapper's overrides applied; refused
    unless the base is a class-incremental scenario and every override is one of its fields."""
    name = cfg.base
    try:
        SCENARIOS.get(name)  # imports the base's module: its preset is then in Hydra's ConfigStore
    except UnknownNameError:
        choices = class_incremental_scenarios()
        close = difflib.get_close_matches(name, choices, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown scenario.base={name!r}.{hint} Valid choices (class-incremental scenarios): "
                         f"{', '.join(choices)}") from None
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    node = ConfigStore.instance().repo.get("scenario", {}).get(f"{name}.yaml")
    if node is None:
        raise ValueError(f"scenario.base={name!r} has no preset config to build it from")
    base = OmegaConf.to_object(node.node)
    if base.kind != CLASS_INCREMENTAL:
        raise ValueError(f"scenario.base={name!r} is {base.kind}; a task-agnostic stream wraps a class-incremental "
                         f"scenario (valid: {', '.join(class_incremental_scenarios())})")
    own = {f.name for f in fields(base)}
    changes = {k: getattr(cfg, k) for k in OVERRIDES if getattr(cfg, k) is not None}
    changes.update(dict(cfg.base_options or {}))
    bad = sorted(k for k in changes if k not in own or k in ("name", "kind", "defaults"))
    if bad:
        valid = sorted(own - {"name", "kind", "defaults", "default_backbone", "repeats"})
        raise ValueError(f"scenario.base={name!r} has no setting {', '.join(bad)}; its settings: {', '.join(valid)} "
                         f"(set them as scenario.<key>= where the stream declares them, else "
                         f"+scenario.base_options.<key>=)")
    return dataclasses.replace(base, **changes)


def class_incremental_scenarios() -> list[str]:
    """The registered scenarios a stream can wrap (their preset is class-incremental)."""
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo.get("scenario", {})
    names = [n for n in SCENARIOS.names() if f"{n}.yaml" in repo]
    return [n for n in names if getattr(repo[f"{n}.yaml"].node, "kind", None) == CLASS_INCREMENTAL]


def stream_name(cfg: StreamConfig) -> str:
    """``<base>_stream`` (``_blurry``, ``_recurring``) for the wrappers; a preset keeps its name."""
    return f"{cfg.base}_{cfg.name}" if cfg.name in WRAPPERS else cfg.name


def build_task_agnostic(cfg: StreamConfig, *, data_root: Optional[Path], seed: int) -> TaskAgnosticScenario:
    """Build the class-incremental scenario ``cfg.base`` (with the overrides), streamed task-agnostically."""
    check_stream_settings(cfg.repeats, cfg.blurry)
    scenario = build_scenario(base_config(cfg), data_root=data_root, seed=seed)
    streamed = as_task_agnostic(scenario, repeats=cfg.repeats, blurry=cfg.blurry, name=stream_name(cfg))
    streamed.description = {**streamed.description, "base": cfg.base}
    return streamed


@dataclass
class RecurringConfig(StreamConfig):
    """A task-agnostic stream that revisits experiences in the order ``schedule``."""

    schedule: List[int] = setting(default_factory=lambda: [0, 1, 2, 1, 3, 4, 2],
                                  help="the experiences trained, in order (0-based indices; repeats revisit)")


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


register_scenario("stream", build_task_agnostic, StreamConfig())
register_scenario("blurry", build_task_agnostic, StreamConfig(blurry=0.1))
register_scenario("recurring", build_recurring, RecurringConfig())
register_scenario("split_fmnist_stream", build_task_agnostic, StreamConfig(base="split_fmnist"))
register_scenario("split_fmnist_blurry", build_task_agnostic, StreamConfig(base="split_fmnist", blurry=0.1))
register_scenario("split_fmnist_recurring", build_recurring, RecurringConfig(base="split_fmnist"))
