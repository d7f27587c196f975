"""CIFAR-10 and CIFAR-100 from their native python-pickle batches.

Looked for in ``<data_root>/cifar-10-batches-py`` (``cifar-100-python``) and, as
Avalanche lays them out, ``<data_root>/cifar10/...`` (``cifar100/...``). Get them by
extracting https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (cifar-100-python.tar.gz)
into ``<data_root>``, or with ``scenario.download=true`` (torchvision downloads and
checks the archive's md5).

Reading uses torchvision's own CIFAR10/CIFAR100 classes, with one change: their
md5 gate is replaced by an existence check (see :class:`CIFAR10Files`). The md5 check
still runs, as an audit: the source's ``origin`` (recorded as the scenario's
``files``) says whether every file matches the published release.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import calculate_md5

from clbench.data import TensorData
from clbench.errors import DataMissingError
from scenarios.sources import SOURCES, LabelledSource


class CIFAR10Files(CIFAR10):
    """torchvision's CIFAR-10 reader (same pickle parsing, reshape and label-name
    lookup) with the md5 of each file not required at load time.

    Why: torchvision refuses any file whose md5 differs from the release, which makes
    its reading code untestable on small fixtures written in the real format; the
    check is kept as an audit (:func:`differing_files`) instead of a gate.
    """

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class CIFAR100Files(CIFAR100):
    """torchvision's CIFAR-100 reader (fine labels), md5 not required; see :class:`CIFAR10Files`."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


VARIANTS = {"cifar10": (CIFAR10, CIFAR10Files), "cifar100": (CIFAR100, CIFAR100Files)}


def expected_files(official: type[CIFAR10]) -> list[tuple[str, str]]:
    """(file name, published md5) of every file the reader opens."""
    return [(n, m) for n, m in official.train_list + official.test_list] + [(official.meta["filename"], official.meta["md5"])]


def candidate_roots(variant: str, data_root: Optional[Path]) -> list[Path]:
    return [] if data_root is None else [Path(data_root), Path(data_root) / variant]


def find_root(variant: str, data_root: Optional[Path]) -> Path:
    """The first candidate root whose ``base_folder`` holds every file, else DataMissingError."""
    official = VARIANTS[variant][0]
    names = [n for n, _ in expected_files(official)]
    for root in candidate_roots(variant, data_root):
        if all((root / official.base_folder / n).is_file() for n in names):
            return root
    looked = ", ".join(str(r / official.base_folder) for r in candidate_roots(variant, data_root)) or "nowhere (no data_root)"
    raise DataMissingError(
        f"{variant.upper()} not found: looked for {', '.join(names)} in {looked}. Download {official.url}, "
        f"extract it into <data_root> (it creates {official.base_folder}/), or allow a download with "
        f"scenario.download=true."
    )


def file_md5s(variant: str, root: Path) -> dict[str, str]:
    """The md5 of every file the reader opens (about a second for CIFAR's 180 MB)."""
    official = VARIANTS[variant][0]
    return {n: calculate_md5(str(root / official.base_folder / n)) for n, _ in expected_files(official)}


def differing_files(variant: str, md5s: dict[str, str]) -> list[str]:
    """Names of the files whose md5 differs from the published release (empty: all match)."""
    return [n for n, md5 in expected_files(VARIANTS[variant][0]) if md5s[n] != md5]


def _read(variant: str, root: Path, train: bool) -> tuple[np.ndarray, list[int], list[str]]:
    reader = VARIANTS[variant][1]
    where = root / reader.base_folder
    try:
        ds = reader(str(root), train=train)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
        raise ValueError(
            f"{where}: not readable as CIFAR python batches ({type(err).__name__}: {err}); "
            f"re-extract {reader.url} there"
        ) from err
    if len(ds.data) != len(ds.targets):
        raise ValueError(f"{where}: {len(ds.data)} images but {len(ds.targets)} labels")
    return ds.data, list(ds.targets), list(ds.classes)


def load_cifar(variant: str, data_root: Optional[Path], *, download: bool = False) -> LabelledSource:
    """Both splits as float tensors in [0, 1], shape (N, 3, 32, 32), labels int64."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CIFAR variant {variant!r}; valid choices: {list(VARIANTS)}")
    official = VARIANTS[variant][0]
    if download:
        if data_root is None:
            raise DataMissingError("scenario.download=true needs a data_root to download into")
        try:
            official(str(data_root), train=True, download=True)  # fetches both splits, checks the archive's md5
        except (OSError, RuntimeError) as err:
            raise DataMissingError(
                f"could not download {official.url} into {data_root} ({type(err).__name__}: {err}); fetch it elsewhere "
                f"and extract it into {data_root}"
            ) from err
    root = find_root(variant, data_root)
    md5s = file_md5s(variant, root)
    content = hashlib.sha1("".join(md5s[n] for n in sorted(md5s)).encode()).hexdigest()[:12]
    splits, names = {}, []
    for split in ("train", "test"):
        images, labels, names = _read(variant, root, split == "train")
        y = torch.tensor(labels, dtype=torch.int64)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(names)):
            raise ValueError(f"{root / official.base_folder}: labels outside 0..{len(names) - 1} in the {split} split")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        splits[split] = TensorData(x, y, fingerprint=f"{variant}/{content}/{split}")
    differs = differing_files(variant, md5s)
    audit = "md5 matches the published release" if not differs else f"md5 differs from the published release for {', '.join(differs)}"
    origin = f"{root / official.base_folder} ({audit})"
    return LabelledSource(variant, splits["train"], splits["test"], names, (3, 32, 32), origin)


def load_cifar10(data_root: Optional[Path], *, download: bool = False) -> LabelledSource:
    return load_cifar("cifar10", data_root, download=download)


def load_cifar100(data_root: Optional[Path], *, download: bool = False) -> LabelledSource:
    return load_cifar("cifar100", data_root, download=download)


SOURCES.register("cifar10", load_cifar10)
SOURCES.register("cifar100", load_cifar100)
