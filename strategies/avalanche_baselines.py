"""Avalanche's own strategies as clbench baselines: avl_ewc, avl_lwf, avl_si, avl_gem,
avl_agem, avl_gdumb, avl_replay.

One wrapper class drives Avalanche's implementation under the clbench protocol: each
experience's training data (as the protocol shows it) becomes an Avalanche experience
for the wrapped template's ``train``; the protocol evaluates through ``predict``.
Config defaults are the recipes of Avalanche's reproducibility repository
(ContinualAI/continual-learning-baselines, file named in ``REFERENCE``), so a
changed field is recorded as a deviation. Their MLPs are replaced by the run's
backbone plus a linear head over all classes (recorded too). Avalanche's pitfalls
are avoided: batch sizes come from the config (its templates default to 1), no
periodic evaluation (``eval_every=-1``), no WandBLogger, no dill checkpoints.
"""
from __future__ import annotations

import random

import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
from torch import nn

from clbench.api.data import iterate
from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.api.view import LearnerView
from clbench.fields import setting
from clbench.models.backbones import create_backbone
from clbench.types import CLASS_INCREMENTAL, TASK_INCREMENTAL, Batch, StepStats

REPO = "ContinualAI/continual-learning-baselines"


@dataclass
class AvalancheBaselineConfig(StrategyConfig):
    """Optimiser fields shared by every wrapped Avalanche strategy."""

    optimizer: str = setting("sgd", "sgd (with momentum) or adam", choices=("sgd", "adam"))
    lr: float = setting(0.001, "learning rate", gt=0)
    momentum: float = setting(0.0, "SGD momentum", ge=0, lt=1)
    weight_decay: float = setting(0.0, "weight decay", ge=0)


@dataclass
class EWCConfig(AvalancheBaselineConfig):
    epochs: int = 30
    batch_size: int = 256
    ewc_lambda: float = setting(1.0, "weight of the EWC penalty (Avalanche's ewc_lambda)")
    mode: str = setting("separate", "separate: one penalty per past experience; online: one running importance")
    decay_factor: Optional[float] = setting(None, "online mode: decay of the running importance (null in separate "
                                                  "mode)")


@dataclass
class LwFConfig(AvalancheBaselineConfig):
    epochs: int = 10
    batch_size: int = 128
    alpha: float = setting(1.0, "weight of the distillation loss on the previous model's outputs")
    temperature: float = setting(1.0, "softmax temperature of the distillation")


@dataclass
class SIConfig(AvalancheBaselineConfig):
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    si_lambda: float = setting(1.0, "weight of the SI penalty")
    eps: float = setting(0.001, "damping of the importance's denominator (xi in the paper)")


@dataclass
class GEMConfig(AvalancheBaselineConfig):
    epochs: int = 1
    batch_size: int = 10
    lr: float = 0.1
    patterns_per_exp: int = setting(1000, "patterns of each experience kept in the episodic memory")
    memory_strength: float = setting(0.5, "margin added to the projected gradient's constraints (gamma in the paper)")


@dataclass
class AGEMConfig(AvalancheBaselineConfig):
    epochs: int = 1
    batch_size: int = 10
    lr: float = 0.1
    patterns_per_exp: int = setting(250, "patterns of each experience kept in the episodic memory")
    sample_size: int = setting(256, "memory patterns drawn per step for the reference gradient")


@dataclass
class GDumbConfig(AvalancheBaselineConfig):
    epochs: int = 10
    batch_size: int = 16
    lr: float = 0.1
    mem_size: int = setting(4400, "class-balanced memory in samples; the model is retrained on it alone")


@dataclass
class ReplayConfig(AvalancheBaselineConfig):
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0002
    mem_size: int = setting(2000, "replay memory in samples")
    storage_policy: str = setting("class_balanced", "the replay memory: class-balanced (adaptive) or "
                                  "experience-balanced", choices=("class_balanced", "experience_balanced"))
    lr_step_gamma: float = setting(0.3, "StepLR factor every epochs // 3 epochs, reset each experience (1: constant "
                                        "learning rate)")


def _replay(c: ReplayConfig, optimizer: torch.optim.Optimizer) -> tuple[str, dict, list]:
    from avalanche.training.plugins import LRSchedulerPlugin, ReplayPlugin
    from avalanche.training.storage_policy import ClassBalancedBuffer, ExperienceBalancedBuffer

    policies = {"class_balanced": lambda: ClassBalancedBuffer(c.mem_size, adaptive_size=True),
                "experience_balanced": lambda: ExperienceBalancedBuffer(c.mem_size, adaptive_size=True)}
    if c.storage_policy not in policies:
        raise ValueError(f"unknown storage_policy {c.storage_policy!r}; valid choices: {sorted(policies)}")
    plugins: list = [ReplayPlugin(c.mem_size, storage_policy=policies[c.storage_policy]())]
    if c.lr_step_gamma != 1.0:
        step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, c.epochs // 3), gamma=c.lr_step_gamma)
        plugins.append(LRSchedulerPlugin(step, step_granularity="epoch"))
    return "Naive", {}, plugins


@dataclass(frozen=True)
class Spec:
    """How one Avalanche strategy is built: its config, the template (class name in
    ``avalanche.training``) with its method arguments and plugins, and its reference."""

    config: type
    build: Callable[[Any, torch.optim.Optimizer], tuple[str, dict, list]]
    reference: str
    notes: tuple[str, ...] = ()


SPECS: dict[str, Spec] = {
    "avl_ewc": Spec(EWCConfig, lambda c, o: ("EWC", dict(ewc_lambda=c.ewc_lambda, mode=c.mode,
                                                         decay_factor=c.decay_factor), []),
                    "experiments/permuted_mnist/ewc.py"),
    "avl_lwf": Spec(LwFConfig, lambda c, o: ("LwF", dict(alpha=c.alpha, temperature=c.temperature), []),
                    "experiments/split_mnist/lwf.py"),
    "avl_si": Spec(SIConfig, lambda c, o: ("SynapticIntelligence", dict(si_lambda=c.si_lambda, eps=c.eps), []),
                   "experiments/split_mnist/synaptic_intelligence.py",
                   ("single head over all classes (reference: one head per task)",)),
    "avl_gem": Spec(GEMConfig, lambda c, o: ("GEM", dict(patterns_per_exp=c.patterns_per_exp,
                                                         memory_strength=c.memory_strength), []),
                    "experiments/permuted_mnist/gem.py",
                    ("trains on every pattern of an experience (reference: its first 1000)",)),
    "avl_agem": Spec(AGEMConfig, lambda c, o: ("AGEM", dict(patterns_per_exp=c.patterns_per_exp,
                                                            sample_size=c.sample_size), []),
                     "experiments/permuted_mnist/agem.py"),
    "avl_gdumb": Spec(GDumbConfig, lambda c, o: ("GDumb", dict(mem_size=c.mem_size), []),
                      "experiments/split_mnist/gdumb.py"),
    "avl_replay": Spec(ReplayConfig, _replay, "experiments/split_cifar100/replay.py"),
}


class AvalancheBaseline(Strategy):
    """Backbone + linear head trained by a wrapped Avalanche strategy, experience by experience."""

    spec: ClassVar[Spec]
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL})
    needs = frozenset({"boundaries"})
    paper_defaults = True
    resumable = False  # Avalanche's template and plugins keep state (e.g. EWC's importances) outside state_dict
    channels_last_ok = False  # Avalanche's code assumes contiguous tensors (AGEM and GEM view gradients flat)

    def __init__(self, config: AvalancheBaselineConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        trunk = create_backbone(backbone, info.input_shape)
        self.model = nn.Sequential(trunk, nn.Linear(trunk.out_features, info.num_classes))
        self.template: Any = None  # built on first use: importing Avalanche costs seconds
        self.experiences_seen = 0

    def make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(self.model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def build_template(self, device: torch.device) -> Any:
        """The wrapped Avalanche strategy, with the config's batch sizes and no evaluation of its own."""
        import avalanche.training as avl
        from avalanche.training.plugins import EvaluationPlugin

        optimizer = self.make_optimizer()
        template, method_args, plugins = self.spec.build(self.config, optimizer)
        c = self.config
        with warnings.catch_warnings():  # "no loggers": the protocol evaluates and records, not Avalanche
            warnings.filterwarnings("ignore", message="No loggers specified")
            evaluator = EvaluationPlugin(loggers=[])
        return getattr(avl, template)(
            model=self.model, optimizer=optimizer, criterion=nn.CrossEntropyLoss(), train_mb_size=c.batch_size,
            train_epochs=c.epochs, eval_mb_size=c.batch_size, device=device, plugins=[*plugins, _StepReporter(self)],
            evaluator=evaluator, eval_every=-1, **method_args,
        )

    def train_experience(self, view: LearnerView) -> None:
        if self.template is None:
            self.template = self.build_template(view.device)
        self.template.device = torch.device(view.device)
        experience = to_avalanche_experience(view.train, view.task_id, self.experiences_seen)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        devices = [view.device.index or 0] if view.device.type == "cuda" else []
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=devices):  # Avalanche samples from torch's, numpy's and python's generators
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)
            try:
                self.template.train(experience, eval_streams=[])
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        self.model = self.template.model  # GDumb restarts from a copy of the initial model
        self.experiences_seen += 1

    def observe(self, batch):
        raise NotImplementedError(f"{self.name} trains whole experiences through Avalanche (train_experience)")

    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model(x)

    def describe(self) -> dict:
        import avalanche

        return {"avalanche_version": avalanche.__version__, "reference": f"{REPO}/{self.spec.reference}",
                "template": type(self.template).__name__ if self.template is not None else None}

    def deviations(self) -> list[str]:
        return super().deviations() + list(self.spec.notes) + [
            f"model: backbone {getattr(self.backbone_config, 'name', '?')} + linear head (reference: an MLP)"]


class _StepReporter:
    """An Avalanche plugin that reports each training iteration's loss to the protocol."""

    def __init__(self, owner: "AvalancheBaseline") -> None:
        self.owner = owner

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        batch = Batch(x=strategy.mb_x, y=strategy.mb_y)
        self.owner.report_step(batch, StepStats(loss=strategy.loss.detach(), n=len(batch)))

    def __getattr__(self, name: str) -> Any:  # every other Avalanche callback: nothing to do
        if name.startswith(("before_", "after_")):
            return lambda *a, **kw: None
        raise AttributeError(name)


def to_avalanche_experience(data: Any, task_id: Optional[int], index: int) -> Any:
    """An Avalanche experience (index ``index``) holding ``data`` with one task label
    (0 where task ids are hidden, Avalanche's convention for class-incremental data)."""
    from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience
    from avalanche.benchmarks.utils import ConstantSequence, DataAttribute, TaskAwareSupervisedClassificationDataset
    from torch.utils.data import TensorDataset

    xs, ys = zip(*((t[0], t[1]) for t in iterate(data, 1024, shuffle=False)))
    x, y = torch.cat(xs), torch.cat(ys).long()
    task = 0 if task_id is None else int(task_id)
    dataset = TaskAwareSupervisedClassificationDataset(
        [TensorDataset(x, y)],
        data_attributes=[DataAttribute(y.tolist(), "targets"),
                         DataAttribute(ConstantSequence(task, len(y)), "targets_task_labels", use_in_getitem=True)],
    )
    experience = DatasetExperience(dataset=dataset, current_experience=index)
    experience.task_label, experience.task_labels = task, [task]
    experience.classes_in_this_experience = sorted(set(y.tolist()))
    return experience


def _register(name: str, spec: Spec) -> type[AvalancheBaseline]:
    cls = type(f"Avl{spec.config.__name__.removesuffix('Config')}", (AvalancheBaseline,), {
        "spec": spec, "config_class": spec.config, "__module__": __name__,
        "__doc__": f"Avalanche's {name[4:].upper()} under the clbench protocol (recipe: {REPO}/{spec.reference}).",
    })
    return register_strategy(name)(cls)


#: the registered classes, by name
STRATEGY_CLASSES = {name: _register(name, spec) for name, spec in SPECS.items()}
