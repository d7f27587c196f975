"""FPF, k-FPF and k-FPF-KD: forgetting-prioritised finetuning (Zhao, Zhou, Long, Jiang,
Zhang, "Does Continual Learning Equally Forget All Parameters?", ICML 2023, arXiv
2304.04158). No official code exists; the design page is
``shared/design/strategies/kfpf.md``.

What the paper establishes (and what this file implements as such):

- Forgetting is concentrated in a few task-specific modules that move sharply when the
  data shifts; for ResNets, the BatchNorm layers and the final classifier are the most
  sensitive, then the last residual stage.
- **FPF** (add-on ``fpf``, any strategy): after a continual learner has finished,
  finetune ONLY those modules for a few iterations on a small replay buffer.
  ``clbench run strategy=er addon=fpf`` / ``strategy=naive addon=fpf``.
- **k-FPF** (strategy ``kfpf``): no every-step replay at all. Plain SGD on the incoming
  data, and FPF triggered k times, periodically, regardless of task boundaries.
- **k-FPF-KD** (strategy ``kfpf_kd``): the FPF loss also matches logits stored in the
  buffer (DER-style mean squared error).
- A sensitivity score can pick the modules automatically; accuracy AND training FLOPs
  are the axes the paper reports (``count_flops=true`` counts every phase).

Our design where the paper text was not available to us (each is a config field):

- ``modules``: which modules FPF finetunes. ``bn_fc`` (default; every trainable
  BatchNorm + the classification head ``head``), ``bn_fc_last_stage`` (adds the last
  stage: ResNet ``layer4``, cnn28's last conv block, a ViT's last block), ``fc`` (the
  head only), ``auto`` (sensitivity score, below). The modules chosen and their
  parameter count are in the record (``describe()``).
- What "FC" means per backbone: the paper's FC is a ResNet's final classifier, which is
  our ``head`` (torchvision's ``fc`` is replaced by it), so on ResNets ``bn_fc`` is the
  paper's BN + FC. cnn28 ends its trunk in a Linear projection (1152 -> 128, 147,584
  parameters) before the head: ``bn_fc`` leaves it frozen (1,738 parameters finetuned
  at width 32: BN affine 448 + head 1,290); ``trunk_fc=true`` adds it (149,322, 62% of
  the model). A ViT's trunk ends in a LayerNorm: its FC is the head alone, and
  ``trunk_fc`` is refused there (no Linear ends the trunk). Measured on the
  split_fmnist kfpf reference row (k = 4), seeds 0-2: ACC 0.581 / 0.577 / 0.582 (mean
  0.580) with ``bn_fc``, 0.667 / 0.710 / 0.654 (mean 0.677) with ``trunk_fc=true``, at
  the same training FLOPs to 0.2%; the reference rows keep the paper's BN + FC.
- ``auto``: every leaf module that owns trainable parameters is a unit; its parameters
  are snapshotted every ``auto_window`` optimisation steps, and its score is the RMS
  per-parameter displacement per window, sqrt(sum_w ||theta_w - theta_{w-1}||^2 /
  (numel * windows)), over the interval since the previous FPF phase (or the start of
  the stream). Units are taken in decreasing score while their parameters fit in
  ``auto_budget`` x the trainable parameters (at least one). Scores come from the
  parameters alone: never from any data, test data least of all.
- The FPF phase: every other tensor is frozen bit for bit (parameters AND BatchNorm
  running statistics: non-chosen modules run in eval mode); plain SGD (``fpf_lr``,
  ``fpf_momentum``, a fresh optimiser per phase) on the chosen parameters for ``iters``
  iterations, each on ``batch_size`` samples drawn from the buffer without replacement
  and augmented with the scenario's training augmentation (``Strategy.augment``).
  ``bn_stats``: ``refresh`` (default: chosen BatchNorms run in train mode, so their
  running statistics are re-estimated on buffer data during the phase) or ``frozen``
  (every BatchNorm in eval mode; the chosen ones' affine parameters still learn).
- Buffer: reservoir sampling over the whole stream (``clbench.api.buffers.ReservoirBuffer``)
  of raw inputs, labels and (k-FPF-KD) the logits of the training forward pass. The
  head spans all ``info.num_classes`` classes from the start, so stored logits have a
  fixed width. The add-on uses the strategy's own buffer where it has one
  (``buffer=auto``; ER's) and otherwise keeps its own reservoir of ``buffer_size``.
- k-FPF trigger: N = planned optimisation steps of the whole stream =
  epochs x ceil(stream_size / batch_size) (``ScenarioInfo.stream_size``; epochs = 1 in
  the task-agnostic family, where repeats are already in stream_size); FPF fires after
  steps P, 2P, ..., (k - 1)P with P = ceil(N / k), counted over the whole stream and
  blind to boundaries, and the k-th time at the end of the stream: exactly k phases,
  the last one on the final model. The real stream can be longer than N (with
  boundaries, each experience ends in its own partial batch: 290 real steps for 282
  planned on the split_fmnist reference row), so the end is not a multiple of P; the
  interval before the last phase is then P + (real - N) steps or so. Where (k - 1)P
  exceeds the stream (k close to N) fewer phases run; ``describe()`` lists them.
- Compute: the add-on's phases are booked by the protocol as ``addon:fpf`` (time and
  FLOPs); k-FPF's phases run inside ``observe`` and are booked with its SGD steps under
  ``train``; the record's ``details`` say how many phases ran, after which steps, and
  how many samples they replayed.
- Recipe defaults of ``kfpf``: the Mammoth Seq-CIFAR-10 setup the paper's experiments
  follow (ResNet-18, 50 epochs per task, batch 32, buffer 500) with Mammoth's plain-SGD
  setting there (lr 0.1, no momentum; assumed, the paper's table was not available to
  us); k-FPF-KD's alpha 0.3 is DER's. Ours: k = 10, 300 FPF iterations of batch 32, FPF
  lr 0.01 without momentum (the add-on's ``iters``, ``batch_size``, ``lr``, ``momentum``
  are the same phase settings). Every change of a recipe field is a recorded deviation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from clbench.api.addon import Addon, AddonConfig, register_addon
from clbench.api.buffers import ClassBalancedBuffer, ReservoirBuffer
from clbench.api.strategy import register_strategy
from clbench.fields import setting
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL, Batch, ScenarioInfo, StepStats
from strategies.baselines import Finetune, FinetuneConfig, classification_loss

MODULE_PRESETS = ("bn_fc", "bn_fc_last_stage", "fc", "auto")
BN_STATS = ("refresh", "frozen")
BUFFER_SOURCES = ("auto", "strategy", "own")
Buffer = Union[ReservoirBuffer, ClassBalancedBuffer]


# -- which modules ----------------------------------------------------------------------
def _trainable(module: nn.Module, recurse: bool = True) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=recurse) if p.requires_grad]


def _name_of(model: nn.Module, target: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is target:
            return name
    raise ValueError("module not found in the model")


def head_names(model: nn.Module) -> list[str]:
    """The classification head: the model's ``head`` module (naive, er, joint, kfpf)."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module) or not _trainable(head):
        raise ValueError(f"FPF finetunes the classification head `head`, which {type(model).__name__} does not have "
                         "(strategies with one: naive, er, joint, kfpf, kfpf_kd)")
    return ["head"]


def batchnorm_names(model: nn.Module) -> list[str]:
    """Every BatchNorm layer whose affine parameters are trainable (frozen ones stay out)."""
    names = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm) and _trainable(m, recurse=False)]
    if not names:
        raise ValueError(f"modules='bn_*' found no trainable BatchNorm layer in {type(model).__name__}; "
                         f"valid choices for this backbone: 'fc', 'auto'")
    return names


def last_stage_names(model: nn.Module) -> list[str]:
    """The last stage of the backbone: ResNet ``layer4``, a ViT's last block, or cnn28's
    last conv block (its last Conv2d and the BatchNorm right after it)."""
    trunk = getattr(getattr(model, "backbone", None), "trunk", None)
    if trunk is None:
        raise ValueError(f"modules='bn_fc_last_stage' needs a `backbone.trunk`, which {type(model).__name__} lacks; "
                         f"valid choices: {list(MODULE_PRESETS)}")
    prefix = _name_of(model, trunk) + "."
    if hasattr(trunk, "layer4"):
        return [prefix + "layer4"]
    if hasattr(trunk, "blocks") and len(trunk.blocks):
        return [prefix + f"blocks.{len(trunk.blocks) - 1}"]
    if isinstance(trunk, nn.Sequential):
        convs = [i for i, m in enumerate(trunk) if isinstance(m, nn.Conv2d)]
        if convs:
            i = convs[-1]
            block = [i] + ([i + 1] if i + 1 < len(trunk) and isinstance(trunk[i + 1], _BatchNorm) else [])
            return [prefix + str(j) for j in block]
    raise ValueError(f"modules='bn_fc_last_stage': no last stage known for a {type(trunk).__name__} trunk "
                     "(ResNet layer4, ViT blocks, or a Sequential of convs); valid choices: 'bn_fc', 'fc', 'auto'")


def trunk_fc_names(model: nn.Module) -> list[str]:
    """The Linear layer that ends the backbone's trunk (cnn28's projection), if the trunk
    ends in one: the part of "FC" that sits in the backbone (``trunk_fc=true``)."""
    trunk = getattr(getattr(model, "backbone", None), "trunk", None)
    if trunk is None:
        raise ValueError(f"trunk_fc=true needs a `backbone.trunk`, which {type(model).__name__} lacks; "
                         "valid choices: trunk_fc=false")
    leaves = [m for m in trunk.modules() if not list(m.children()) and list(m.parameters(recurse=False))]
    if not leaves or not isinstance(leaves[-1], nn.Linear) or not _trainable(leaves[-1]):
        raise ValueError(f"trunk_fc=true: the {type(trunk).__name__} trunk does not end in a trainable Linear layer "
                         "(ResNets end in their pooling and ViTs in a LayerNorm: their FC is the head); "
                         "valid choices: trunk_fc=false")
    return [_name_of(model, leaves[-1])]


def preset_names(model: nn.Module, preset: str, trunk_fc: bool = False) -> list[str]:
    """The modules a preset names, outermost first, without modules nested in another;
    ``trunk_fc``: with the Linear that ends the backbone's trunk (cnn28's projection)."""
    if preset not in MODULE_PRESETS:
        raise ValueError(f"modules={preset!r} is not a valid choice; valid choices: {list(MODULE_PRESETS)}")
    if preset == "auto":
        raise ValueError("modules='auto' is chosen by the sensitivity score, not a fixed list")
    names = head_names(model)
    if trunk_fc:
        names = trunk_fc_names(model) + names
    if preset in ("bn_fc", "bn_fc_last_stage"):
        names = batchnorm_names(model) + names
    if preset == "bn_fc_last_stage":
        names = last_stage_names(model) + names
    return _outermost(model, names)


def _outermost(model: nn.Module, names: list[str]) -> list[str]:
    """``names`` in the model's module order, each once, none inside another one."""
    wanted = set(names)
    return [n for n, _ in model.named_modules()
            if n in wanted and not any(n.startswith(o + ".") for o in wanted if o != n)]


def unit_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The units the sensitivity score ranks: modules owning trainable parameters directly."""
    return {n: m for n, m in model.named_modules() if n and _trainable(m, recurse=False)}


def chosen_parameters(model: nn.Module, names: list[str]) -> list[nn.Parameter]:
    """The trainable parameters of the named modules, each once."""
    modules = dict(model.named_modules())
    seen: dict[int, nn.Parameter] = {}
    for n in names:
        for p in _trainable(modules[n]):
            seen.setdefault(id(p), p)
    return list(seen.values())


def _trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in _trainable(model))


# -- the sensitivity score (modules=auto) ----------------------------------------------
class Sensitivity:
    """How far each unit's parameters move per window of ``window`` optimisation steps,
    over the interval since :meth:`restart`. Holds plain tensors (for ``state_dict``),
    never the model: the model is passed to each call."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.anchor: dict[str, torch.Tensor] = {}
        self.sq: dict[str, torch.Tensor] = {}
        self.windows = 0
        self.window_steps = 0
        self.steps = 0

    @staticmethod
    def _flat(module: nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in _trainable(module, recurse=False)])

    def restart(self, model: nn.Module) -> None:
        """A new interval starts here (the stream's start, or right after an FPF phase)."""
        units = unit_modules(model)
        self.anchor = {n: self._flat(m).clone() for n, m in units.items()}
        self.sq = {n: torch.zeros((), dtype=torch.float64) for n in units}
        self.windows = self.window_steps = self.steps = 0

    def tick(self, model: nn.Module) -> None:
        """After each optimisation step: close the window every ``window`` steps."""
        if not self.anchor:
            self.restart(model)
        self.steps += 1
        self.window_steps += 1
        if self.window_steps >= self.window:
            for n, m in unit_modules(model).items():
                now = self._flat(m)
                self.sq[n] += float((now - self.anchor[n].to(now.device)).double().pow(2).sum())
                self.anchor[n] = now.clone()
            self.windows += 1
            self.window_steps = 0

    def scores(self, model: nn.Module) -> dict[str, float]:
        """RMS per-parameter displacement per window; with no closed window yet, the
        displacement of the open one."""
        units = unit_modules(model)
        if not self.anchor:
            return {n: 0.0 for n in units}
        out = {}
        for n, m in units.items():
            numel = max(1, self.anchor[n].numel())
            if self.windows:
                out[n] = math.sqrt(float(self.sq[n]) / (numel * self.windows))
            else:
                now = self._flat(m)
                out[n] = math.sqrt(float((now - self.anchor[n].to(now.device)).double().pow(2).sum()) / numel)
        return out

    def select(self, model: nn.Module, budget: float) -> list[str]:
        """Units by decreasing score while their parameters fit ``budget`` x the trainable
        parameters (the top unit always)."""
        units = unit_modules(model)
        limit = budget * _trainable_count(model)
        scores = self.scores(model)
        ranked = sorted(units, key=lambda n: -scores[n])  # stable: ties keep module order
        chosen, size = [], 0
        for n in ranked:
            numel = sum(p.numel() for p in _trainable(units[n], recurse=False))
            if chosen and size + numel > limit:
                break
            chosen.append(n)
            size += numel
        return chosen

    def state_dict(self) -> dict:
        return {"window": self.window, "anchor": dict(self.anchor), "sq": dict(self.sq), "windows": self.windows,
                "window_steps": self.window_steps, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.window = int(state["window"])
        self.anchor, self.sq = dict(state["anchor"]), dict(state["sq"])
        self.windows, self.window_steps = int(state["windows"]), int(state["window_steps"])
        self.steps = int(state["steps"])


# -- the FPF phase ----------------------------------------------------------------------
class FPF:
    """Forgetting-prioritised finetuning: which modules, and the finetuning phase.

    Plain data only (the model is passed to each call), so that a strategy or an add-on
    can hold one and save it with ``state_dict``. ``phases`` lists every phase run:
    the step it ran after, the modules, their parameter count and the samples replayed.
    """

    def __init__(self, *, iters: int, batch_size: int, lr: float, momentum: float, modules: str, bn_stats: str,
                 auto_budget: float, auto_window: int, trunk_fc: bool = False) -> None:
        if trunk_fc and modules == "auto":
            raise ValueError("trunk_fc=true adds a layer to a preset; modules='auto' picks its own units; "
                             "valid: trunk_fc=false with modules='auto'")
        self.iters, self.batch_size, self.lr, self.momentum = iters, batch_size, lr, momentum
        self.modules, self.bn_stats, self.auto_budget, self.trunk_fc = modules, bn_stats, auto_budget, trunk_fc
        self.sensitivity = Sensitivity(auto_window) if modules == "auto" else None
        self.phases: list[dict] = []
        self.replayed = 0

    def check(self, model: nn.Module) -> None:
        """Resolve the preset once, so that a model it does not fit is refused before training."""
        if self.modules == "auto":
            if not unit_modules(model):
                raise ValueError(f"modules='auto': {type(model).__name__} has no trainable module")
        else:
            preset_names(model, self.modules, self.trunk_fc)
        if type(model).forward is nn.Module.forward:
            raise ValueError(f"FPF calls model(x) for logits; {type(model).__name__} has no forward()")

    def start(self, model: nn.Module) -> None:
        """Before the stream: the sensitivity interval starts from the initial weights."""
        if self.sensitivity is not None:
            self.sensitivity.restart(model)

    def after_step(self, model: nn.Module) -> None:
        """After each optimisation step of the learner (feeds the sensitivity score)."""
        if self.sensitivity is not None:
            self.sensitivity.tick(model)

    def choose(self, model: nn.Module) -> list[str]:
        if self.sensitivity is not None:
            return self.sensitivity.select(model, self.auto_budget)
        return preset_names(model, self.modules, self.trunk_fc)

    def run(self, model: Any, buffer: Buffer, *, step: int, kd_alpha: float = 0.0) -> int:
        """One FPF phase on ``model`` (a strategy: ``model(x)`` gives logits,
        ``model.augment`` the training augmentation) with batches from ``buffer``.
        Returns the samples replayed."""
        names = self.choose(model)
        params = chosen_parameters(model, names)
        phase = {"step": step, "modules": names, "params": sum(p.numel() for p in params), "replayed": 0}
        if self.sensitivity is not None:
            scores = self.sensitivity.scores(model)
            phase["scores"] = {n: round(scores[n], 8) for n in names}
        self.phases.append(phase)
        if len(buffer) == 0 or self.iters == 0 or not params:
            self.start(model)
            return 0
        modules = dict(model.named_modules())
        modes = [(m, m.training) for m in model.modules()]
        model.eval()  # frozen modules: BatchNorm uses and keeps its running statistics
        for n in names:
            modules[n].train()
        if self.bn_stats == "frozen":
            for m in model.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        optimizer = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        learner_grads = [p.grad for p in params]  # the learner's own gradients, put back afterwards
        replayed = 0
        try:
            for _ in range(self.iters):
                replay, extra = buffer.sample_with(self.batch_size)
                logits = model(model.augment(replay.raw))
                loss = classification_loss(logits, replay)
                if kd_alpha > 0:
                    loss = loss + kd_alpha * F.mse_loss(logits, extra["logits"].to(logits.dtype))
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for p, g in zip(params, grads):
                    p.grad = g
                optimizer.step()
                replayed += len(replay)
        finally:
            for p, g in zip(params, learner_grads):
                p.grad = g
            for m, training in modes:
                m.training = training
        phase["replayed"] = replayed
        self.replayed += replayed
        self.start(model)  # the next sensitivity interval starts after this phase
        return replayed

    def describe(self, model: nn.Module) -> dict:
        """The modules chosen (the last phase's, or the preset's) and their size."""
        total = _trainable_count(model)
        if self.phases:
            names, params = self.phases[-1]["modules"], self.phases[-1]["params"]
        elif self.modules != "auto":
            names = preset_names(model, self.modules, self.trunk_fc)
            params = sum(p.numel() for p in chosen_parameters(model, names))
        else:
            names, params = [], 0
        out = {"modules_preset": self.modules, "trunk_fc": self.trunk_fc, "modules": names, "modules_params": params,
               "modules_params_fraction": params / total if total else 0.0, "bn_stats": self.bn_stats,
               "phases": len(self.phases), "phase_steps": [p["step"] for p in self.phases],
               "iters_per_phase": self.iters, "replayed_samples": self.replayed}
        if self.modules == "auto":
            out["auto_choices"] = [{"step": p["step"], "modules": p["modules"], "params": p["params"]}
                                   for p in self.phases]
        return out

    def state_dict(self) -> dict:
        return {"phases": [dict(p) for p in self.phases], "replayed": self.replayed,
                "sensitivity": None if self.sensitivity is None else self.sensitivity.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.phases = [dict(p) for p in state["phases"]]
        self.replayed = int(state["replayed"])
        if self.sensitivity is not None and state.get("sensitivity") is not None:
            self.sensitivity.load_state_dict(state["sensitivity"])


# -- FPF as an add-on on any strategy -------------------------------------------------
@dataclass
class FPFAddonConfig(AddonConfig):
    """FPF after the strategy finishes (``every_experience``: also after each experience
    where boundaries are visible). ``buffer``: ``auto`` (the strategy's replay buffer if
    it has one, else an own reservoir of ``buffer_size``), ``strategy`` (must have one)
    or ``own``. The other fields: see the module docstring."""

    iters: int = setting(300, "SGD iterations of one FPF phase", ge=0, recipe="ours")
    batch_size: int = setting(32, "replayed samples per FPF iteration", ge=1, recipe="ours")
    lr: float = setting(0.01, "SGD learning rate of FPF", ge=0, recipe="ours")
    momentum: float = setting(0.0, "SGD momentum of FPF", ge=0, lt=1, recipe="ours")
    modules: str = setting("bn_fc", "the modules FPF finetunes (a preset, or auto: the sensitivity score)",
                           choices=MODULE_PRESETS)
    bn_stats: str = setting("refresh", "BatchNorm statistics during FPF: refreshed on buffer data, or frozen",
                            choices=BN_STATS, recipe="ours")
    buffer: str = setting("auto", "the buffer FPF replays: the strategy's if it has one, it must, or its own",
                          choices=BUFFER_SOURCES, recipe="ours")
    buffer_size: int = setting(500, "samples in the add-on's own reservoir", ge=1, recipe="ours")
    every_experience: bool = setting(False, "also run FPF after each experience (where boundaries are visible)",
                                     recipe="ours")
    auto_budget: float = setting(0.05, "modules=auto: share of the parameters finetuned", gt=0, le=1, recipe="ours")
    auto_window: int = setting(50, "modules=auto: steps per interval of the sensitivity score", ge=1, recipe="ours")
    trunk_fc: bool = setting(False, "also finetune the Linear that ends the backbone's trunk (cnn28's projection)",
                             recipe="ours")


@register_addon("fpf")
class FPFAddon(Addon):
    """Forgetting-prioritised finetuning composed onto any strategy with a ``head``."""

    config_class = FPFAddonConfig

    def __init__(self, config: FPFAddonConfig, info: ScenarioInfo, *, seed: int = 0) -> None:
        super().__init__(config, info, seed=seed)
        c = config
        self.fpf = FPF(iters=c.iters, batch_size=c.batch_size, lr=c.lr, momentum=c.momentum, modules=c.modules,
                       bn_stats=c.bn_stats, auto_budget=c.auto_budget, auto_window=c.auto_window, trunk_fc=c.trunk_fc)
        self.own_buffer: Optional[ReservoirBuffer] = None
        self.steps = 0

    @property
    def buffer(self) -> Buffer:
        """The buffer FPF replays: the strategy's, or the add-on's own reservoir."""
        return self.own_buffer if self.own_buffer is not None else self.strategy.buffer

    def attach(self, strategy: Any) -> None:
        super().attach(strategy)
        self.fpf.check(strategy)
        theirs = getattr(strategy, "buffer", None)
        has_buffer = isinstance(theirs, (ReservoirBuffer, ClassBalancedBuffer))
        if self.config.buffer == "strategy" and not has_buffer:
            raise ValueError(f"addon.buffer='strategy' but strategy {getattr(strategy, 'name', '?')!r} keeps no "
                             f"replay buffer; valid choices: {list(BUFFER_SOURCES)} ('auto' or 'own' keep one)")
        if self.config.buffer == "own" or not has_buffer:
            self.own_buffer = ReservoirBuffer(self.config.buffer_size, self.generator)
        self.fpf.start(strategy)

    def after_step(self, batch: Batch, stats: StepStats) -> None:
        self.steps += 1
        if self.own_buffer is not None:
            self.own_buffer.add(batch)
        self.fpf.after_step(self.strategy)

    def _phase(self) -> None:
        if self.fpf.phases and self.fpf.phases[-1]["step"] == self.steps:
            return  # nothing trained since the last phase
        self.fpf.run(self.strategy, self.buffer, step=self.steps)

    def end_experience(self) -> None:
        if self.config.every_experience:
            self._phase()

    def end_stream(self) -> None:
        self._phase()

    def describe(self) -> dict:
        return {**self.fpf.describe(self.strategy), "buffer": "own" if self.own_buffer is not None else "strategy",
                "buffer_size": self.buffer.capacity}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "steps": self.steps, "fpf": self.fpf.state_dict(),
                "own_buffer": None if self.own_buffer is None else self.own_buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.steps = int(state["steps"])
        self.fpf.load_state_dict(state["fpf"])
        if state.get("own_buffer") is not None:
            if self.own_buffer is None:
                self.own_buffer = ReservoirBuffer(self.config.buffer_size, self.generator)
            self.own_buffer.load_state_dict(state["own_buffer"])


# -- k-FPF and k-FPF-KD ---------------------------------------------------------------
def planned_steps(stream_size: int, batch_size: int, epochs: int, boundaries: bool) -> int:
    """N: optimisation steps the whole stream is planned to take. Boundaries visible:
    ``epochs`` passes (per experience); task-agnostic: one pass over the stream, whose
    repeats ``stream_size`` already counts."""
    if stream_size <= 0:
        raise ValueError(f"k-FPF plans its triggers from ScenarioInfo.stream_size, which is {stream_size}; "
                         "build the strategy from Scenario.info_for(val_fraction)")
    return (epochs if boundaries else 1) * math.ceil(stream_size / batch_size)


@dataclass
class KFPFConfig(FinetuneConfig):
    """Plain SGD on the incoming data; FPF k times: after every ceil(N / k) steps (k - 1
    times) and at the end of the stream.
    ``fpf_*``, ``modules``, ``bn_stats``, ``auto_*``: the FPF phase (module docstring)."""

    epochs: int = 50
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = setting(0.1, "SGD learning rate on the stream", gt=0, recipe="ours")
    momentum: float = setting(0.0, "SGD momentum on the stream", ge=0, lt=1, recipe="ours")
    weight_decay: float = 0.0
    buffer_size: int = setting(500, "reservoir buffer replayed by the FPF phases", ge=1)
    k: int = setting(10, "FPF phases over the whole stream (every ceil(N / k) steps, the last at its end)", ge=1,
                     recipe="ours")
    fpf_iters: int = setting(300, "SGD iterations of one FPF phase", ge=0, recipe="ours")
    fpf_batch_size: int = setting(32, "replayed samples per FPF iteration", ge=1, recipe="ours")
    fpf_lr: float = setting(0.01, "SGD learning rate of FPF", ge=0, recipe="ours")
    fpf_momentum: float = setting(0.0, "SGD momentum of FPF", ge=0, lt=1, recipe="ours")
    modules: str = setting("bn_fc", "the modules FPF finetunes (a preset, or auto: the sensitivity score)",
                           choices=MODULE_PRESETS)
    bn_stats: str = setting("refresh", "BatchNorm statistics during FPF: refreshed on buffer data, or frozen",
                            choices=BN_STATS, recipe="ours")
    auto_budget: float = setting(0.05, "modules=auto: share of the parameters finetuned", gt=0, le=1, recipe="ours")
    auto_window: int = setting(50, "modules=auto: steps per interval of the sensitivity score", ge=1, recipe="ours")
    trunk_fc: bool = setting(False, "also finetune the Linear that ends the backbone's trunk (cnn28's projection)",
                             recipe="ours")


@register_strategy("kfpf")
class KFPF(Finetune):
    """k-FPF: replay-free SGD on the stream, with FPF on a reservoir buffer k times,
    periodically over the whole stream (never aligned to task boundaries)."""

    config_class = KFPFConfig
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC})
    paper_defaults = True
    paper_backbone = "resnet18"
    state_attrs = ("steps",)
    #: weight of the logit-matching term in the FPF loss (k-FPF-KD)
    kd_alpha: float = 0.0

    def __init__(self, config: KFPFConfig, info: ScenarioInfo, backbone: Any = None, **kwargs: Any) -> None:
        super().__init__(config, info, backbone, **kwargs)
        c = config
        self.planned_steps = planned_steps(info.stream_size, c.batch_size, c.epochs, info.visibility.boundaries)
        self.period = math.ceil(self.planned_steps / c.k)
        self.buffer = ReservoirBuffer(c.buffer_size, self.generator)
        self.fpf = FPF(iters=c.fpf_iters, batch_size=c.fpf_batch_size, lr=c.fpf_lr, momentum=c.fpf_momentum,
                       modules=c.modules, bn_stats=c.bn_stats, auto_budget=c.auto_budget, auto_window=c.auto_window,
                       trunk_fc=c.trunk_fc)
        self.fpf.check(self)
        self.steps = 0

    @property
    def fpf_steps(self) -> list[int]:
        """The optimisation steps after which FPF ran: P, 2P, ..., (k - 1)P and the end of
        the stream (exactly k phases, however long the real stream is)."""
        return [p["step"] for p in self.fpf.phases]

    def observe(self, batch: Batch) -> StepStats:
        if self.steps == 0 and self.fpf.sensitivity is not None and not self.fpf.sensitivity.anchor:
            self.fpf.start(self)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self(batch.x)
        loss = classification_loss(logits, batch)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        self.fpf.after_step(self)
        self.remember(batch, logits.detach())
        if self.steps % self.period == 0 and len(self.fpf.phases) < self.config.k - 1:  # the k-th: end_stream
            with self.phase("fpf"):  # booked apart from the SGD steps (training compute all the same)
                self.fpf.run(self, self.buffer, step=self.steps, kd_alpha=self.kd_alpha)
        return StepStats(loss=loss.detach(), n=len(batch))

    def remember(self, batch: Batch, logits: torch.Tensor) -> None:
        """Offer the batch to the reservoir (k-FPF-KD: with its logits)."""
        self.buffer.add(batch)

    def end_stream(self) -> None:
        if self.steps and (not self.fpf.phases or self.fpf.phases[-1]["step"] != self.steps):
            with self.phase("fpf"):
                self.fpf.run(self, self.buffer, step=self.steps, kd_alpha=self.kd_alpha)

    def describe(self) -> dict:
        return {**self.fpf.describe(self), "k": self.config.k, "planned_steps": self.planned_steps,
                "period": self.period, "steps": self.steps, "buffer_size": self.config.buffer_size}


@dataclass
class KFPFKDConfig(KFPFConfig):
    """k-FPF-KD: ``kd_alpha`` weighs the MSE between current and stored logits."""

    kd_alpha: float = setting(0.3, "weight of the MSE between current and stored logits", ge=0)


@register_strategy("kfpf_kd")
class KFPFKD(KFPF):
    """k-FPF-KD: k-FPF whose FPF loss adds DER's logit matching on buffer samples."""

    config_class = KFPFKDConfig

    def __init__(self, config: KFPFKDConfig, info: ScenarioInfo, backbone: Any = None, **kwargs: Any) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.kd_alpha = config.kd_alpha

    def remember(self, batch: Batch, logits: torch.Tensor) -> None:
        self.buffer.add(batch, logits=logits)
