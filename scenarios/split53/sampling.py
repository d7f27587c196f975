"""The paper's per-class subsampling of split53 (pure functions: file lists in, file lists out)."""
from __future__ import annotations

import random
from typing import Sequence

from scenarios.split53.tasks import SPLITS

SUBSAMPLE_SEED = 27
LARGE_TASK_CLASSES = 60  # tasks with at least this many classes get the larger targets
TARGETS = {"large": {"train": 5120, "test": 512}, "small": {"train": 2560, "test": 256}}


def subsample_target(num_classes: int, split: str) -> int:
    """The paper's image target for a task's split: 5,120 / 512 with >= 60 classes, else 2,560 / 256."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid choices: {list(SPLITS)}")
    return TARGETS["large" if num_classes >= LARGE_TASK_CLASSES else "small"][split]


def per_class_counts(available: Sequence[int], split: str) -> list[int]:
    """Images kept per class: round(target / C) (Python's round, as the official code), capped by availability."""
    quota = round(subsample_target(len(available), split) / len(available))
    return [min(quota, n) for n in available]


def subsample(files_by_class: Sequence[Sequence[str]], split: str, seed: int = SUBSAMPLE_SEED) -> list[list[str]]:
    """Keep ``per_class_counts`` files of each class: a fresh ``random.Random(seed)`` per
    task and split shuffles each class's sorted file list in class order, as the official
    loader reseeds Python's ``random`` for every dataset it builds."""
    rng = random.Random(seed)
    kept = []
    for files, k in zip(files_by_class, per_class_counts([len(f) for f in files_by_class], split)):
        files = sorted(files)
        rng.shuffle(files)
        kept.append(sorted(files[:k]))
    return kept
