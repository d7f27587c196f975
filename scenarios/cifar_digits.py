"""Named class-incremental streams over CIFAR-10/100 and scikit-learn digits.

All use the generic builder (``build_class_incremental``): seeded class order,
B0-C{step} splits. Default backbone ``cnn28``: the small CNN ends in adaptive average
pooling and takes its input channels from the source, so it runs offline on 32x32
colour and 8x8 grey images alike (``backbone=resnet18`` needs ImageNet weights).
"""
from __future__ import annotations

from clbench.api.scenario import register_scenario
from clbench.types import CLASS_INCREMENTAL
from scenarios.class_incremental import ClassIncrementalConfig, build_class_incremental
from scenarios.sources import cifar, digits  # noqa: F401  (registers the sources)

PRESETS = {
    "split_cifar10": ("cifar10", 2),      # 5 experiences x 2 classes
    "split_cifar100": ("cifar100", 10),   # 10 x 10
    "split_cifar100_20": ("cifar100", 5),  # 20 x 5
    "split_digits": ("digits", 2),        # 5 x 2
}

for _name, (_source, _step) in PRESETS.items():
    register_scenario(
        _name, build_class_incremental,
        ClassIncrementalConfig(kind=CLASS_INCREMENTAL, source=_source, classes_per_experience=_step, default_backbone="cnn28",
                               augmentation="crop_flip" if _source.startswith("cifar") else "none"),
    )
