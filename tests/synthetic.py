"""Tiny synthetic streams: Gaussian class blobs as 1x4x4 'images', ids in pixel 0; and a
multi-label source in memory (``_synthetic``: 6 classes, ids in pixel 0) with its B2-C2 scenario."""
from __future__ import annotations

from typing import Optional

import torch

from clbench.api.data import TensorData, concat
from clbench.api.scenario import Scenario
from clbench.api.synthetic import image_blob_scenario, multilabel_blob_scenario  # noqa: F401  (re-exported)
from clbench.types import Experience
from scenarios.multilabel import MultilabelConfig, MultiLabelSource, build_multilabel
from scenarios.sources import MULTI_LABEL, SOURCES


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


# 6 classes, B2-C2 -> experiences (0, 1), (2, 3), (4, 5). Pixel 0 of each image is its row id.
TRAIN = [[0, 1], [1, 2], [3], [4, 0], [5], [2, 5], []]
TEST = [[0], [2], [3, 4], [5], [1, 5], [0, 3], []]


def multi_hot(rows, C=6):
    out = torch.zeros(len(rows), C, dtype=torch.bool)
    for n, cs in enumerate(rows):
        out[n, cs] = True
    return out


def images(n, offset):
    x = torch.zeros(n, 1, 4, 4)
    x[:, 0, 0, 0] = torch.arange(n) + offset
    return x


def _synthetic(data_root, *, download=False):
    return MultiLabelSource("synth", images(len(TRAIN), 0), multi_hot(TRAIN), images(len(TEST), 100), multi_hot(TEST),
                            [f"c{i}" for i in range(6)], (1, 4, 4), "memory")


SOURCES.register("_synthetic", _synthetic, kind=MULTI_LABEL)


def synthetic_scenario(**kw):
    cfg = MultilabelConfig(name="synth", source="_synthetic", base_classes=2, classes_per_experience=2, **kw)
    return build_multilabel(cfg, data_root=None, seed=0)


def ids(data):
    return [int(v) for v in data.x[:, 0, 0, 0]]


def lenet_blob_scenario(n_exp: int = 3, per_class: int = 40, test_per_class: int = 10, seed: int = 0, kind: str = "task_agnostic",
          side: int = 12) -> Scenario:
    """Gaussian class blobs as 1 x 12 x 12 images in [0, 1] (LeNet-5 needs >= 12 px), a
    task-agnostic stream by default; experience i holds classes 2i and 2i + 1 (TAME's tests)."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * n_exp
    centers = torch.randn(n, side * side, generator=g)

    def make(per: int) -> TensorData:
        y = torch.arange(n).repeat_interleave(per)
        x = torch.sigmoid(3 * (centers[y] + 0.5 * torch.randn(len(y), side * side, generator=g)))
        return TensorData(x.view(-1, 1, side, side), y)

    train, test = make(per_class), make(test_per_class)
    exps = [Experience(i, train.subset(torch.nonzero(train.y // 2 == i).flatten(), f"e{i}"),
                       test.subset(torch.nonzero(test.y // 2 == i).flatten(), f"e{i}"), (2 * i, 2 * i + 1), i)
            for i in range(n_exp)]
    return Scenario("blobs12", kind, exps, n, (1, side, side), list(range(n)))


def resplit(scenario: Scenario, sizes: list[int], kind: Optional[str] = None) -> Scenario:
    """The same training samples in the same order, cut into experiences of ``sizes`` (each
    tested on the test samples of the classes it holds); ``kind`` defaults to the scenario's."""
    train = concat([e.train for e in scenario.experiences])
    test = concat([e.test for e in scenario.experiences])
    exps, start = [], 0
    for i, n in enumerate(sizes):
        part = train.subset(torch.arange(start, start + n))
        classes = tuple(sorted(set(part.y.tolist())))
        keep = torch.nonzero(torch.isin(test.y, torch.tensor(classes))).flatten()
        exps.append(Experience(i, part, test.subset(keep), classes, i))
        start += n
    return Scenario(f"blobs{sizes}", kind or scenario.kind, exps, scenario.num_classes, scenario.input_shape,
                    scenario.class_order)
