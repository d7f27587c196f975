"""Class-incremental streams over any labelled source (and their task-incremental twin).

Classes are split into experiences B{base}-C{step}: an optional base experience of
``base_classes`` classes, then ``classes_per_experience`` classes each. The class
order is explicit (``class_order``) or a permutation seeded by the run seed; with
seed 0, ``split_fmnist`` uses the order printed by ``default_rng(0).permutation(10)``:
[4, 6, 2, 7, 3, 5, 9, 0, 8, 1] (Coat, Shirt | Pullover, Sneaker | ...), see the
README. Task-incremental = the same stream with task ids visible.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from clbench.api.data import TensorData
from clbench.api.scenario import Scenario, ScenarioConfig, register_scenario
from clbench.fields import setting
from clbench.types import CLASS_INCREMENTAL, TASK_AGNOSTIC, TASK_INCREMENTAL, Experience
from scenarios.sources import LabelledSource, load_source


@dataclass
class ClassIncrementalConfig(ScenarioConfig):
    """``train_per_class`` / ``test_per_class`` subsample each class (seeded) for quick
    runs; a subsampled run records it as a deviation."""

    source: str = setting("fmnist", "the data source (scenarios.sources)")
    classes_per_experience: int = setting(2, "new classes per experience", ge=1)
    base_classes: int = setting(0, "classes of the first experience (0: classes_per_experience)", ge=0)
    class_order: Optional[List[int]] = setting(None, "the class order (null: a permutation seeded by seed)")
    shuffle_classes: bool = setting(True, "shuffle the class order by the seed (false: the source's order)")
    train_per_class: Optional[int] = setting(None, "training images per class (null: all; a recorded deviation)",
                                             ge=1)
    test_per_class: Optional[int] = setting(None, "test images per class (null: all; a recorded deviation)", ge=1)
    download: bool = setting(False, "let torchvision download the data set where it can")
    repeats: int = setting(1, "task-agnostic family: passes over each experience, back to back", ge=1)
    augmentation: str = setting("none", "training-time augmentation (clbench.api.augment): none | crop_flip | flip")


def class_splits(order: list[int], base: int, step: int) -> list[list[int]]:
    """Split a class order into B{base}-C{step} experiences; refuse what does not divide."""
    if step <= 0 or base < 0:
        raise ValueError(f"classes_per_experience must be > 0 and base_classes >= 0, got {step} and {base}")
    rest = len(order) - base
    if rest <= 0 or rest % step:
        raise ValueError(
            f"{len(order)} classes cannot be split as base {base} + steps of {step} "
            f"(the remaining {rest} classes must be a positive multiple of {step})"
        )
    splits = [order[:base]] if base else []
    return splits + [order[i:i + step] for i in range(base, len(order), step)]


def class_order_for(cfg: ClassIncrementalConfig, num_classes: int, seed: int) -> list[int]:
    if cfg.class_order is not None:
        order = list(cfg.class_order)
        if sorted(order) != list(range(num_classes)):
            raise ValueError(f"class_order {order} is not a permutation of 0..{num_classes - 1}")
        return order
    if not cfg.shuffle_classes:
        return list(range(num_classes))
    return [int(c) for c in np.random.default_rng(seed).permutation(num_classes)]


def per_class_subsample(data: TensorData, per_class: Optional[int], seed: int, tag: str) -> TensorData:
    """At most ``per_class`` samples of each class, drawn with a seeded generator."""
    if per_class is None:
        return data
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(data.y):
        idx = torch.nonzero(data.y == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return data.subset(torch.cat(keep).sort().values, tag)


def experiences_by_class(source: LabelledSource, splits: list[list[int]]) -> list[Experience]:
    exps = []
    for i, classes in enumerate(splits):
        cls = torch.tensor(classes)
        tr = torch.nonzero(torch.isin(source.train.y, cls)).flatten()
        te = torch.nonzero(torch.isin(source.test.y, cls)).flatten()
        exps.append(Experience(i, source.train.subset(tr, f"e{i}"), source.test.subset(te, f"e{i}"), tuple(classes), i))
    return exps


def build_class_incremental(cfg: ClassIncrementalConfig, *, data_root: Optional[Path], seed: int) -> Scenario:
    source = load_source(cfg.source, data_root, download=cfg.download)
    deviations = []
    if cfg.train_per_class is not None or cfg.test_per_class is not None:
        source.train = per_class_subsample(source.train, cfg.train_per_class, seed, f"sub{cfg.train_per_class}")
        source.test = per_class_subsample(source.test, cfg.test_per_class, seed + 1, f"sub{cfg.test_per_class}")
        deviations.append(f"subsampled: {cfg.train_per_class} train / {cfg.test_per_class} test images per class")
    order = class_order_for(cfg, source.num_classes, seed)
    splits = class_splits(order, cfg.base_classes, cfg.classes_per_experience)
    return Scenario(
        name=cfg.name, kind=cfg.kind, experiences=experiences_by_class(source, splits),
        num_classes=source.num_classes, input_shape=source.input_shape, class_order=order,
        class_names=source.class_names, repeats=cfg.repeats if cfg.kind == TASK_AGNOSTIC else 1,
        augmentation=cfg.augmentation,
        description={"source": cfg.source, "files": source.origin, "deviations": deviations,
                     "split": f"B{cfg.base_classes}-C{cfg.classes_per_experience}"},
    )


register_scenario("split_fmnist", build_class_incremental, ClassIncrementalConfig(kind=CLASS_INCREMENTAL))
register_scenario("split_fmnist_ti", build_class_incremental, ClassIncrementalConfig(kind=TASK_INCREMENTAL))
#: MNIST from torchvision's layout under data_root (scenarios/sources/mnist.py)
register_scenario("split_mnist", build_class_incremental, ClassIncrementalConfig(kind=CLASS_INCREMENTAL, source="mnist"))
