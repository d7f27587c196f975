"""Outputs of a frozen encoder, computed once per dataset instead of once per epoch."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from clbench.data import TensorData, fingerprint_of, iterate


@torch.no_grad()
def encode(encoder: nn.Module, dataset: Dataset, *, device: torch.device, batch_size: int = 256) -> TensorData:
    """``dataset`` with each input replaced by ``encoder``'s output (labels and masks kept)."""
    encoder.eval()
    feats, ys, knowns = [], [], []
    for tensors in iterate(dataset, batch_size, shuffle=False):
        feats.append(encoder(tensors[0].to(device)).cpu())
        ys.append(tensors[1])
        if len(tensors) > 2:
            knowns.append(tensors[2])
    return TensorData(
        torch.cat(feats), torch.cat(ys), torch.cat(knowns) if knowns else None,
        fingerprint=f"{fingerprint_of(dataset)}@encoded",
    )
