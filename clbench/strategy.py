"""The strategy API: what a continual learner implements and how it is registered.

A strategy is a ``torch.nn.Module`` with one required training hook (``observe``) and
one required inference hook (``predict``). The protocol owns the loop over
experiences and all evaluation; a strategy only ever sees a :class:`LearnerView`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from clbench.registry import Registry
from clbench.types import KINDS, VISIBLE_THINGS, Batch, ExperienceInfo, ScenarioInfo, StepStats
from clbench.view import LearnerView


@dataclass
class StrategyConfig:
    """Fields every strategy config has. Subclasses set the method's paper defaults."""

    name: str = "?"
    epochs: int = 1
    batch_size: int = 32


class Strategy(nn.Module):
    """Base class of every continual learner.

    Class attributes a subclass sets:
      ``config_class``: its config dataclass (defaults = the paper's recipe);
      ``kinds``: scenario kinds it supports; ``needs``: what it must see
      (a subset of ``task_id_train``, ``task_id_test``, ``boundaries``);
      ``paper_defaults``: True where the config defaults are a paper's recipe, so that
      every change from them is recorded as a deviation;
      ``paper_backbone``: the paper's backbone name, if any.
    """

    config_class: ClassVar[type] = StrategyConfig
    kinds: ClassVar[frozenset[str]] = frozenset(KINDS)
    needs: ClassVar[frozenset[str]] = frozenset()
    paper_defaults: ClassVar[bool] = False
    paper_backbone: ClassVar[Optional[str]] = None

    def __init__(
        self, config: Any, info: ScenarioInfo, backbone: Any = None, *, seed: int = 0, data_root: Optional[Path] = None
    ) -> None:
        super().__init__()
        self.config = config
        self.info = info
        self.backbone_config = backbone
        self.seed = seed
        #: where extra data a method uses before the stream (e.g. DKVB's key init) is found
        self.data_root = data_root
        #: all of the strategy's own randomness (sampling, buffers) goes through this
        self.generator = torch.Generator().manual_seed(seed)

    # -- hooks -------------------------------------------------------------------
    def prepare(self) -> None:
        """A phase before the stream and before row 0 (e.g. DKVB's key initialisation on
        other data); the protocol times it. Called once, on the run's device."""

    def begin_experience(self, info: ExperienceInfo) -> None:
        """Called before training on an experience, only where boundaries are visible."""

    def train_experience(self, view: LearnerView) -> None:
        """Train on one experience; the default loops ``epochs`` times over ``observe``."""
        for _ in range(self.config.epochs):
            for batch in view.batches(self.config.batch_size):
                self.observe(batch)

    def observe(self, batch: Batch) -> StepStats:
        """One optimisation step on ``batch``."""
        raise NotImplementedError

    def end_experience(self) -> None:
        """Called after training on an experience, only where boundaries are visible."""

    def before_eval(self) -> None:
        """Refresh inference-only machinery before the protocol evaluates."""

    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Scores over global class ids, shape ``(batch, num_classes)``."""
        raise NotImplementedError

    def frozen_encoder(self) -> Optional[nn.Module]:
        """A frozen encoder whose outputs the protocol may compute once and cache.

        Where this returns a module, ``observe`` and ``predict`` receive its outputs
        instead of raw inputs. Its output must depend on the input alone.
        """
        return None

    # -- helpers -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def describe(self) -> dict:
        """Facts about this run of the method for the record (extra data used, weights
        sources, sizes); merged into ``record.strategy["details"]``."""
        return {}

    def deviations(self) -> list[str]:
        """How this run's settings differ from the method's paper recipe."""
        out: list[str] = []
        if self.paper_defaults:
            paper = self.config_class()
            for f in dataclasses.fields(paper):
                ours, theirs = getattr(self.config, f.name), getattr(paper, f.name)
                if f.name != "name" and ours != theirs:
                    out.append(f"{f.name}={ours!r} (paper: {theirs!r})")
        bb = getattr(self.backbone_config, "name", None)
        if self.paper_backbone and bb and bb != self.paper_backbone:
            out.append(f"backbone={bb} (paper: {self.paper_backbone})")
        return out


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(name: str):
    """Class decorator: register a strategy and its config under ``name``.

    The config dataclass is stored in Hydra's ConfigStore as ``strategy/<name>``, so
    ``strategy=<name> strategy.<field>=<value>`` works from the command line with
    type checking and unknown keys refused.
    """

    def decorate(cls: type[Strategy]) -> type[Strategy]:
        _check_declaration(name, cls)
        cls.name = name
        STRATEGIES.register(name, cls)
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(group="strategy", name=name, node=cls.config_class(name=name))
        return cls

    return decorate


def _check_declaration(name: str, cls: type[Strategy]) -> None:
    bad_kinds = set(cls.kinds) - set(KINDS)
    bad_needs = set(cls.needs) - set(VISIBLE_THINGS)
    if bad_kinds or bad_needs:
        raise ValueError(
            f"strategy {name!r} declares unknown kinds {sorted(bad_kinds)} or needs {sorted(bad_needs)}; "
            f"valid kinds: {list(KINDS)}, valid needs: {list(VISIBLE_THINGS)}"
        )
    if not dataclasses.is_dataclass(cls.config_class) or not issubclass(cls.config_class, StrategyConfig):
        raise TypeError(f"strategy {name!r}: config_class must be a StrategyConfig dataclass")
