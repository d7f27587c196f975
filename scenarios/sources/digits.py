"""scikit-learn's bundled digits (UCI optical digits): 1,797 8x8 grey images, 10 classes.

The data ships inside scikit-learn, so it needs no data_root and no download. Pixels
(0..16) are scaled to [0, 1], shape (N, 1, 8, 8). It has no official test split: we
carve one with ``train_test_split(test_size=0.25, stratify=labels, random_state=0)``,
fixed (independent of the run seed) so every run and seed sees the same test set:
1,347 train / 450 test images, each class in the same proportion in both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from clbench.api.data import TensorData
from scenarios.sources import SOURCES, LabelledSource

TEST_SIZE = 0.25
SPLIT_SEED = 0
CLASS_NAMES = [str(d) for d in range(10)]


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified (train, test) index split, each sorted."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED)
    return np.sort(train), np.sort(test)


def all_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits, unsplit: images (N, 1, 8, 8) in [0, 1] and int64 labels (for
    uses outside a stream, e.g. pretraining or key initialisation)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1), torch.from_numpy(bunch.target.astype(np.int64))


def load(data_root: Optional[Path] = None, *, download: bool = False) -> LabelledSource:
    """Both splits as float tensors in [0, 1], shape (N, 1, 8, 8), labels int64."""
    import sklearn

    x, y = all_images()
    train, test = split_indices(y.numpy())
    tag = f"digits/split{TEST_SIZE}-{SPLIT_SEED}"
    return LabelledSource(
        "digits",
        TensorData(x[train], y[train], fingerprint=f"{tag}/train"),
        TensorData(x[test], y[test], fingerprint=f"{tag}/test"),
        CLASS_NAMES, (1, 8, 8),
        f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}); stratified split "
        f"test_size={TEST_SIZE}, random_state={SPLIT_SEED}",
    )


SOURCES.register("digits", load)
