"""Tiny synthetic streams for contract checks and tests: class blobs as small images,
single-label or multi-label, built in milliseconds and seeded (Avalanche's good habit of
a fast synthetic benchmark). ``clbench check`` runs every strategy on them."""
from __future__ import annotations

import torch

from clbench.api.data import TensorData
from clbench.api.scenario import Scenario
from clbench.types import Experience


def image_blob_scenario(kind: str = "class_incremental", n_exp: int = 3, per_class: int = 12, test_per_class: int = 6,
                        side: int = 8, seed: int = 0) -> Scenario:
    """Like :func:`blob_scenario` with 1 x side x side images (big enough for CNNs and
    the small ViT) and no id pixel."""
    g = torch.Generator().manual_seed(seed)
    C = 2 * n_exp
    patterns = torch.randn(C, side * side, generator=g) * 2

    def make(per: int) -> TensorData:
        y = torch.arange(C).repeat_interleave(per)
        x = (patterns[y] + torch.randn(len(y), side * side, generator=g)).view(-1, 1, side, side).sigmoid()
        return TensorData(x, y)

    train, test = make(per_class), make(test_per_class)
    exps = []
    for i in range(n_exp):
        cls = torch.tensor([2 * i, 2 * i + 1])
        exps.append(Experience(i, train.subset(torch.nonzero(torch.isin(train.y, cls)).flatten()),
                               test.subset(torch.nonzero(torch.isin(test.y, cls)).flatten()), (2 * i, 2 * i + 1), i))
    return Scenario("image_blobs", kind, exps, C, (1, side, side), list(range(C)), description={"dataset": "image_blobs"})


def multilabel_blob_scenario(n_exp: int = 3, n_train: int = 60, n_test: int = 30, side: int = 8, seed: int = 0) -> Scenario:
    """Multi-label images: each carries 1-2 of 2*n_exp classes (sum of class patterns plus
    noise). Experience i trains on images with a class of i, labelled only with i's
    classes (``known``); its test set holds the images whose first class is in i."""
    g = torch.Generator().manual_seed(seed)
    C = 2 * n_exp
    patterns = torch.randn(C, side * side, generator=g)

    def make(n: int):
        first = torch.randint(0, C, (n,), generator=g)
        second = torch.randint(0, C, (n,), generator=g)
        y = torch.zeros(n, C, dtype=torch.long)
        y[torch.arange(n), first] = 1
        both = torch.rand(n, generator=g) < 0.5
        y[both, second[both]] = 1
        x = (y.float() @ patterns + 0.3 * torch.randn(n, side * side, generator=g)).view(n, 1, side, side)
        return x, y

    xtr, ytr = make(n_train * n_exp)
    xte, yte = make(n_test * n_exp)
    exps = []
    for i in range(n_exp):
        cls = [2 * i, 2 * i + 1]
        has = ytr[:, cls].any(1)
        known = torch.zeros(int(has.sum()), C, dtype=torch.bool)
        known[:, cls] = True
        ytrain = torch.zeros_like(ytr[has])
        ytrain[:, cls] = ytr[has][:, cls]
        first_class = torch.argmax(yte, dim=1)  # first class by index = first in stream order here
        te = (first_class // 2) == i
        exps.append(Experience(i, TensorData(xtr[has], ytrain, known),
                               TensorData(xte[te], yte[te], torch.ones(int(te.sum()), C, dtype=torch.bool)),
                               tuple(cls), i))
    return Scenario("ml_blobs", "multilabel", exps, C, (1, side, side), list(range(C)),
                    description={"dataset": "ml_blobs"})


def as_stream(scenario: Scenario) -> Scenario:
    """A class-incremental synthetic scenario as a plain task-agnostic stream (one pass,
    no blurring): the protocol then hides task ids and boundaries."""
    import dataclasses

    from clbench.types import TASK_AGNOSTIC

    return dataclasses.replace(scenario, kind=TASK_AGNOSTIC, name=f"{scenario.name}_stream")
