"""A tiny synthetic stream: Gaussian class blobs as 1x4x4 'images', ids in pixel 0."""
from __future__ import annotations

import torch

from clbench.data import TensorData
from clbench.scenario import Scenario
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
