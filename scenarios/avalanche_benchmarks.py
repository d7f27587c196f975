"""Avalanche benchmarks as clbench scenarios: ``scenario=avalanche scenario.benchmark=<name>``.

``fmnist_tensors`` (the default) is Avalanche's ``nc_benchmark`` over our local
Fashion-MNIST files, so it works offline. The classic ones (``SplitMNIST``,
``SplitFMNIST``, ``PermutedMNIST``, ``RotatedMNIST``, ``SplitCIFAR10``,
``SplitCIFAR100``) are built by Avalanche from torchvision's files under
``<data_root>/<dataset>``; offline and without those files they fail with a
DataMissingError saying where they were looked for (``scenario.download=true``
lets Avalanche download them). ``+scenario.args.<key>=<value>`` passes further
arguments to the Avalanche generator. ``avalanche`` is class-incremental;
``avalanche_ti`` builds the benchmark with task labels (task-incremental).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from clbench.api.scenario import Scenario, ScenarioConfig, register_scenario
from clbench.errors import DataMissingError
from clbench.fields import setting
from clbench.types import CLASS_INCREMENTAL, TASK_INCREMENTAL
from scenarios.class_incremental import per_class_subsample
from scenarios.sources import load_source

#: name -> (Avalanche generator, torchvision dataset it reads, folder under data_root)
CLASSIC = {
    "SplitMNIST": ("SplitMNIST", "MNIST", "mnist"),
    "PermutedMNIST": ("PermutedMNIST", "MNIST", "mnist"),
    "RotatedMNIST": ("RotatedMNIST", "MNIST", "mnist"),
    "SplitFMNIST": ("SplitFMNIST", "FashionMNIST", "fashionmnist"),
    "SplitCIFAR10": ("SplitCIFAR10", "CIFAR10", "cifar10"),
    "SplitCIFAR100": ("SplitCIFAR100", "CIFAR100", "cifar100"),
}
#: generators that split by class (and so take a class order)
_BY_CLASS = ("SplitMNIST", "SplitFMNIST", "SplitCIFAR10", "SplitCIFAR100")
BENCHMARKS = ("fmnist_tensors", *CLASSIC)


@dataclass
class AvalancheScenarioConfig(ScenarioConfig):
    """``classes`` (fmnist_tensors only) keeps a subset of the classes; ``materialize``
    loads the data into memory once (train augmentations then apply once)."""

    benchmark: str = setting("fmnist_tensors", "the Avalanche benchmark: fmnist_tensors (offline Fashion-MNIST) or "
                                               "SplitMNIST, PermutedMNIST, RotatedMNIST, SplitFMNIST, SplitCIFAR10, "
                                               "SplitCIFAR100")
    n_experiences: int = setting(5, "experiences the benchmark is cut into")
    fixed_class_order: Optional[List[int]] = setting(None, "the class order of a class-split benchmark "
                                                           "(null: seeded by seed)")
    classes: Optional[List[int]] = setting(None, "fmnist_tensors: keep only these classes (null: all)")
    train_per_class: Optional[int] = setting(None, "training images per class (null: all)", ge=1)
    test_per_class: Optional[int] = setting(None, "test images per class (null: all)", ge=1)
    materialize: bool = setting(True, "load the data into memory once (training augmentations then apply once)")
    download: bool = setting(False, "let Avalanche download torchvision's files where they are missing")
    args: Dict[str, Any] = setting(default_factory=dict, help="further arguments of the Avalanche generator "
                                                              "(+scenario.args.<key>=<value>)")


def build_benchmark(cfg: AvalancheScenarioConfig, *, data_root: Optional[Path], seed: int) -> Any:
    """The Avalanche benchmark ``cfg`` names (Avalanche is imported here)."""
    task_labels = cfg.kind == TASK_INCREMENTAL
    if cfg.benchmark == "fmnist_tensors":
        return fmnist_tensors(data_root, n_experiences=cfg.n_experiences, task_labels=task_labels, seed=seed,
                              fixed_class_order=cfg.fixed_class_order, classes=cfg.classes,
                              train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class, **cfg.args)
    if cfg.benchmark not in CLASSIC:
        raise ValueError(f"unknown Avalanche benchmark {cfg.benchmark!r}; valid choices: {list(BENCHMARKS)}")
    if cfg.classes is not None:
        raise ValueError(f"scenario.classes applies to fmnist_tensors only, not {cfg.benchmark!r}")
    generator, tv_name, folder = CLASSIC[cfg.benchmark]
    from clbench.config import default_data_root

    root = (Path(data_root).expanduser() if data_root else default_data_root()) / folder
    if not cfg.download:
        _check_files(cfg.benchmark, tv_name, root)
    import avalanche.benchmarks.classic as classic

    kwargs: dict[str, Any] = {"return_task_id": task_labels, "seed": seed, "dataset_root": str(root)}
    if cfg.fixed_class_order is not None:
        if cfg.benchmark not in _BY_CLASS:
            raise ValueError(f"fixed_class_order does not apply to {cfg.benchmark!r}; it applies to {list(_BY_CLASS)}")
        kwargs["fixed_class_order"] = list(cfg.fixed_class_order)
    return getattr(classic, generator)(cfg.n_experiences, **{**kwargs, **cfg.args})


def _check_files(benchmark: str, tv_name: str, root: Path) -> None:
    """Fail early, naming the folder, where torchvision would otherwise download."""
    import torchvision

    try:
        getattr(torchvision.datasets, tv_name)(str(root), train=True, download=False)
        getattr(torchvision.datasets, tv_name)(str(root), train=False, download=False)
    except RuntimeError as err:
        raise DataMissingError(
            f"Avalanche benchmark {benchmark!r} reads torchvision's {tv_name} files, which are not in {root} "
            f"({err}). Put them there in torchvision's layout (as torchvision.datasets.{tv_name}(root={str(root)!r}, "
            f"download=True) would on a networked machine), or allow the download with scenario.download=true. "
            f"Offline, scenario.benchmark=fmnist_tensors works from the local Fashion-MNIST files."
        ) from None


def fmnist_tensors(
    data_root: Optional[Path],
    *,
    n_experiences: int = 5,
    task_labels: bool = False,
    seed: int = 0,
    fixed_class_order: Optional[List[int]] = None,
    classes: Optional[List[int]] = None,
    train_per_class: Optional[int] = None,
    test_per_class: Optional[int] = None,
    source: Optional[Any] = None,
    **nc_args: Any,
) -> Any:
    """Avalanche's ``nc_benchmark`` (what ``SplitFMNIST`` uses) over local Fashion-MNIST
    tensors in [0, 1]: no download. Class ids stay Fashion-MNIST's. ``source`` reuses an
    already loaded Fashion-MNIST ``LabelledSource``."""
    from avalanche.benchmarks import nc_benchmark
    from torch.utils.data import TensorDataset

    source = source if source is not None else load_source("fmnist", data_root)
    train, test = source.train, source.test
    if classes is not None:
        bad = sorted(set(classes) - set(range(source.num_classes)))
        if bad:
            raise ValueError(f"classes {bad} are not Fashion-MNIST classes; valid choices: 0..{source.num_classes - 1}")
        keep = torch.tensor(sorted(set(classes)))
        train = train.subset(torch.nonzero(torch.isin(train.y, keep)).flatten(), "cls")
        test = test.subset(torch.nonzero(torch.isin(test.y, keep)).flatten(), "cls")
    train = per_class_subsample(train, train_per_class, seed, f"sub{train_per_class}")
    test = per_class_subsample(test, test_per_class, seed + 1, f"sub{test_per_class}")
    n = len(torch.unique(train.y))
    if n % n_experiences:
        raise ValueError(f"{n} classes cannot be split into n_experiences={n_experiences} equal experiences; "
                         f"choose a divisor of {n} (Avalanche's class_incremental_benchmark would drop the remainder)")
    order = {"fixed_class_order": list(fixed_class_order)} if fixed_class_order is not None else {"seed": seed}
    return nc_benchmark(TensorDataset(train.x, train.y), TensorDataset(test.x, test.y), n_experiences=n_experiences,
                        task_labels=task_labels, **order, **nc_args)


def build_avalanche_scenario(cfg: AvalancheScenarioConfig, *, data_root: Optional[Path], seed: int) -> Scenario:
    """Build the Avalanche benchmark and wrap it (visibility from its task labels)."""
    from clbench.avalanche import scenario_from_benchmark

    benchmark = build_benchmark(cfg, data_root=data_root, seed=seed)
    local = cfg.benchmark == "fmnist_tensors"  # already subsampled before the benchmark was built
    deviations = []
    if local and (cfg.train_per_class is not None or cfg.test_per_class is not None):
        deviations.append(f"subsampled: {cfg.train_per_class} train / {cfg.test_per_class} test images per class")
    names = None
    if cfg.benchmark in ("fmnist_tensors", "SplitFMNIST"):
        from scenarios.sources.fmnist import CLASS_NAMES

        names = list(CLASS_NAMES)
    scenario = scenario_from_benchmark(
        benchmark, name=cfg.name, kind=cfg.kind, class_names=names, materialize_data=cfg.materialize,
        train_per_class=None if local else cfg.train_per_class, test_per_class=None if local else cfg.test_per_class,
        seed=seed, description={"benchmark": cfg.benchmark, "args": dict(cfg.args), "deviations": deviations,
                                "dataset": "fmnist" if "fmnist" in cfg.benchmark.lower() else cfg.benchmark},
        has_train_transforms=not local,
    )
    return scenario


register_scenario("avalanche", build_avalanche_scenario, AvalancheScenarioConfig(kind=CLASS_INCREMENTAL))
register_scenario("avalanche_ti", build_avalanche_scenario, AvalancheScenarioConfig(kind=TASK_INCREMENTAL))
