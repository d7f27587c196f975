"""Multi-label class-incremental streams (MLCIL, PROTOCOL.md "Multi-label").

Classes keep their source's fixed order (VOC, COCO: alphabetical by name; mlfmnist:
Fashion-MNIST's label order) unless ``class_order`` is given; they are split B{base}-C{step}.

- Training set of experience i: every training image with at least one class of i,
  labelled ONLY with i's classes: ``y`` is multi-hot over all classes but zero outside
  i's classes, and ``known`` is true exactly on i's classes (the other labels of the
  image are unknown, never negatives).
- Test set of experience j: the test images whose first class in stream order is in j
  (at least one class of j, none of an earlier experience), with their full labels. The
  sets are disjoint, so the joint test set of step i (images with at least one seen
  class) is the concatenation of test sets 1..i; ``clbench.protocol.multilabel`` evaluates it
  with labels restricted to the seen classes.

Named scenarios: ``voc_b0c4``, ``voc_b10c2`` (VOC 2007), ``coco_b0c10``, ``coco_b40c10``
(COCO 2014), default backbone ``resnet18`` (ImageNet weights; KRT used TResNet-M, MULTI-LANE
a ViT-B/16: a method's own backbone overrides it), and ``mlfmnist``: offline 2x2 mosaics of
Fashion-MNIST (see ``scenarios/sources/mlfmnist.py``), B0-C2, default backbone ``cnn28``.

Image geometry of the VOC and COCO files (``geometry``, ``scenarios/sources/images.py``):
the named scenarios keep every image at its native size (``native``: letterboxed on a
``max_side`` canvas, 500 px for VOC, 640 for COCO, their largest sides), so that a method
crops it with its own transform (MULTI-LANE's official random resized crop of the
full-resolution image; a backbone that resizes its whole input sees a black border);
``square`` resizes each image to ``image_size`` squares at load (aspect not kept; the
record's ``scenario.description.geometry`` says which).
``source`` names a multi-label source of ``scenarios.sources.SOURCES``; the config fields
it declares (``image_size``; mlfmnist's ``train_mosaics``, ...) are passed to its loader.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch
from torch.utils.data import Dataset

import clbench.protocol.multilabel  # noqa: F401  (registers the "multilabel" evaluator)
from clbench.api.data import TensorData
from clbench.api.scenario import Scenario, ScenarioConfig, register_scenario
from clbench.fields import setting
from clbench.types import MULTILABEL, Experience
from scenarios.class_incremental import class_splits
from scenarios.sources import MULTI_LABEL, SOURCES, Images, MultiLabelSource  # noqa: F401  (MultiLabelSource: re-exported)
from scenarios.sources.images import GEOMETRIES, ImageFiles, LetterboxImageFiles


# -- datasets -----------------------------------------------------------------------
class LabelledImages(Dataset):
    """Rows ``indices`` of lazily decoded images with their ``(y, known)`` labels."""

    def __init__(self, images: ImageFiles, indices: torch.Tensor, y: torch.Tensor, known: torch.Tensor, fingerprint: str) -> None:
        self.images, self.indices, self.y, self.known = images, indices, y, known
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.images.image(int(self.indices[i])), self.y[i], self.known[i]


def labelled(images: Images, indices: torch.Tensor, y: torch.Tensor, known: torch.Tensor, fingerprint: str) -> Dataset:
    """A dataset yielding ``(x, y, known)``: tensors stay tensors (the fast path)."""
    digest = hashlib.sha1(indices.numpy().tobytes()).hexdigest()[:12]
    fp = f"{fingerprint}/{digest}"
    if isinstance(images, torch.Tensor):
        return TensorData(images[indices], y, known, fingerprint=fp)
    return LabelledImages(images, indices, y, known, fp)


# -- configs ------------------------------------------------------------------------
@dataclass
class MultilabelConfig(ScenarioConfig):
    """``class_order``: None keeps the source's fixed order. ``threshold``: sigmoid
    threshold of CF1 / OF1. ``train_limit`` / ``test_limit``: a seeded subsample of that
    many images per split for quick runs (recorded as a deviation)."""

    kind: str = MULTILABEL
    source: str = setting("voc2007", "the multi-label data source (scenarios.sources: voc2007, coco2014, mlfmnist)")
    base_classes: int = setting(0, "classes of the first experience (0: classes_per_experience)", ge=0)
    classes_per_experience: int = setting(4, "new classes per experience", ge=1)
    class_order: Optional[List[int]] = setting(None, "the class order (null: the source's fixed order)")
    threshold: float = setting(0.8, "sigmoid threshold of CF1 / OF1", gt=0, lt=1)
    train_limit: Optional[int] = setting(None, "a seeded subsample of this many training images (null: all)", ge=1)
    test_limit: Optional[int] = setting(None, "a seeded subsample of this many test images (null: all)", ge=1)
    download: bool = setting(False, "let the source download its data set where it can")
    image_size: int = setting(224, "image files with geometry=square: the square side (mlfmnist ignores it)", ge=1)
    geometry: str = setting("square", "image files: native (letterboxed at native size) or square (resized)",
                            choices=GEOMETRIES)
    max_side: int = setting(640, "geometry=native: canvas side (a longer image is downscaled to it)", ge=1)


@dataclass
class MLFMNISTConfig(MultilabelConfig):
    """Mosaics of Fashion-MNIST: how many per split and the fixed seed that draws them."""

    source: str = "mlfmnist"
    classes_per_experience: int = 2
    train_mosaics: int = setting(3000, "training mosaics (2x2 Fashion-MNIST images) drawn", ge=1)
    test_mosaics: int = setting(1000, "test mosaics drawn", ge=1)
    mosaic_seed: int = setting(1234, "the fixed seed that draws the mosaics (not the run's seed)")


# -- builder ------------------------------------------------------------------------
def _limit(total: int, n: Optional[int], seed: int) -> tuple[torch.Tensor, int]:
    """Row indices kept: all ``total``, or ``n`` drawn with a seeded generator (sorted)."""
    if n is None or n >= total:
        return torch.arange(total), 0
    if n <= 0:
        raise ValueError(f"train_limit / test_limit must be > 0, got {n}")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values, n


def multilabel_experiences(source: MultiLabelSource, splits: list[list[int]], train_rows: torch.Tensor,
                           test_rows: torch.Tensor) -> list[Experience]:
    """Training sets labelled only with each experience's classes; disjoint test sets by
    each image's first class in stream order (module docstring)."""
    C = source.num_classes
    step_of = torch.full((C,), -1, dtype=torch.long)
    for i, classes in enumerate(splits):
        step_of[list(classes)] = i
    tr_labels = source.train_labels[train_rows].bool()
    te_labels = source.test_labels[test_rows].bool()
    big = len(splits)
    first = torch.where(te_labels, step_of.expand_as(te_labels), torch.full_like(te_labels, big, dtype=torch.long))
    first = first.min(dim=1).values  # == big where an image has no positive
    exps = []
    for i, classes in enumerate(splits):
        mask = torch.zeros(C, dtype=torch.bool)
        mask[list(classes)] = True
        rows = torch.nonzero(tr_labels[:, mask].any(dim=1)).flatten()
        y = (tr_labels[rows] & mask).float()
        known = mask.expand(len(rows), C).clone()
        tag = "-".join(map(str, classes))
        train = labelled(source.train_images, train_rows[rows], y, known, f"{source.name}/train/c{tag}")
        te = torch.nonzero(first == i).flatten()
        test = labelled(
            source.test_images, test_rows[te], te_labels[te].float(), torch.ones(len(te), C, dtype=torch.bool),
            f"{source.name}/test/first{tag}",
        )
        exps.append(Experience(i, train, test, tuple(int(c) for c in classes), i))
    return exps


def build_multilabel(cfg: MultilabelConfig, *, data_root: Optional[Path], seed: int) -> Scenario:
    """Build a multi-label class-incremental stream from ``cfg.source``."""
    if not 0.0 < cfg.threshold < 1.0:
        raise ValueError(f"scenario.threshold must be in (0, 1), got {cfg.threshold}")
    entry = SOURCES.source(cfg.source, MULTI_LABEL)
    source = entry.load(data_root, download=cfg.download, **entry.options_from(cfg))
    C = source.num_classes
    if cfg.class_order is not None:
        order = [int(c) for c in cfg.class_order]
        if sorted(order) != list(range(C)):
            raise ValueError(f"class_order {order} is not a permutation of 0..{C - 1}")
    else:
        order = list(range(C))
    splits = class_splits(order, cfg.base_classes, cfg.classes_per_experience)
    train_rows, n_tr = _limit(len(source.train_labels), cfg.train_limit, seed)
    test_rows, n_te = _limit(len(source.test_labels), cfg.test_limit, seed + 1)
    deviations = []
    if n_tr or n_te:
        deviations.append(f"subsampled: {n_tr or 'all'} train / {n_te or 'all'} test images")
    files = isinstance(source.train_images, ImageFiles)
    letterboxed = isinstance(source.train_images, LetterboxImageFiles)
    return Scenario(
        name=cfg.name, kind=MULTILABEL, experiences=multilabel_experiences(source, splits, train_rows, test_rows),
        num_classes=C, input_shape=source.input_shape, class_order=order, class_names=source.class_names,
        description={
            "source": cfg.source, "dataset": {"mlfmnist": "fmnist"}.get(cfg.source, cfg.source),
            "files": source.origin, "deviations": deviations,
            "split": f"B{cfg.base_classes}-C{cfg.classes_per_experience}", "threshold": cfg.threshold,
            "geometry": ("native: letterboxed on a {0}x{0} canvas".format(source.input_shape[-1]) if letterboxed
                         else "square" if files else "tensors"),
            "test_sets": "experience j's test set = test images whose first class in stream order is in j; "
                         "the joint test set of step i is test sets 1..i",
        },
    )


PRESETS = {
    "voc_b0c4": ("voc2007", 0, 4),
    "voc_b10c2": ("voc2007", 10, 2),
    "coco_b0c10": ("coco2014", 0, 10),
    "coco_b40c10": ("coco2014", 40, 10),
}
#: the canvas of the native geometry: each data set's largest image side
NATIVE_SIDE = {"voc2007": 500, "coco2014": 640}
for _name, (_source, _base, _step) in PRESETS.items():
    register_scenario(_name, build_multilabel, MultilabelConfig(
        source=_source, base_classes=_base, classes_per_experience=_step, default_backbone="resnet18",
        geometry="native", max_side=NATIVE_SIDE[_source],
    ))
register_scenario("mlfmnist", build_multilabel, MLFMNISTConfig(default_backbone="cnn28"))
