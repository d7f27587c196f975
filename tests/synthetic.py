"""A tiny synthetic stream: Gaussian class blobs as 1x4x4 'images', ids in pixel 0."""
from __future__ import annotations

import torch

from clbench.api.data import TensorData
from clbench.api.scenario import Scenario
from clbench.api.synthetic import image_blob_scenario, multilabel_blob_scenario  # noqa: F401  (re-exported)
from clbench.types import Experience


def blob_scenario(kind: str = "class_incremental", n_exp: int = 3, per_class: int = 40, test_per_class: int = 10,
                  seed: int = 0) -> Scenario:
    g = torch.Generator().manual_seed(seed)
    n_classes = 2 * n_exp
    centers = torch.randn(n_classes, 16, generator=g) * 3

    def make(per: int, id_offset: int) -> TensorData:
        y = torch.arange(n_classes).repeat_interleave(per)
        x = centers[y] + torch.randn(len(y), 16, generator=g)
        x[:, 0] = torch.arange(len(y)) + id_offset  # unique id per sample
        return TensorData(x.view(-1, 1, 4, 4), y)

    train, test = make(per_class, 0), make(test_per_class, 1_000_000)
    exps = []
    for i in range(n_exp):
        cls = torch.tensor([2 * i, 2 * i + 1])
        exps.append(Experience(
            i, train.subset(torch.nonzero(torch.isin(train.y, cls)).flatten()),
            test.subset(torch.nonzero(torch.isin(test.y, cls)).flatten()), (2 * i, 2 * i + 1), i,
        ))
    return Scenario("blobs", kind, exps, n_classes, (1, 4, 4), list(range(n_classes)))
