"""SLDA: deep streaming linear discriminant analysis (Hayes & Kanan, CVPR-W 2020,
arXiv 1909.01520; official code tyler-hayes/Deep_SLDA, SLDA_Model.py).

A frozen encoder's features z stream past; SLDA keeps a running mean mu_k and count c_k
per class and ONE covariance Sigma shared by all classes, and classifies by linear
discriminant analysis on the shrunk covariance (paper Sec. 3, shrinkage eps = 1e-4):

    Lambda = [(1 - eps) Sigma + eps I]^-1,   score_k(z) = z . Lambda mu_k - 1/2 mu_k . Lambda mu_k.

The paper's covariance update, with t the number of samples seen before z_t and mu_k its
class's mean before the update (0 for a class not seen yet, as in the official code):

    Delta_t = t/(t+1) (z_t - mu_k)(z_t - mu_k)^T,   Sigma_{t+1} = (t Sigma_t + Delta_t) / (t+1),

so t Sigma_t is a running scatter. We keep that scatter and add a whole batch at once,
each sample with its own t and pre-update mean in batch order: the result equals the
official one-sample-at-a-time loop. On one class this is exactly the biased (1/N)
covariance of what was seen; across classes the weight t/(t+1) uses the GLOBAL count, so
it drifts from the pooled within-class covariance. ``covariance=pooled`` weighs each term
by the class count instead, c_k/(c_k+1) (Welford's update per class), which makes Sigma
exactly the pooled within-class covariance (1/N) sum_k sum_i (z_i - mu_k)(z_i - mu_k)^T
of everything seen, in any order. No gradient, no boundary call: the same in every family.

Where ours differs from the paper's experiments: no base initialisation (the paper fits
the class means and an OAS covariance on the first 100 ImageNet classes in a batch before
streaming; here the statistics start at zero); the features come in batches (equivalent,
above); the precision matrix is computed by a solve in float64, not a pseudo-inverse
(the same for the positive-definite shrunk covariance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.fields import setting
from clbench.models.features import build_frozen_encoder, output_dim
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL, Batch, StepStats
from strategies.dkvb import encoder_deviations


@dataclass
class SLDAConfig(StrategyConfig):
    """Defaults = the paper's (and official code's) SLDA. ``batch_size`` changes how many
    samples one update takes, never the statistics."""

    epochs: int = setting(1, "passes over each experience: one (SLDA streams each sample once)", ge=1, le=1)
    batch_size: int = setting(256, "samples per update (the statistics do not depend on it)", ge=1, recipe=False)
    shrinkage: float = setting(1e-4, "eps: the covariance is shrunk to (1 - eps) Sigma + eps I", gt=0, le=1)
    covariance: str = setting("paper", "covariance update: the paper's t/(t+1) rule, or the exact pooled "
                              "within-class covariance", choices=("paper", "pooled"))
    encoder: str = setting("backbone", "the frozen encoder: the run's backbone, or identity (flattened pixels)",
                           choices=("backbone", "identity"), recipe=False)


@register_strategy("slda")
class SLDA(Strategy):
    """Streaming LDA over a frozen encoder's features; no boundary hooks used."""

    config_class = SLDAConfig
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC})
    paper_defaults = True
    paper_backbone = "resnet18"
    state_attrs = ("num_updates",)

    def __init__(self, config: SLDAConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.encoder = build_frozen_encoder(config.encoder, backbone, info.input_shape)
        self.in_dim = output_dim(self.encoder, info.input_shape)
        K, D = info.num_classes, self.in_dim
        self.register_buffer("sums", torch.zeros(K, D, dtype=torch.float64))  # per-class sums: mu_k = sums_k / c_k
        self.register_buffer("counts", torch.zeros(K, dtype=torch.long))  # c_k
        self.register_buffer("scatter", torch.zeros(D, D, dtype=torch.float64))  # t * Sigma_t
        self.num_updates = 0  # t: samples seen
        self._readout: Optional[tuple] = None  # (t, W, b): the readout computed after t samples

    def train(self, mode: bool = True) -> "SLDA":
        super().train(mode)
        self.encoder.eval()
        return self

    def frozen_encoder(self) -> Optional[nn.Module]:
        return self.encoder

    # -- the statistics ------------------------------------------------------------
    def means(self) -> torch.Tensor:
        """Class means ``(K, D)`` (zero rows for classes never seen, as the paper's init)."""
        return self.sums / self.counts.clamp(min=1).unsqueeze(1).to(self.sums.dtype)

    def covariance_matrix(self) -> torch.Tensor:
        """Sigma_t = scatter / t (zero before any sample)."""
        return self.scatter / max(1, self.num_updates)

    @torch.no_grad()
    def observe(self, batch: Batch) -> StepStats:
        """Update the scatter, the class sums and counts with the batch, sample by sample in
        batch order (vectorised). The loss is a diagnostic (nothing is minimised): the
        batch's mean squared deviation from its class means before the update."""
        z, y = batch.x.flatten(1).to(self.sums.dtype), batch.y
        # group the batch by class (stable: batch order within a class), without a host sync
        order = torch.argsort(y, stable=True)
        ys, zs = y[order], z[order]
        pos = torch.arange(len(ys), device=z.device)
        new_class = torch.ones_like(ys, dtype=torch.bool)
        new_class[1:] = ys[1:] != ys[:-1]
        start = torch.cummax(torch.where(new_class, pos, 0), 0).values  # where each sample's class run starts
        earlier = torch.cumsum(zs, 0) - zs  # sum of the samples sorted before each one
        c = self.counts[ys] + (pos - start)  # c_{y_i} before sample i
        prior = self.sums[ys] + earlier - earlier[start]  # the class's sum before sample i
        dev, before = torch.empty_like(z), torch.empty(len(y), dtype=z.dtype, device=z.device)
        dev[order] = zs - prior / c.clamp(min=1).unsqueeze(1).to(z.dtype)  # z_i - mu_{y_i}; a new class has mean 0
        before[order] = c.to(z.dtype)
        if self.config.covariance == "paper":
            t = self.num_updates + torch.arange(len(y), device=z.device, dtype=self.sums.dtype)
        else:
            t = before
        self.scatter.addmm_((dev * (t / (t + 1)).unsqueeze(1)).T, dev)
        self.sums.index_add_(0, y, z)
        self.counts += torch.bincount(y, minlength=len(self.counts))
        self.num_updates += len(y)
        return StepStats(loss=dev.pow(2).sum(1).mean().float(), n=len(batch))

    # -- prediction (on the evaluation copy) ---------------------------------------------
    def readout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """LDA's linear readout: W = Lambda M^T ``(D, K)`` and b_k = -1/2 mu_k . Lambda mu_k."""
        eps = self.config.shrinkage
        shrunk = (1 - eps) * self.covariance_matrix() + eps * torch.eye(self.in_dim, dtype=self.scatter.dtype,
                                                                         device=self.scatter.device)
        means = self.means()
        W = torch.linalg.solve(shrunk, means.T)
        return W, -0.5 * (means.T * W).sum(0)

    def before_eval(self) -> None:
        """Compute the precision matrix once per evaluation point (the official code: at the
        first prediction after an update)."""
        self._readout = (self.num_updates, *self.readout())

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self._readout is None or self._readout[0] != self.num_updates:
            self.before_eval()
        _, W, b = self._readout
        scores = x.flatten(1).to(W.dtype) @ W + b
        return scores.masked_fill(self.counts == 0, float("-inf")).float()

    # -- the record ----------------------------------------------------------------------
    def describe(self) -> dict:
        return {"embedding_dim": self.in_dim, "covariance": self.config.covariance, "samples": self.num_updates,
                "samples_per_class": self.counts.tolist()}

    def deviations(self) -> list[str]:
        out = [d for d in super().deviations() if not d.startswith("backbone=")]
        out += encoder_deviations(self.config.encoder, self.backbone_config, self.paper_backbone)
        out.append("no base initialisation: the paper fits class means and an OAS covariance on its first 100 "
                   "ImageNet classes in one batch before streaming; here the statistics start at zero")
        return out
