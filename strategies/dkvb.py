"""DKVB: discrete key-value bottleneck (Träuble et al., ICML 2023, arXiv 2207.11240).

A frozen encoder's embedding z is cut by C fixed random projections into C heads;
each head fetches the value of its nearest key in its own codebook of P key-value
pairs, and the logits are the mean of the fetched values. Keys are fitted before the
stream by EMA k-means on unlabelled data from another source, then frozen; only the
values (initialised to zero) train, by plain SGD, so a step changes only the values
it fetched. At evaluation, pairs never fetched in training are masked out.
Read beside the paper (Sec. 3) and the official code (key_value_bottleneck/core.py,
kv_bottleneck_experiments; recipe: sweeps/icml2023/cifar10_*_ours_base.yaml).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from clbench.api.auxdata import AuxData
from clbench.api.data import TensorData, iterate
from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.fields import setting
from clbench.models.features import Flatten, build_frozen_encoder, cache_dir, encode, output_dim
from clbench.progress import setup_progress
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL, Batch, StepStats

DIGITS = "sklearn_digits"


@dataclass
class DKVBConfig(StrategyConfig):
    """Defaults = the official ICML sweeps (CIFAR-10, 5 x 2 classes). ``codebook_chunk``
    and ``precompute`` change speed and memory only, never results."""

    epochs: int = setting(2000, "epochs per stage (cl_epochs), on cached embeddings", ge=1)
    batch_size: int = setting(256, "samples per training batch", ge=1)
    num_codebooks: int = setting(256, "C: codebooks", ge=1)
    pairs_per_codebook: int = setting(4096, "P: key-value pairs per codebook", ge=1)
    key_dim: int = setting(14, "d_k: key dimension", ge=1)
    topk: int = setting(1, "keys fetched per codebook (1 in every paper run)", ge=1)
    lr: float = setting(0.3, "SGD learning rate of the values", gt=0)
    momentum: float = setting(0.0, "SGD momentum (state moves unfetched values: keep 0)", ge=0, lt=1)
    weight_decay: float = setting(0.0, "SGD weight decay (decay moves unfetched values: keep 0)", ge=0)
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy", ge=0, lt=1)
    grad_clip: float = setting(1.0, "global gradient-norm clip", gt=0)
    key_init_source: str = setting(DIGITS, "unlabelled key-init data (an auxiliary data set, clbench.api.auxdata)",
                                   recipe=False)
    key_init_limit: Optional[int] = setting(None, "at most this many key-init images (a seeded draw; null: all)", ge=1)
    key_init_epochs: int = setting(10, "epochs of the EMA k-means key init", ge=1)
    #: EMA k-means steps of the key init: the official run makes 10 epochs over 50,000
    #: CIFAR-100 embeddings at batch 256 = 1,960 steps; on a smaller key-init set the
    #: epochs repeat until this many steps are done (None: exactly key_init_epochs epochs)
    key_init_steps: Optional[int] = setting(1960, "EMA k-means steps of the key init (null: key_init_epochs epochs)",
                                            ge=1)
    ema_decay: float = setting(0.95, "EMA decay of the key init", gt=0, lt=1)
    ema_eps: float = setting(1e-5, "Laplace smoothing of the EMA cluster sizes", gt=0)
    dead_key_factor: float = setting(0.1, "restart keys whose EMA count < factor * batch_size / P", ge=0)
    mask_unused: bool = setting(True, "at evaluation, route each head to its nearest USED key")
    encoder: str = setting("backbone", "the frozen encoder: the run's backbone, or identity (flattened pixels)",
                           choices=("backbone", "identity"), recipe=False)
    codebook_chunk: int = setting(16, "codebooks per distance block (memory only)", ge=1, recipe=False)
    precompute: bool = setting(True, "encode once (cached), else every batch (speed only)", recipe=False)




def mnist_layout(x: torch.Tensor) -> torch.Tensor:
    """8x8 digit images as 1x28x28 images in [0, 1]: upsampled to 20x20 and padded by 4,
    the MNIST layout. Larger images are only resized to 28x28."""
    if tuple(x.shape[-2:]) == (8, 8):
        return F.pad(F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False).clamp(0, 1), (4, 4, 4, 4))
    return F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)


def key_init_data(aux: AuxData, input_shape: tuple[int, ...], limit: Optional[int],
                  generator: torch.Generator) -> TensorData:
    """The unlabelled key-init images (labels are never read), shaped like the stream's inputs."""
    data = aux.data
    if tuple(data.x.shape[1:]) != tuple(input_shape) and tuple(input_shape) == (1, 28, 28):
        data = TensorData(mnist_layout(data.x), data.y, fingerprint=f"{data.fingerprint}/mnist28")
    if limit is not None and limit < len(data):
        data = data.subset(torch.randperm(len(data), generator=generator)[:limit].sort().values, f"keyinit{limit}")
    return data


def encoder_deviations(encoder: str, backbone_config, paper: str = "resnet50") -> list[str]:
    """How a frozen-encoder run differs from the paper's pretrained ImageNet ResNet-50."""
    if encoder == "identity":
        return [f"encoder=identity: raw flattened pixels, no pretrained encoder (paper: frozen ImageNet {paper})"]
    out = []
    name = getattr(backbone_config, "name", None)
    if name and name != paper:
        out.append(f"backbone={name} (paper: {paper})")
    if getattr(backbone_config, "weights", None) == "none":
        out.append("frozen encoder has random weights (backbone.weights=none), not pretrained ones")
    return out


@register_strategy("dkvb")
class DKVB(Strategy):
    """Discrete key-value bottleneck over a frozen encoder; no boundary hooks used."""

    config_class = DKVBConfig
    kinds = frozenset({CLASS_INCREMENTAL, TASK_INCREMENTAL, TASK_AGNOSTIC})
    paper_defaults = True
    paper_backbone = "resnet50"
    state_attrs = ("_key_init",)

    def __init__(self, config: DKVBConfig, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        c = config
        if c.topk > c.pairs_per_codebook:
            raise ValueError(f"strategy.topk={c.topk} exceeds strategy.pairs_per_codebook={c.pairs_per_codebook}; "
                             f"valid: 1 <= topk <= pairs_per_codebook")
        self.encoder = build_frozen_encoder(c.encoder, backbone, info.input_shape)
        C, P, dk, K = c.num_codebooks, c.pairs_per_codebook, c.key_dim, info.num_classes
        self.in_dim = output_dim(self.encoder, info.input_shape)
        # fixed random projections: N(0, 1) entries, each column unit-norm over the D inputs
        proj = F.normalize(torch.randn(C, self.in_dim, dk, generator=self.generator), p=2, dim=1)
        self.register_buffer("projection", proj)
        self.register_buffer("keys", torch.randn(C, P, dk, generator=self.generator))
        self.register_buffer("usage", torch.zeros(C, P, dtype=torch.long))  # fetches in training steps
        self.values = nn.Parameter(torch.zeros(C, P, K))  # the only trained tensor
        self.optimizer = torch.optim.SGD([self.values], lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        self._key_init: dict = {}

    def train(self, mode: bool = True) -> "DKVB":
        super().train(mode)
        self.encoder.eval()  # frozen: batch-norm statistics never move
        return self

    # -- the bottleneck ---------------------------------------------------------------
    def heads(self, z: torch.Tensor) -> torch.Tensor:
        """Project embeddings ``(B, D)`` into C heads: ``(C, B, d_k)``."""
        return torch.einsum("bd,cdk->cbk", z.flatten(1).float(), self.projection)

    def nearest(self, h: torch.Tensor, keys: torch.Tensor, k: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Indices ``(C, B, k)`` of each head's k nearest keys (squared Euclidean),
        computed a block of codebooks at a time; ``mask`` (C, P) True = never fetchable."""
        out = torch.empty(h.shape[0], h.shape[1], k, dtype=torch.long, device=h.device)
        step = self.config.codebook_chunk
        for c0 in range(0, h.shape[0], step):
            hc, kc = h[c0:c0 + step], keys[c0:c0 + step]
            # |h - k|^2 = |h|^2 - 2 h.k + |k|^2; |h|^2 is the same for every key of a head
            dist = torch.baddbmm((kc * kc).sum(-1).unsqueeze(1), hc, kc.transpose(1, 2), alpha=-2.0)
            if mask is not None:
                dist.masked_fill_(mask[c0:c0 + step].unsqueeze(1), float("inf"))
            out[c0:c0 + step] = dist.argmin(-1, keepdim=True) if k == 1 else dist.topk(k, dim=-1, largest=False).indices
        return out

    def fetch(self, z: torch.Tensor, *, masked: bool) -> torch.Tensor:
        """Key indices ``(C, B, topk)`` fetched for embeddings ``z``."""
        mask = (self.usage == 0) if masked else None
        return self.nearest(self.heads(z), self.keys, self.config.topk, mask)

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)``: fetched values summed over top-k, averaged over codebooks."""
        C = idx.shape[0]
        books = torch.arange(C, device=idx.device).view(C, 1, 1)
        return self.values[books, idx].sum(2).mean(0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features as handed over by the protocol, or (precompute=False) encoded here."""
        if self.config.precompute:
            return x
        with torch.no_grad():
            return self.encoder(x)

    # -- key initialisation (before the stream) -------------------------------------------
    def aux_requests(self) -> dict[str, str]:
        return {"key_init": self.config.key_init_source}

    def prepare(self, aux) -> None:
        """Fit the keys by EMA k-means on unlabelled key-init data, then freeze them."""
        c = self.config
        data = key_init_data(aux["key_init"], self.info.input_shape, c.key_init_limit, self.generator)
        origin = aux["key_init"].origin
        if tuple(data.x.shape[1:]) != tuple(self.info.input_shape):
            raise ValueError(f"key_init_source {c.key_init_source!r} has inputs of shape {tuple(data.x.shape[1:])}, "
                             f"the stream {tuple(self.info.input_shape)}; choose a source with the stream's input shape "
                             f"({DIGITS!r} gives 1x28x28)")
        feats = encode(self.encoder, data, device=self.device, batch_size=max(c.batch_size, 256))
        steps = self.fit_keys(feats.x)
        self._key_init = {"source": c.key_init_source, "origin": origin, "images": len(data),
                          "steps": steps, "epochs": steps / max(1, -(-len(data) // c.batch_size)), "extra_data": True,
                          "keys_used_after_init": self._key_init_usage}

    @torch.no_grad()
    def fit_keys(self, z: torch.Tensor) -> int:
        """Online k-means by EMA (decay, Laplace-smoothed counts) with dead-key restarts
        from the current batch's heads: ``key_init_steps`` batches (passes over ``z``
        repeated as needed; ``key_init_epochs`` passes if None); then the usage counter is
        reset. Keys never change after this. Returns the number of steps made."""
        c = self.config
        C, P = c.num_codebooks, c.pairs_per_codebook
        dev = self.keys.device
        keys = torch.randn(C, P, c.key_dim, generator=self.generator).to(dev)
        key_sums, counts = keys.clone(), torch.zeros(C, P, device=dev)
        threshold = c.dead_key_factor * c.batch_size / P
        books = torch.arange(C, device=dev).view(C, 1) * P
        # resident on the keys' device (no per-step copies); named, so it is never hashed
        data = TensorData(z.to(dev), torch.zeros(len(z), dtype=torch.long, device=dev), fingerprint="key-init")
        per_epoch = -(-len(z) // c.batch_size)
        budget = c.key_init_steps if c.key_init_steps is not None else c.key_init_epochs * per_epoch
        steps = 0
        with setup_progress("dkvb key init (EMA k-means)", budget) as advance:
            while steps < budget:
                for zb, _y in iterate(data, c.batch_size, shuffle=True, generator=self.generator):
                    if steps >= budget:
                        break
                    steps += 1
                    if advance is not None:
                        advance(1)
                    h = self.heads(zb)  # (C, B, dk)
                    flat = (books + self.nearest(h, keys, 1)[..., 0]).flatten()  # (C*B,)
                    n = torch.bincount(flat, minlength=C * P).view(C, P).float()
                    sums = torch.zeros(C * P, c.key_dim, device=dev).index_add_(0, flat, h.reshape(-1, c.key_dim))
                    counts.mul_(c.ema_decay).add_(n, alpha=1 - c.ema_decay)
                    key_sums.mul_(c.ema_decay).add_(sums.view(C, P, -1), alpha=1 - c.ema_decay)
                    total = counts.sum(-1, keepdim=True)
                    smoothed = (counts + c.ema_eps) / (total + P * c.ema_eps) * total
                    keys = key_sums / smoothed.unsqueeze(-1)
                    dead = counts < threshold
                    if dead.any():  # restart dead keys at random heads of this batch
                        pick = torch.randint(h.shape[1], (C, P), generator=self.generator).to(dev)
                        fresh = torch.gather(h, 1, pick.unsqueeze(-1).expand(-1, -1, c.key_dim))
                        keys = torch.where(dead.unsqueeze(-1), fresh, keys)
        self.keys.copy_(keys)
        self.usage.zero_()
        self._key_init_usage = float((counts > threshold).float().sum(-1).mean())  # live keys per codebook (EMA)
        return steps

    # -- the stream ------------------------------------------------------------------
    def frozen_encoder(self) -> Optional[nn.Module]:
        return self.encoder if self.config.precompute else None

    def observe(self, batch: Batch) -> StepStats:
        """One SGD step on the values; counts which pairs this step fetched."""
        c = self.config
        idx = self.fetch(self.embed(batch.x), masked=False)
        self.usage += torch.bincount(
            (torch.arange(idx.shape[0], device=idx.device).view(-1, 1, 1) * c.pairs_per_codebook + idx).flatten(),
            minlength=self.usage.numel(),
        ).view_as(self.usage)
        loss = F.cross_entropy(self.decode(idx), batch.y, label_smoothing=c.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([self.values], c.grad_clip)
        self.optimizer.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.decode(self.fetch(self.embed(x), masked=self.config.mask_unused))

    # -- the record ------------------------------------------------------------------
    def describe(self) -> dict:
        c = self.config
        where = cache_dir()
        return {
            "encoder": "identity (flattened pixels)" if isinstance(self.encoder, Flatten)
            else getattr(self.encoder, "weights_source", type(self.encoder).__name__),
            "embedding_dim": self.in_dim,
            "key_init": self._key_init or None,
            "pairs": c.num_codebooks * c.pairs_per_codebook,
            "values": self.values.numel(),
            "used_pairs_fraction": float((self.usage > 0).float().mean()),
            "keys_used_per_codebook": float((self.usage > 0).float().sum(-1).mean()),
            "feature_cache": str(where) if (where and c.precompute) else "off",
        }

    def deviations(self) -> list[str]:
        out = [d for d in super().deviations() if not d.startswith("backbone=")]
        out += encoder_deviations(self.config.encoder, self.backbone_config, self.paper_backbone)
        if self.config.key_init_source == DIGITS:
            out.append("key init on scikit-learn digits (1,797 8x8 images upsampled to 28x28): another dataset "
                       "than the stream, as in the paper, but not the paper's (CIFAR-100 for CIFAR-10)")
        elif (self.info.dataset, self.config.key_init_source) != ("cifar10", "cifar100"):
            out.append(f"key init on {self.config.key_init_source!r} train images (unlabelled); where that is the "
                       "stream's own dataset this is the paper's same-data ablation, not its main recipe "
                       "(paper: CIFAR-100 for CIFAR-10)")
        return out
