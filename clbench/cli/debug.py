"""Quick runs: the ``debug=`` variants and what a recipe costs on this machine.

A variant is a YAML file under ``clbench/conf/debug/`` (what holds for every strategy:
logger, progress, epochs, ``log_every``, ``count_flops``) plus, for the variants named in
:data:`VARIANTS`, what YAML cannot say for every strategy and scenario family alike:

- shorter setup and inner loops for any strategy or add-on that has the field
  (:data:`LOOPS`: DKVB's key init, CLR's and MULTI-LANE's trunk pretraining, TAME's
  selector and pruning epochs, FPF's iterations); the model's sizes stay the recipe's,
  so every phase runs the real thing, except the few whose cost does not shrink with
  the data (:data:`SIZES`, fast and overfit only: RanPAC's 10,000 x 10,000 ridge solves);
- at most ``train`` training and ``test`` test samples per experience (a seeded draw),
  for any scenario family, applied by the launcher (:func:`apply_debug`) to the built
  scenario and recorded as a deviation; the record's config gets a ``debug`` entry, so
  a smoke run never shares a leaderboard row with a real one.

A value given on the command line (``strategy.key_init_steps=100``) wins over the
variant's. ``debug=<your own file>`` applies only its YAML.

:func:`estimate` says what a config costs: the optimisation steps of its stream (as
``clbench.protocol.bookkeeping.plan_lines`` counts them) and the time per step measured
by a short run of the same model on a few batches of the scenario's own data.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

#: the setup and inner loops a quick run shortens, by field name (the sizes of the model
#: stay; compare clbench.protocol.contract.SMALL, which also shrinks the model)
LOOPS: dict[str, Any] = {
    "pretrain_epochs": 1, "key_init_epochs": 1, "key_init_limit": 64, "key_init_steps": 2, "selector_epochs": 1,
    "selector_finetune_epochs": 1, "expert_prune_epochs": 1, "iters": 2, "fpf_iters": 2,
}

#: model sizes whose cost does not shrink with the data (a quick run shrinks them too)
SIZES: dict[str, Any] = {"projection_dim": 1024}


@dataclass(frozen=True)
class Variant:
    """What a ``debug=`` variant changes beyond its YAML: samples per experience
    (``train``, ``test``; None: all) and the fields it sets (at most these values)."""

    name: str
    train: Optional[int]
    test: Optional[int]
    loops: dict = field(default_factory=lambda: dict(LOOPS))
    purpose: str = ""


VARIANTS: dict[str, Variant] = {
    "fast": Variant("fast", 64, 32, {**LOOPS, **SIZES},
                    purpose="a smoke run: every phase once, 1 epoch, in well under a minute"),
    "overfit": Variant("overfit", 32, 32, {**LOOPS, **SIZES},
                       purpose="a tiny fixed subset for many epochs: the training loss must go down"),
    "profile": Variant("profile", 256, 128, purpose="a short run with FLOPs counted and the time of every phase"),
}


def variant_of(cfg: Any) -> Optional[str]:
    """The ``debug=`` option a composed run config was made with (from its overrides)."""
    from clbench.config import explicit_overrides

    for text in explicit_overrides(cfg) or []:
        key, _, value = text.partition("=")
        if key.lstrip("+") == "debug" and value:
            return value
    return None


def apply_debug(cfg: Any, scenario: Any) -> Any:
    """Apply the debug variant ``cfg`` was composed with (if any, and if it is one of
    :data:`VARIANTS`): set its fields (:data:`LOOPS`, :data:`SIZES`) in ``cfg.strategy``
    and ``cfg.addon`` where the command line did not, record them as ``cfg.debug``, return
    ``scenario`` with at most the variant's samples per experience (a deviation)."""
    variant = VARIANTS.get(variant_of(cfg) or "")
    if variant is None:
        return scenario
    from omegaconf import open_dict

    from clbench.config import explicit_overrides

    given = {o.split("=", 1)[0].lstrip("+~") for o in explicit_overrides(cfg) or []}
    applied: dict[str, Any] = {}
    for group in ("strategy", "addon"):
        node = cfg.get(group)
        if node is None:
            continue
        for key, value in variant.loops.items():
            if key in node and f"{group}.{key}" not in given:
                current = node[key]
                node[key] = value if current is None else min(current, value)
                applied[f"{group}.{key}"] = node[key]
    seed = int(cfg.get("seed", 0))
    scenario = limit_samples(scenario, variant.train, variant.test, seed, reason=f"debug={variant.name}")
    with open_dict(cfg):
        cfg.debug = {"variant": variant.name, "train_per_experience": variant.train,
                     "test_per_experience": variant.test, "settings": applied}
    return scenario


def limit_samples(scenario: Any, train: Optional[int], test: Optional[int], seed: int, reason: str) -> Any:
    """``scenario`` with each experience's training and test data cut to at most ``train``
    / ``test`` samples (a seeded draw, in the data's order), the cut recorded in its
    description's deviations. Works for every family: it only subsets datasets."""
    import torch

    from clbench.api.data import subset

    generator = torch.Generator().manual_seed(10_007 + seed)

    def cut(data: Any, limit: Optional[int], tag: str) -> Any:
        if limit is None or len(data) <= limit:
            return data
        keep = torch.randperm(len(data), generator=generator)[:limit].sort().values
        return subset(data, keep, tag)

    scenario.experiences = [dataclasses.replace(e, train=cut(e.train, train, "debug-train"),
                                                test=cut(e.test, test, "debug-test")) for e in scenario.experiences]
    limits = " and ".join(f"{n} {what}" for n, what in ((train, "training"), (test, "test")) if n is not None)
    description = dict(scenario.description)
    description["deviations"] = list(description.get("deviations", [])) + [
        f"{reason}: at most {limits} samples per experience (a seeded draw): a quick run, not a result"]
    scenario.description = description
    return scenario


# -- after the run ------------------------------------------------------------------------------

def reporter(cfg: Any) -> Optional[Callable[[dict], None]]:
    """What the variant prints once its run has a record (``execute``'s ``on_record``):
    ``profile`` the time (and FLOPs) of every phase, ``overfit`` whether the training
    loss went down; None for the other variants."""
    name = variant_of(cfg)
    if name not in ("profile", "overfit"):
        return None

    def report(where: dict) -> None:
        from clbench.results.records import RecordError, load

        try:
            record = load(Path(where["path"]))
        except (RecordError, OSError, KeyError):
            return
        for line in (profile_lines(record) if name == "profile" else overfit_lines(record)):
            print(line, flush=True)

    return report


def profile_lines(record: Any) -> list[str]:
    """The time (and, where counted, FLOPs) of every phase of a run, summed over its rows."""
    seconds: dict[str, float] = {}
    for row in record.timing.get("phases", []) or []:
        for k, v in row.items():
            seconds[k] = seconds.get(k, 0.0) + float(v)
    flops: dict[str, float] = {}
    for row in record.compute.get("flops_phases", []) or []:
        for k, v in (row or {}).items():
            flops[k] = flops.get(k, 0.0) + float(v or 0)
    total = sum(seconds.values()) or 1.0
    lines = ["profile: time per phase (all rows)", f"  {'phase':<24} {'seconds':>9} {'share':>6} {'GFLOPs':>10}"]
    for k, v in sorted(seconds.items(), key=lambda kv: -kv[1]):
        g = f"{flops[k] / 1e9:10.3f}" if k in flops else f"{'—':>10}"
        lines.append(f"  {k:<24} {v:9.3f} {100 * v / total:5.1f}% {g}")
    lines.append(f"  {'total':<24} {total:9.3f}")
    return lines


def overfit_lines(record: Any) -> list[str]:
    """Whether the loss went down over the first experience (``debug=overfit``)."""
    curve = [p for p in record.extra.get("loss_curve", []) if p[1] is not None]
    firsts = record.extra.get("first_steps", []) or [0]
    end = firsts[1] if len(firsts) > 1 else math.inf
    first_exp = [p for p in curve if p[0] <= end]
    if len(first_exp) < 2:
        return ["overfit: too few points on the loss curve of experience 1 to tell (lower log_every)"]
    a, b = first_exp[0][1], first_exp[-1][1]
    verdict = "went down" if b < a else "DID NOT go down: check the learning rate and the loss"
    return [f"overfit: training loss on experience 1 {verdict} ({a:.4f} at step {first_exp[0][0]} -> "
            f"{b:.4f} at step {first_exp[-1][0]})"]


# -- what a config costs -------------------------------------------------------------------------

#: the scenario a strategy is shown and measured on: the first of these it runs on
DEFAULT_SCENARIOS = ("split_fmnist", "split_fmnist_ti", "mlfmnist", "split_fmnist_stream")


def default_scenario(strategy: str) -> Optional[str]:
    """The scenario ``clbench list <strategy>`` measures on: the run's default
    (``split_fmnist``) where the strategy supports it, else the Fashion-MNIST scenario
    of the first family it supports."""
    from clbench.api.scenario import SCENARIOS
    from clbench.api.strategy import STRATEGIES
    from clbench.config.finder import listing
    from clbench.protocol.compat import IncompatibleError, check_compatible

    cls = STRATEGIES.get(strategy)
    kinds = {n: s["kind"] for n, s in listing()["scenarios"].items()}
    for name in DEFAULT_SCENARIOS + tuple(sorted(SCENARIOS.names())):
        if name not in kinds:
            continue
        try:
            check_compatible(cls, kinds[name], name)
        except IncompatibleError:
            continue
        return name
    return None


@dataclass
class Estimate:
    """The cost of a config: its stream's optimisation steps and, when measured, the
    seconds per step on this machine."""

    strategy: str
    scenario: str
    steps: int
    epochs: int
    batch_size: int
    samples: int
    experiences: int
    per_step: Optional[float] = None
    device: str = "cpu"
    problem: str = ""
    #: seconds of each experience's begin/end hooks (e.g. RanPAC's ridge solve), measured
    #: on a small experience; ``grows``: the strategy has its own end hook, whose cost may
    #: grow with the experience's size (so the figure is a lower bound)
    per_experience: float = 0.0
    grows: bool = False
    #: frozen-encoder strategies: seconds per sample encoded, and the samples the run encodes
    encode_per_sample: float = 0.0
    encoded: int = 0

    def total(self) -> float:
        """Seconds of training, the experiences' hooks and the frozen encoder's pass together."""
        return (self.per_step or 0.0) * self.steps + self.per_experience * self.experiences + \
            self.encode_per_sample * self.encoded

    def lines(self, what: str = "the paper recipe") -> list[str]:
        out = [f"cost of {what} ({self.strategy} on {self.scenario}): {self.experiences} experiences, "
               f"{self.samples:,} training samples, {self.epochs} epoch(s) each, batch {self.batch_size}: "
               f"about {self.steps:,} optimisation steps"]
        if self.per_step is not None:
            parts = [f"{self.per_step * 1e3:,.1f} ms per step x {self.steps:,} steps"]
            if self.per_experience >= 0.05:
                parts.append(f"{'at least ' if self.grows else ''}{_duration(self.per_experience)} per experience "
                             f"(its end hook) x {self.experiences}")
            if self.encoded:
                parts.append(f"frozen encoder {self.encode_per_sample * 1e3:,.2f} ms per sample x {self.encoded:,} "
                             "samples")
            more = " or more" if self.grows and self.per_experience >= 0.05 else ""
            out.append(f"  estimated time on this machine ({self.device}), measured on a few batches of the same "
                       f"model: {' + '.join(parts)} = about {_duration(self.total())}{more} (an estimate; setup "
                       "phases such as pretraining or key init, the evaluation and extra phases such as FPF come "
                       "on top)")
        elif self.problem:
            out.append(f"  time not measured: {self.problem}")
        return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def estimate(cfg: Any, *, timing: bool = True, timed_steps: int = 2) -> Estimate:
    """The cost of the composed run config ``cfg``: steps counted as ``plan_lines``
    counts them on the real scenario; with ``timing``, the seconds per step of the same
    strategy (its config with only :data:`LOOPS` and ``epochs`` shortened, a random trunk) trained for
    ``timed_steps`` batches on each of two experiences of the scenario's own data (the
    second is timed; random weights, the speed does not depend on them)."""
    import torch
    from omegaconf import OmegaConf

    from clbench.api.scenario import build_scenario
    from clbench.api.strategy import STRATEGIES
    from clbench.config import data_root
    from clbench.models.backbones import BACKBONE_PRESETS
    from clbench.protocol.compat import check_compatible, resolve_device
    from clbench.settings import settings_of

    settings = settings_of(cfg)
    cls = STRATEGIES.get(cfg.strategy.name)
    check_compatible(cls, cfg.scenario.kind, cfg.scenario.name)
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=cfg.seed)
    info = scenario.info_for(settings.val_fraction)
    backbone = OmegaConf.to_object(cfg.backbone)
    preferred = cls.preferred_backbone(info)
    if preferred and preferred in BACKBONE_PRESETS and preferred != backbone.name:
        backbone = dataclasses.replace(BACKBONE_PRESETS[preferred])
    backbone = dataclasses.replace(backbone, weights="none")  # the speed of a step does not depend on them
    config = OmegaConf.to_object(cfg.strategy)
    strategy = cls(config, info, backbone, seed=cfg.seed)
    bs, epochs = int(strategy.config.batch_size), int(getattr(strategy.config, "epochs", 1) or 1)
    sizes = scenario.train_sizes(settings.val_fraction)
    if scenario.visibility.boundaries:
        steps = sum(-(-sizes[e] // bs) for e in scenario.steps) * epochs
    else:
        epochs, steps = 1, -(-scenario.stream_size(settings.val_fraction) // bs)
    device = resolve_device(settings.device)
    threads = torch.get_num_threads()
    where = f"{device}, {threads} thread{'s' if threads > 1 else ''}" if device.type == "cpu" else str(device)
    found = Estimate(cfg.strategy.name, scenario.name, steps, epochs, bs, scenario.stream_size(settings.val_fraction),
                     len(scenario.steps), device=where)
    if strategy.frozen_encoder() is not None:  # the session encodes every train, validation and test set once
        found.encoded = sum(len(e.train) + len(e.test) for e in scenario.experiences)
    found.grows = _overrides(cls, "end_experience") and bool(scenario.visibility.boundaries)
    del strategy
    if timing:
        try:
            measured = _seconds_per_step(cls, config, backbone, scenario, settings, cfg, bs, timed_steps)
            if measured is not None:
                found.per_step, found.per_experience, found.encode_per_sample = measured
            if not scenario.visibility.boundaries:
                found.per_experience = 0.0  # no experience hooks in a task-agnostic stream
        except Exception as err:  # noqa: BLE001 - an estimate never fails the help
            found.problem = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    if not found.encoded:
        found.encode_per_sample = 0.0
    return found


def _overrides(cls: type, name: str) -> bool:
    """Whether ``cls`` has its own ``name`` (not the base Strategy's no-op)."""
    from clbench.api.strategy import Strategy

    return getattr(cls, name, None) is not getattr(Strategy, name, None)


def _timed(fn: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """``fn`` adding its seconds to ``spent`` at each call."""
    import time

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    return wrapper


def _seconds_per_step(cls: type, config: Any, backbone: Any, scenario: Any, settings: Any, cfg: Any, bs: int,
                      timed_steps: int) -> Optional[tuple[float, float, float]]:
    """Train the strategy on ``timed_steps`` batches (of ``bs``) of each of two
    experiences: the seconds of the second experience's training (phase ``train``) per
    step without its begin/end hooks, the seconds of those hooks, and the frozen encoder's
    seconds per encoded sample on that experience (0 without one)."""
    from clbench import protocol
    from clbench.config import data_root
    from clbench.settings import RunSettings

    changes = {k: v for k, v in LOOPS.items() if hasattr(config, k)}
    changes["epochs"] = 1
    if hasattr(config, "trunk"):
        changes["trunk"] = "random"  # no pretraining: the trunk's weights do not change its speed
    timed_config = dataclasses.replace(config, **changes)
    keep = scenario.experiences[:2]
    scenario.experiences, scenario.schedule, scenario.repeats = keep, None, 1
    n_train = math.ceil(bs * timed_steps / (1 - settings.val_fraction)) + 1
    scenario = limit_samples(scenario, n_train, 16, int(cfg.seed), reason="timing")
    small = scenario.info_for(settings.val_fraction)
    strategy = cls(timed_config, small, backbone, seed=cfg.seed)
    hooks: list[float] = []
    for name in ("begin_experience", "end_experience"):
        setattr(strategy, name, _timed(getattr(strategy, name), hooks))
    second = len(scenario.experiences[1].train)  # what the second experience's row encodes (train + validation)
    with tempfile.TemporaryDirectory(prefix="clbench-estimate-") as tmp:
        run_settings = RunSettings(seed=int(cfg.seed), device=settings.device, progress=False, log_every=1,
                                   results_dir=tmp, eval_rows="final", eval_batch_size=settings.eval_batch_size,
                                   val_fraction=settings.val_fraction)
        record, _ = protocol.run(scenario, strategy, settings=run_settings, data_root=data_root(cfg))
    firsts = record.extra.get("first_steps") or []
    curve = record.extra.get("loss_curve") or []
    phases = record.timing.get("phases") or []
    if len(firsts) < 2 or not curve or len(phases) < 3:
        return None
    steps = curve[-1][0] - firsts[1]
    per_experience = sum(hooks[-2:]) if len(hooks) >= 4 else 0.0  # the second experience's begin and end
    seconds = phases[2].get("train", 0.0) - per_experience
    encode = phases[2].get("encode", 0.0)  # the second experience's: past the first call's warm-up
    if steps <= 0:
        return None
    return max(seconds, 0.0) / steps, per_experience, encode / second if second else 0.0
