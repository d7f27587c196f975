"""RanPAC: random projection of frozen features, then ridge regression (McDonnell et al.,
NeurIPS 2023, arXiv 2307.02251; official code RanPAC/RanPAC, RanPAC.py and inc_net.py).

Phase 2 of the paper's Algorithm 1 on a frozen encoder. Its features f (dimension L) go
through a FIXED random projection W (L x M, N(0, 1) entries, M = 10,000) and a ReLU,
h = relu(f W). Over the stream the Gram matrix G = sum h h^T (M x M) and the class
prototypes C = sum h y^T (M x K, y one-hot) accumulate; at the end of each experience the
readout becomes the ridge solution W_o = (G + lambda I)^-1 C, and a sample's scores are
h W_o. lambda is chosen per experience as the official ``optimise_ridge_parameter`` does:
of 10^-8, 10^-7, ..., 10^8, the one whose readout fitted on the first 80% of THIS
experience's samples alone has the least mean squared error on the last 20% (in arrival
order, which the protocol shuffles, as the official shuffled loader does); the final
solve then uses everything accumulated. No gradient anywhere.

Where ours differs: no Phase 1 (the paper's first-session parameter-efficient finetuning
of the encoder, which needs gradients: ours is the official ``ncm`` + ``use_RP`` + M=10000
configuration, the paper's "no PETL" ablation); the lambda sweep computes every lambda's
solution from one eigendecomposition (of the smaller of the fit part's Gram and kernel
matrices, in float64) instead of one float32 solve per lambda: the same solutions, with
less rounding; the final solve is a Cholesky solve (an LU solve where rounding makes
G + lambda I not positive definite in float32, as the official code always does).
It needs boundaries: lambda is chosen per experience, at its end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.fields import setting
from clbench.models.features import build_frozen_encoder, output_dim
from clbench.types import CLASS_INCREMENTAL, TASK_INCREMENTAL, Batch, StepStats
from strategies.dkvb import encoder_deviations


@dataclass
class RanPACConfig(StrategyConfig):
    """Defaults = the official code's RanPAC head (args/*_publish.csv: M = 10000, the
    ridge grid and 80/20 split of ``optimise_ridge_parameter``). ``batch_size`` changes
    how many samples one update takes, never the result (beyond float rounding)."""

    epochs: int = setting(1, "passes over each experience: one (each sample enters G and C once)", ge=1, le=1)
    batch_size: int = setting(128, "samples per update of G and C (the result does not depend on it)", ge=1,
                              recipe=False)
    projection_dim: int = setting(10000, "M: width of the fixed random projection (ReLU after it)", ge=1)
    holdout: float = setting(0.2, "share of each experience's samples (the last to arrive) lambda is chosen on",
                             gt=0, lt=1)
    ridge_log10_min: int = setting(-8, "smallest lambda tried: 10**this", ge=-20, le=20)
    ridge_log10_max: int = setting(8, "largest lambda tried: 10**this", ge=-20, le=20)
    encoder: str = setting("backbone", "the frozen encoder: the run's backbone, or identity (flattened pixels)",
                           choices=("backbone", "identity"), recipe=False)


def ridge_sweep(h_fit: torch.Tensor, y_fit: torch.Tensor, h_val: torch.Tensor, y_val: torch.Tensor,
                ridges: Sequence[float]) -> list[float]:
    """Held-out mean squared error of the ridge readout fitted on ``(h_fit, y_fit)``, for
    each lambda in ``ridges``, from one eigendecomposition (float64) of the smaller of
    h_fit^T h_fit (primal) and h_fit h_fit^T (dual): the same solutions as one solve per lambda."""
    h_fit, y_fit, h_val, y_val = (t.double() for t in (h_fit, y_fit, h_val, y_val))
    n, M = h_fit.shape
    if n < M:  # W = H^T (H H^T + lambda I)^-1 Y
        s, U = torch.linalg.eigh(h_fit @ h_fit.T)
        left, right = h_val @ h_fit.T @ U, U.T @ y_fit
    else:  # W = (H^T H + lambda I)^-1 H^T Y
        s, U = torch.linalg.eigh(h_fit.T @ h_fit)
        left, right = h_val @ U, U.T @ (h_fit.T @ y_fit)
    return [float(F.mse_loss(left @ (right / (s + lam).unsqueeze(1)), y_val)) for lam in ridges]


def solve_readout(gram: torch.Tensor, prototypes: torch.Tensor, ridge: float) -> torch.Tensor:
    """W_o = (G + lambda I)^-1 C: Cholesky, or LU where G + lambda I is not positive definite
    in its precision (G is never modified)."""
    A = gram + ridge * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return torch.cholesky_solve(prototypes, L)
    return torch.linalg.solve(A, prototypes)


@register_strategy("ranpac")
class RanPAC(Strategy):
    """Random-projection ridge classifier over a frozen encoder; needs boundaries."""

    config_class = RanPACConfig
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL})
    needs = frozenset({"boundaries"})
    paper_defaults = True
    paper_backbone = "vit_b16"
    state_attrs = ("ridges_chosen",)

    def __init__(self, config: RanPACConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        c = config
        if c.ridge_log10_min > c.ridge_log10_max:
            raise ValueError(f"strategy.ridge_log10_min={c.ridge_log10_min} exceeds strategy.ridge_log10_max="
                             f"{c.ridge_log10_max}; valid: ridge_log10_min <= ridge_log10_max")
        self.encoder = build_frozen_encoder(c.encoder, backbone, info.input_shape)
        self.in_dim = output_dim(self.encoder, info.input_shape)
        M, K = c.projection_dim, info.num_classes
        self.register_buffer("projection", torch.randn(self.in_dim, M, generator=self.generator))  # W, fixed
        self.register_buffer("gram", torch.zeros(M, M))  # G = sum h h^T
        self.register_buffer("prototypes", torch.zeros(M, K))  # C = sum h y^T
        self.register_buffer("readout", torch.zeros(M, K))  # W_o, solved at each experience's end
        self.ridges = [10.0 ** e for e in range(c.ridge_log10_min, c.ridge_log10_max + 1)]
        self.ridges_chosen: list[float] = []  # lambda of each experience
        self._seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # this experience's features, for lambda

    def train(self, mode: bool = True) -> "RanPAC":
        super().train(mode)
        self.encoder.eval()
        return self

    def frozen_encoder(self) -> Optional[nn.Module]:
        return self.encoder

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """h = relu(f W): the random features ``(B, M)``."""
        return torch.relu(z.flatten(1).to(self.projection.dtype) @ self.projection)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y, self.info.num_classes).to(self.projection.dtype)

    @torch.no_grad()
    def observe(self, batch: Batch) -> StepStats:
        """Add the batch to G and C (and keep its features until the experience ends, to
        choose lambda). The loss is a diagnostic: the batch's squared error under the
        readout solved at the last experience's end, before the batch is added."""
        h, y = self.project(batch.x), self.targets(batch.y)
        loss = (h @ self.readout - y).pow(2).sum(1).mean()
        self.gram.addmm_(h.T, h)
        self.prototypes.addmm_(h.T, y)
        self._seen.append((batch.x.flatten(1), batch.y))
        return StepStats(loss=loss, n=len(batch))

    def choose_ridge(self, z: torch.Tensor, y: torch.Tensor) -> float:
        """lambda with the least held-out error on this experience (first 80% fit, last 20%
        held out); the first of equals, as the official argmin."""
        n_fit = int(len(z) * (1 - self.config.holdout))
        h, Y = self.project(z), self.targets(y)
        losses = ridge_sweep(h[:n_fit], Y[:n_fit], h[n_fit:], Y[n_fit:], self.ridges)
        losses = [math.inf if math.isnan(v) else v for v in losses]
        return self.ridges[min(range(len(losses)), key=losses.__getitem__)]

    @torch.no_grad()
    def end_experience(self) -> None:
        """Choose lambda on this experience and solve the readout on all of G and C."""
        if not self._seen:
            return
        z, y = torch.cat([s[0] for s in self._seen]), torch.cat([s[1] for s in self._seen])
        self._seen = []
        ridge = self.choose_ridge(z, y)
        self.ridges_chosen.append(ridge)
        self.readout.copy_(solve_readout(self.gram, self.prototypes, ridge))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.project(x) @ self.readout

    def describe(self) -> dict:
        return {"embedding_dim": self.in_dim, "projection_dim": self.config.projection_dim,
                "ridges_chosen": list(self.ridges_chosen), "gram_bytes": self.gram.numel() * self.gram.element_size()}

    def deviations(self) -> list[str]:
        out = [d for d in super().deviations() if not d.startswith("backbone=")]
        out += encoder_deviations(self.config.encoder, self.backbone_config, self.paper_backbone)
        out.append("no Phase 1 (the paper's first-session PETL finetuning of the encoder): the official "
                   "RP-only head on the frozen encoder (model_name=ncm, use_RP=True)")
        return out
