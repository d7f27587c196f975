"""NCM: the nearest-class-mean classifier on frozen features (Mensink et al., TPAMI 2013).

Each class is represented by the mean of the frozen encoder's features of every training
sample of that class seen so far; a test sample gets the class whose mean is nearest
(squared Euclidean distance: the paper's NCM with the identity metric, no metric
learning). ``metric=cosine`` scores the cosine similarity to each mean instead (the
prototype classifier of SimpleCIL, the NCM baseline of RanPAC's official code). One pass,
no gradient and no boundary call: the same in every scenario family. The means are kept
as per-class sums and counts in float64, so they are the per-class means of what was
seen, whatever the batch order. A class never seen scores -inf.
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
class NCMConfig(StrategyConfig):
    """Defaults = plain NCM (Mensink et al. 2013, identity metric). ``batch_size`` changes
    how many samples one update takes, never the means."""

    epochs: int = setting(1, "passes over each experience: one (each sample updates its class mean once)",
                          ge=1, le=1)
    batch_size: int = setting(256, "samples per update (the means do not depend on it)", ge=1, recipe=False)
    metric: str = setting("euclidean", "score of a class: minus the squared Euclidean distance to its mean, "
                          "or the cosine similarity to it", choices=("euclidean", "cosine"))
    encoder: str = setting("backbone", "the frozen encoder: the run's backbone, or identity (flattened pixels)",
                           choices=("backbone", "identity"), recipe=False)


@register_strategy("ncm")
class NCM(Strategy):
    """Nearest class mean over a frozen encoder's features; no boundary hooks used."""

    config_class = NCMConfig
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC})
    paper_defaults = True
    paper_backbone = "resnet50"  # as DKVB's baselines: the same frozen ImageNet encoder

    def __init__(self, config: NCMConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.encoder = build_frozen_encoder(config.encoder, backbone, info.input_shape)
        self.in_dim = output_dim(self.encoder, info.input_shape)
        K = info.num_classes
        self.register_buffer("sums", torch.zeros(K, self.in_dim, dtype=torch.float64))  # per-class feature sums
        self.register_buffer("counts", torch.zeros(K, dtype=torch.long))  # samples seen per class

    def train(self, mode: bool = True) -> "NCM":
        super().train(mode)
        self.encoder.eval()  # frozen: batch-norm statistics never move
        return self

    def frozen_encoder(self) -> Optional[nn.Module]:
        return self.encoder

    def means(self) -> torch.Tensor:
        """Class means ``(K, D)`` of everything seen (zero rows for classes never seen)."""
        return self.sums / self.counts.clamp(min=1).unsqueeze(1).to(self.sums.dtype)

    @torch.no_grad()
    def observe(self, batch: Batch) -> StepStats:
        """Add the batch to its classes' sums and counts. The reported loss is a diagnostic
        (nothing is minimised): the batch's mean squared distance to its class means."""
        z, y = batch.x.flatten(1).to(self.sums.dtype), batch.y
        self.sums.index_add_(0, y, z)
        self.counts += torch.bincount(y, minlength=len(self.counts))
        loss = (z - self.means()[y]).pow(2).sum(1).mean()
        return StepStats(loss=loss.float(), n=len(batch))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        z, means = x.flatten(1).to(self.sums.dtype), self.means()
        if self.config.metric == "euclidean":
            scores = -torch.cdist(z, means).pow(2)
        else:
            scores = F.normalize(z, dim=1) @ F.normalize(means, dim=1).T
        return scores.masked_fill(self.counts == 0, float("-inf")).float()

    def describe(self) -> dict:
        return {"embedding_dim": self.in_dim, "metric": self.config.metric,
                "samples_per_class": self.counts.tolist()}

    def deviations(self) -> list[str]:
        out = [d for d in super().deviations() if not d.startswith("backbone=")]
        return out + encoder_deviations(self.config.encoder, self.backbone_config, self.paper_backbone)
