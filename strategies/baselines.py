"""Reference points: sequential finetuning, joint training and experience replay."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.buffers import ReservoirBuffer
from clbench.api.data import TensorData, concat
from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.api.view import LearnerView
from clbench.fields import setting
from clbench.models.backbones import create_backbone
from clbench.types import Batch, StepStats


@dataclass
class FinetuneConfig(StrategyConfig):
    """``optimizer``: ``sgd`` (with ``momentum``) or ``adam``."""

    epochs: int = 2
    batch_size: int = 64
    optimizer: str = setting("sgd", "sgd (with momentum) or adam", choices=("sgd", "adam"))
    lr: float = setting(0.01, "learning rate", gt=0)
    momentum: float = setting(0.9, "SGD momentum", ge=0, lt=1)
    weight_decay: float = setting(0.0, "weight decay", ge=0)


def classification_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Cross-entropy for single-label batches; for multi-label ones, binary cross-entropy
    over the known labels only (unknown labels are neither positive nor negative)."""
    if batch.known is None:
        return F.cross_entropy(logits, batch.y)
    per_label = F.binary_cross_entropy_with_logits(logits, batch.y.float(), reduction="none")
    known = batch.known.float()
    return (per_label * known).sum() / known.sum().clamp_min(1.0)


class Finetune(Strategy):
    """Backbone + linear head over all classes, trained by SGD on whatever it is given."""

    config_class = FinetuneConfig

    def __init__(self, config: FinetuneConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.backbone = create_backbone(backbone, info.input_shape)
        self.head = nn.Linear(self.backbone.out_features, info.num_classes)
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        if c.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        raise ValueError(f"unknown optimizer {c.optimizer!r}; valid choices: 'sgd', 'adam'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def step(self, batch: Batch) -> StepStats:
        self.optimizer.zero_grad(set_to_none=True)
        loss = classification_loss(self(batch.x), batch)
        loss.backward()
        self.optimizer.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    def observe(self, batch: Batch) -> StepStats:
        return self.step(batch)

    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self(x)


@register_strategy("naive")
class Naive(Finetune):
    """Sequential finetuning: the lower bound, which forgets."""


@register_strategy("joint")
class Joint(Finetune):
    """Upper bound: at step i, a model trained from its initial weights on the training
    data of experiences 1..i (the reference a*_i for intransigence)."""

    needs = frozenset({"boundaries"})

    def __init__(self, config: FinetuneConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self._seen: list = []
        self._initial = {k: v.clone() for k, v in self.state_dict().items() if not k.endswith("_extra_state")}

    def train_experience(self, view: LearnerView) -> None:
        self._seen.append(view.train)
        nn.Module.load_state_dict(self, self._initial, strict=False)  # weights only: RNG and data stay
        self.optimizer = self.make_optimizer()
        union = concat(self._seen)
        for _ in range(self.config.epochs):
            for batch in view.batches_of(union, self.config.batch_size):
                self.observe(batch)

    def structure(self) -> dict:
        """The training sets seen so far (joint retrains on all of them)."""
        return {"seen": [list(d.tensors) for d in self._seen]}

    def build_structure(self, structure: dict) -> None:
        self._seen = [TensorData(*tensors) for tensors in structure["seen"]]


@dataclass
class ERConfig(FinetuneConfig):
    buffer_size: int = setting(500, "samples in the reservoir buffer over the stream", ge=0)
    replay_batch_size: int = setting(64, "buffer samples replayed with each batch", ge=0)


@register_strategy("er")
class ExperienceReplay(Finetune):
    """Experience replay: each step trains on the batch plus as many samples drawn from
    a reservoir buffer over the whole stream (Chaudhry et al. 2019)."""

    config_class = ERConfig

    def __init__(self, config: ERConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.buffer = ReservoirBuffer(config.buffer_size, self.generator)

    def observe(self, batch: Batch) -> StepStats:
        replay = self.buffer.sample(self.config.replay_batch_size)
        joint = batch if replay is None else Batch(
            x=torch.cat([batch.x, self.augment(replay.raw)]), y=torch.cat([batch.y, replay.y]),
            known=None if batch.known is None else torch.cat([batch.known, replay.known]),
        )
        stats = self.step(joint)
        self.buffer.add(batch)
        return stats
