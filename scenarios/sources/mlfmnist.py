"""ML-FMNIST: an offline multi-label source of 2x2 mosaics of Fashion-MNIST items.

Each mosaic is 1 x 56 x 56 (four 28 x 28 cells). Drawn with ``numpy.random.default_rng``
seeded by ``[mosaic_seed, split]`` (split 0 = train, 1 = test; default seed 1234), so the
data is fixed whatever the run seed:

- k, the number of distinct classes, is uniform over {1, 2, 3, 4};
- the k classes are drawn uniformly without replacement from the 10;
- the four cells hold each of the k classes once plus 4 - k more cells of classes drawn
  uniformly (with replacement) from those k, in a random arrangement;
- each cell is a uniformly drawn item of its class from the matching Fashion-MNIST split
  (train mosaics from the 60k training items, test mosaics from the 10k test items).

The labels are the set of the k classes. So each class is present in 25% of the
mosaics in expectation, and a mosaic has 2.5 labels on average. Classes keep
Fashion-MNIST's ids and order (0 T-shirt/top ... 9 Ankle boot).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from scenarios.sources import MULTI_LABEL, SOURCES, MultiLabelSource, fmnist

CELLS = 4  # 2 x 2


def mosaics(items: torch.Tensor, labels: torch.Tensor, n: int, rng: np.random.Generator,
            num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` mosaics ``(n, 1, 56, 56)`` and their bool labels ``(n, num_classes)`` (module docstring)."""
    if n <= 0:
        raise ValueError(f"the number of mosaics must be > 0, got {n}")
    by_class = [np.flatnonzero(labels.numpy() == c) for c in range(num_classes)]
    cells = np.empty((n, CELLS), dtype=np.int64)  # item index of each cell
    multi_hot = np.zeros((n, num_classes), dtype=bool)
    for m in range(n):
        k = int(rng.integers(1, CELLS + 1))
        classes = rng.choice(num_classes, size=k, replace=False)
        fill = np.concatenate([classes, rng.choice(classes, size=CELLS - k, replace=True)])
        fill = rng.permutation(fill)
        cells[m] = [by_class[c][rng.integers(len(by_class[c]))] for c in fill]
        multi_hot[m, classes] = True
    tiles = items[torch.from_numpy(cells)]  # (n, 4, 1, 28, 28)
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=-1)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=-1)
    return torch.cat([top, bottom], dim=-2).contiguous(), torch.from_numpy(multi_hot)


def load(data_root: Optional[Path], *, train_mosaics: int = 3000, test_mosaics: int = 1000,
         mosaic_seed: int = 1234, download: bool = False) -> MultiLabelSource:
    """Mosaics built from the Fashion-MNIST source (``scenarios/sources/fmnist.py``)."""
    base = fmnist.load(data_root, download=download)
    x_tr, y_tr = mosaics(base.train.x, base.train.y, train_mosaics, np.random.default_rng([mosaic_seed, 0]))
    x_te, y_te = mosaics(base.test.x, base.test.y, test_mosaics, np.random.default_rng([mosaic_seed, 1]))
    return MultiLabelSource(
        f"mlfmnist-s{mosaic_seed}-n{train_mosaics}-{test_mosaics}", x_tr, y_tr, x_te, y_te,
        list(base.class_names), (1, 56, 56), base.origin,
    )


SOURCES.register("mlfmnist", load, kind=MULTI_LABEL, options=("train_mosaics", "test_mosaics", "mosaic_seed"))
