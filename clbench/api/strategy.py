"""The strategy API: what a continual learner implements and how it is registered.

A strategy is a ``torch.nn.Module`` with one required training hook (``observe``) and
one required inference hook (``predict``). The protocol owns the loop over
experiences and all evaluation; a strategy only ever sees a :class:`LearnerView`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import weakref
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, ContextManager, Mapping, Optional, Union

import torch
from torch import nn

from clbench import fields
from clbench.api.augment import get_augmentation
from clbench.api.auxdata import AuxData
from clbench.api.view import LearnerView
from clbench.registry import Registry
from clbench.types import KINDS, VISIBLE_THINGS, Batch, ExperienceInfo, Prediction, ScenarioInfo, StepStats


@dataclass
class StrategyConfig:
    """Fields every strategy config has. Subclasses set the method's paper defaults and
    declare each field's help and valid range with :func:`clbench.fields.setting`."""

    name: str = "?"
    epochs: int = fields.setting(1, "training epochs per experience", ge=1)
    batch_size: int = fields.setting(32, "samples per training batch", ge=1)


class Strategy(nn.Module):
    """Base class of every continual learner.

    Class attributes a subclass sets:
      ``config_class``: its config dataclass (defaults = the paper's recipe);
      ``kinds``: scenario kinds it supports; ``needs``: what it must see
      (a subset of ``task_id_train``, ``task_id_test``, ``boundaries``);
      ``paper_defaults``: True where the config defaults are a paper's recipe, so that
      every change from them is recorded as a deviation;
      ``paper_backbone``: the paper's backbone name, if any;
      ``uses_validation``: True if the method selects anything on the validation split
      (otherwise the hold-out is a recorded deviation where the paper trains on it all);
      ``state_attrs``: plain attributes (counters, lists of ints) saved by ``state_dict``.

    Optimisers, schedulers, replay buffers and ``torch.Generator`` attributes are found
    and saved by ``state_dict()`` without any code in the subclass; a strategy that
    grows modules during the stream (per-task heads, experts) returns what rebuilds them
    from :meth:`structure` and rebuilds them in :meth:`build_structure`.
    """

    config_class: ClassVar[type] = StrategyConfig
    kinds: ClassVar[frozenset[str]] = frozenset(KINDS)
    needs: ClassVar[frozenset[str]] = frozenset()
    paper_defaults: ClassVar[bool] = False
    paper_backbone: ClassVar[Optional[str]] = None
    uses_validation: ClassVar[bool] = False
    state_attrs: ClassVar[tuple[str, ...]] = ()
    #: whether ``state_dict`` holds everything training depends on, so that a run can be
    #: continued from an experience checkpoint (``resume=``) with an identical result
    resumable: ClassVar[bool] = True
    #: whether the learner may train in channels_last (the default ``channels_last=true``);
    #: False for code that assumes contiguous tensors (e.g. a gradient ``.view(-1)``)
    channels_last_ok: ClassVar[bool] = True

    def __init__(self, config: Any, info: ScenarioInfo, backbone: Any = None, *, seed: int = 0) -> None:
        super().__init__()
        fields.check(config, "strategy.")  # the ranges the config's fields declare
        self.config = config
        self.info = info
        self.backbone_config = backbone
        self.seed = seed
        #: all of the strategy's own randomness (sampling, buffers, augmentation of replays)
        self.generator = torch.Generator().manual_seed(seed)
        self._augmentation = get_augmentation(info.augmentation if info is not None else "none")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fn = cls.__dict__.get("observe")
        if fn is not None and not getattr(fn, "_reports_steps", False):
            cls.observe = _reporting(fn)  # type: ignore[method-assign]

    # -- hooks -------------------------------------------------------------------
    @classmethod
    def preferred_backbone(cls, info: ScenarioInfo) -> Optional[str]:
        """The backbone this method wants for a scenario like ``info`` (a name in the
        backbone group), or None to keep the scenario's default; ``backbone=`` wins."""
        return None

    def aux_requests(self) -> dict[str, str]:
        """Extra data sets the method uses before the stream: ``{purpose: registered
        name}`` (see ``clbench.api.auxdata``), named in its config. The protocol loads them
        and passes them to :meth:`prepare`."""
        return {}

    def prepare(self, aux: Mapping[str, AuxData]) -> None:
        """A phase before the stream and before row 0 (e.g. DKVB's key initialisation on
        other data); ``aux`` holds the data sets :meth:`aux_requests` asked for. Timed."""

    def begin_experience(self, info: ExperienceInfo) -> None:
        """Called before training on an experience, only where boundaries are visible."""

    def train_experience(self, view: LearnerView) -> None:
        """Train on one experience; the default loops ``epochs`` times over ``observe``."""
        for _ in range(self.config.epochs):
            for batch in view.batches(self.config.batch_size):
                self.observe(batch)

    def observe(self, batch: Batch) -> StepStats:
        """One optimisation step on ``batch``; return its loss as a tensor (no ``float()``:
        the protocol accumulates it on the device)."""
        raise NotImplementedError

    def end_experience(self) -> None:
        """Called after training on an experience, only where boundaries are visible."""

    def end_stream(self) -> None:
        """Called once after the last training step of the stream, before the final
        evaluation, in every family (it reveals nothing: the stream is over). Timed and
        counted as training."""

    def min_batches_per_task(self) -> Optional[int]:
        """The fewest consecutive batches of one task this method needs to work as designed
        (e.g. TAME: a shift-detection window refilled by a trained expert), or None. The
        protocol, which alone knows the plan, compares it with each task of the task-agnostic
        stream it cuts and records a warning for shorter ones; the method is told nothing."""
        return None

    def before_eval(self) -> None:
        """Build inference-only machinery (e.g. TAME's selector) on the EVALUATION COPY of
        the learner: the live learner never gets this call. Counted as training compute."""

    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> Union[torch.Tensor, Prediction]:
        """Scores over global class ids, shape ``(batch, num_classes)``, or a
        :class:`Prediction` with a per-sample route. Called on the evaluation copy only."""
        raise NotImplementedError

    def frozen_encoder(self) -> Optional[nn.Module]:
        """A frozen encoder whose outputs the protocol may compute once and cache.

        Where this returns a module, ``observe`` and ``predict`` receive its outputs
        instead of raw inputs. Its output must depend on the input alone.
        """
        return None

    def frozen_copies(self) -> dict[str, nn.Module]:
        """Stored frozen copies of (part of) the model, e.g. a distillation teacher: the
        record counts their parameters apart from the model's (``params.frozen_copies``).
        The default finds each direct submodule with no trainable parameter whose
        parameter shapes equal another direct submodule's, or all the others' together;
        a strategy whose copies look otherwise returns them itself."""
        children = [(n, m) for n, m in self.named_children() if next(m.parameters(), None) is not None]

        def shapes(modules: list[nn.Module]) -> list[tuple[int, ...]]:
            return sorted(tuple(p.shape) for m in modules for p in m.parameters())

        found: dict[str, nn.Module] = {}
        for name, module in children:
            if any(p.requires_grad for p in module.parameters()):
                continue
            others = [m for n, m in children if n != name and n not in found]
            mine = shapes([module])
            if others and (any(shapes([m]) == mine for m in others) or shapes(others) == mine):
                found[name] = module
        return found

    def metrics(self) -> dict[str, float]:
        """Named scalars at an evaluation point (e.g. experts, non-zero parameters),
        asked of the evaluation copy after ``before_eval``; into the record and W&B."""
        return {}

    # -- helpers -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def phase(self, name: str) -> ContextManager[None]:
        """A context that books its time and FLOPs to the run's phase ``strategy:<name>``
        (counted as training; e.g. k-FPF's finetuning phases), apart from ``train``."""
        harness = _HARNESS.get(self)
        return harness.clock.phase(f"strategy:{name}") if harness is not None else contextlib.nullcontext()

    def report_step(self, batch: Batch, stats: StepStats) -> None:
        """Report an optimisation step that did not go through ``observe`` (a method
        driven by another trainer, e.g. Avalanche's templates), so that the protocol's
        loss curve, non-finite check, routes and add-ons see it."""
        harness = _HARNESS.get(self)
        if harness is not None:
            harness.on_step(batch, stats)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The scenario's training augmentation, applied to (replayed) raw inputs with the
        strategy's own generator."""
        return self._augmentation(x, self.generator)

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
                if f.metadata.get("recipe") is False:
                    continue
                ours, theirs = getattr(self.config, f.name), getattr(paper, f.name)
                if f.name != "name" and ours != theirs:
                    whose = "our default" if f.metadata.get("recipe") == "ours" else "paper"
                    out.append(f"{f.name}={ours!r} ({whose}: {theirs!r})")
        bb = getattr(self.backbone_config, "name", None)
        if self.paper_backbone and bb and bb != self.paper_backbone:
            out.append(f"backbone={bb} (paper: {self.paper_backbone})")
        return out

    # -- state -------------------------------------------------------------------
    def structure(self) -> Any:
        """Plain data (ints, strings, lists) from which :meth:`build_structure` rebuilds
        the modules this strategy grew during the stream; None if it grows nothing."""
        return None

    def build_structure(self, structure: Any) -> None:
        """Grow the modules ``structure`` describes (called before loading a state)."""

    def get_extra_state(self) -> dict:
        """Everything that is not a parameter or buffer: generators, optimisers,
        schedulers, replay buffers and ``state_attrs``; plain data and tensors only."""
        return {
            "generators": {k: g.get_state() for k, g in _attrs(self, torch.Generator)},
            "stateful": {k: o.state_dict() for k, o in _stateful_attrs(self)},
            "attrs": {k: getattr(self, k) for k in self.state_attrs},
            "structure": self.structure(),
        }

    def set_extra_state(self, state: dict) -> None:
        gens = dict(_attrs(self, torch.Generator))
        for k, g in state.get("generators", {}).items():
            gens[k].set_state(g)
        stateful = dict(_stateful_attrs(self))
        for k, sd in state.get("stateful", {}).items():
            if k in stateful:  # an optimiser made per task and not (re)built by build_structure is not needed
                stateful[k].load_state_dict(sd)
        for k, v in state.get("attrs", {}).items():
            setattr(self, k, v)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Rebuild grown modules first (:meth:`build_structure`), then load as usual."""
        extra = state_dict.get("_extra_state")
        if isinstance(extra, dict) and extra.get("structure") is not None:
            self.build_structure(extra["structure"])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _attrs(obj: Any, kind: type) -> list[tuple[str, Any]]:
    """Attributes of ``obj`` (and items of list/dict attributes) that are ``kind``."""
    out = []
    for name, value in vars(obj).items():
        if isinstance(value, kind):
            out.append((name, value))
        elif isinstance(value, (list, tuple)):
            out += [(f"{name}.{i}", v) for i, v in enumerate(value) if isinstance(v, kind)]
        elif isinstance(value, dict):
            out += [(f"{name}.{k}", v) for k, v in value.items() if isinstance(v, kind)]
    return out


def _is_stateful(value: Any) -> bool:
    return (hasattr(value, "state_dict") and hasattr(value, "load_state_dict")
            and not isinstance(value, (nn.Module, type)))


def _stateful_attrs(obj: Any) -> list[tuple[str, Any]]:
    """Optimisers, LR schedulers, replay buffers, ... held by ``obj`` (not modules).
    Optimisers come first, so that schedulers load after the optimiser they drive."""
    found = []
    for name, value in vars(obj).items():
        items = ([(name, value)] if _is_stateful(value) else
                 [(f"{name}.{i}", v) for i, v in enumerate(value) if _is_stateful(v)] if isinstance(value, (list, tuple)) else
                 [(f"{name}.{k}", v) for k, v in value.items() if _is_stateful(v)] if isinstance(value, dict) else [])
        found += items
    return sorted(found, key=lambda kv: not isinstance(kv[1], torch.optim.Optimizer))


@dataclass(frozen=True)
class _Harness:
    clock: Any  # a clbench.protocol.phases.PhaseClock: Strategy.phase books its sub-phases there
    on_step: Callable[[Batch, Any], None]  # told of every optimisation step


#: the harness attached to each live learner (kept apart from the learner, so the
#: evaluation copy, a deep copy, has none)
_HARNESS: "weakref.WeakKeyDictionary[Strategy, _Harness]" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def harnessed(strategy: Strategy, *, clock: Any, on_step: Callable[[Batch, Any], None]):
    """While the block runs, ``strategy``'s steps are reported to ``on_step`` (every
    outermost ``observe`` and every ``report_step``) and its ``phase(name)`` blocks are
    booked on ``clock``. The protocol attaches its step monitor and phase clock so."""
    _HARNESS[strategy] = _Harness(clock, on_step)
    try:
        yield
    finally:
        _HARNESS.pop(strategy, None)


def _reporting(observe: Callable) -> Callable:
    """Wrap a subclass's ``observe`` so that every outermost call reports its batch and
    stats to the protocol, however the strategy drives its own loop."""

    @functools.wraps(observe)
    def wrapper(self: Strategy, batch: Batch) -> Any:
        harness = _HARNESS.get(self)
        if harness is None or self.__dict__.get("_observing"):
            return observe(self, batch)
        self.__dict__["_observing"] = True
        try:
            stats = observe(self, batch)
        finally:
            self.__dict__["_observing"] = False
        harness.on_step(batch, stats)
        return stats

    wrapper._reports_steps = True  # type: ignore[attr-defined]
    return wrapper


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
