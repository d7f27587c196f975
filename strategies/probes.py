"""Probes on frozen features: the baselines DKVB is compared with (Träuble et al. 2023).

A linear layer (with or without bias) or a one-hidden-layer MLP (128 units) on the
same frozen, cached embeddings DKVB sees, trained by plain SGD (lr 1e-3) with the same
label smoothing, gradient clipping, batch size and epochs as the official
``cifar10_*_lp_base`` sweeps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.fields import setting
from clbench.models.features import build_frozen_encoder, output_dim
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL, Batch, StepStats
from strategies.dkvb import encoder_deviations


@dataclass
class ProbeConfig(StrategyConfig):
    """Defaults = the official ICML probe sweeps."""

    epochs: int = 2000
    batch_size: int = 256
    lr: float = setting(1e-3, "SGD learning rate", gt=0)
    momentum: float = setting(0.0, "SGD momentum", ge=0, lt=1)
    weight_decay: float = setting(0.0, "SGD weight decay", ge=0)
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy", ge=0, lt=1)
    grad_clip: float = setting(1.0, "global gradient-norm clip", gt=0)
    encoder: str = setting("backbone", "the frozen encoder: the run's backbone, or identity (flattened pixels)",
                           choices=("backbone", "identity"))


class FrozenProbe(Strategy):
    """A head trained on a frozen encoder's features; subclasses choose the head."""

    config_class = ProbeConfig
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC})
    paper_defaults = True
    paper_backbone = "resnet50"

    def __init__(self, config: ProbeConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.encoder = build_frozen_encoder(config.encoder, backbone, info.input_shape)
        self.in_dim = output_dim(self.encoder, info.input_shape)
        with torch.random.fork_rng(devices=[]):  # the head's init draws from the strategy's own generator
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
            self.head = self.make_head(self.in_dim, info.num_classes)
        self.optimizer = torch.optim.SGD(self.head.parameters(), lr=config.lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay)

    def make_head(self, d: int, k: int) -> nn.Module:
        raise NotImplementedError

    def train(self, mode: bool = True) -> "FrozenProbe":
        super().train(mode)
        self.encoder.eval()
        return self

    def frozen_encoder(self) -> Optional[nn.Module]:
        return self.encoder

    def observe(self, batch: Batch) -> StepStats:
        loss = F.cross_entropy(self.head(batch.x.flatten(1)), batch.y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.head.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.head(x.flatten(1))

    def describe(self) -> dict:
        return {"embedding_dim": self.in_dim, "head": repr(self.head)}

    def deviations(self) -> list[str]:
        out = [d for d in super().deviations() if not d.startswith(("encoder=", "backbone="))]
        return out + encoder_deviations(self.config.encoder, self.backbone_config, self.paper_backbone)


@register_strategy("linear_probe")
class LinearProbe(FrozenProbe):
    """Linear layer with bias on frozen features."""

    def make_head(self, d: int, k: int) -> nn.Module:
        return nn.Linear(d, k)


@register_strategy("linear_probe_nobias")
class LinearProbeNoBias(FrozenProbe):
    """Linear layer without bias on frozen features."""

    def make_head(self, d: int, k: int) -> nn.Module:
        return nn.Linear(d, k, bias=False)


@register_strategy("mlp_probe")
class MLPProbe(FrozenProbe):
    """One hidden layer of 128 ReLU units on frozen features."""

    def make_head(self, d: int, k: int) -> nn.Module:
        return nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, k))
