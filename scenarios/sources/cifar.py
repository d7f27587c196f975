"""CIFAR-10 and CIFAR-100 from their native python-pickle batches.

Looked for in ``<data_root>/cifar-10-batches-py`` (``cifar-100-python``) and, as
Avalanche lays them out, ``<data_root>/cifar10/...`` (``cifar100/...``). Get them by
extracting https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (cifar-100-python.tar.gz)
into ``<data_root>``, or with ``scenario.download=true`` (torchvision downloads and
checks the archive's md5).

The batches are Python pickles. They are read with a restricted unpickler
(:func:`safe_load`) that admits only what the format holds (numpy arrays, lists, dicts,
strings, bytes) and refuses anything else, naming the file: a planted file under
``data_root`` cannot run code. The reading itself follows torchvision's CIFAR10/CIFAR100
(same keys, reshape and label names). The md5 of each file is not required (fixtures in
the real format must load), but checked as an audit: the source's ``origin`` (recorded
as the scenario's ``files``) says whether every file matches the published release.
"""
from __future__ import annotations

import hashlib
import importlib
import pickle
from pathlib import Path
from typing import Any, Optional

from collections.abc import Mapping
from typing import Iterator

import numpy as np
import torch

from clbench.api.data import TensorData
from clbench.errors import DataMissingError
from scenarios.sources import SOURCES, LabelledSource


class _Variants(Mapping):
    """``{"cifar10": CIFAR10, "cifar100": CIFAR100}``, importing torchvision (seconds,
    with torch._dynamo) only when a class is looked up."""

    _names = ("cifar10", "cifar100")

    def __getitem__(self, variant: str) -> type:
        if variant not in self._names:
            raise KeyError(variant)
        from torchvision import datasets

        return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[variant]

    def __contains__(self, variant: object) -> bool:
        return variant in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


#: The official torchvision classes, for their file lists, folder names, url and md5s.
VARIANTS = _Variants()


def calculate_md5(path: str) -> str:
    """torchvision's md5 of a file."""
    from torchvision.datasets.utils import calculate_md5 as md5

    return md5(path)

#: What a CIFAR python batch may reference: numpy's array and scalar reconstruction
#: (under numpy 1's and numpy 2's module names) and ``_codecs.encode``, which pickle
#: protocol 2 uses for bytes. Everything else is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle that references something a CIFAR batch never holds; names the file."""


class _CifarUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"{self._path}: refused to load {module}.{name}: a CIFAR batch holds only arrays, lists, dicts "
                "and strings (a corrupted or planted file?); re-extract the official archive there")
        if module.startswith("numpy.") and module.endswith("multiarray"):
            for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):  # whichever this numpy has
                try:
                    return getattr(importlib.import_module(candidate), name)
                except (ImportError, AttributeError):
                    continue
        return getattr(importlib.import_module(module), name)


def safe_load(path: Path) -> Any:
    """Unpickle a CIFAR batch with :class:`_CifarUnpickler` (Python 2 strings as latin-1)."""
    with open(path, "rb") as f:
        return _CifarUnpickler(f, path).load()


def expected_files(official: type) -> list[tuple[str, str]]:
    """(file name, published md5) of every file the reader opens."""
    return [(n, m) for n, m in official.train_list + official.test_list] + [(official.meta["filename"], official.meta["md5"])]


def candidate_roots(variant: str, data_root: Optional[Path]) -> list[Path]:
    return [] if data_root is None else [Path(data_root), Path(data_root) / variant]


def find_root(variant: str, data_root: Optional[Path]) -> Path:
    """The first candidate root whose ``base_folder`` holds every file, else DataMissingError."""
    official = VARIANTS[variant]
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
    official = VARIANTS[variant]
    return {n: calculate_md5(str(root / official.base_folder / n)) for n, _ in expected_files(official)}


def differing_files(variant: str, md5s: dict[str, str]) -> list[str]:
    """Names of the files whose md5 differs from the published release (empty: all match)."""
    return [n for n, md5 in expected_files(VARIANTS[variant]) if md5s[n] != md5]


def _read(variant: str, root: Path, train: bool) -> tuple[np.ndarray, list[int], list[str]]:
    """Images (N, 32, 32, 3) uint8, labels and class names of one split, as torchvision reads them."""
    official = VARIANTS[variant]
    where = root / official.base_folder
    try:
        data, targets = [], []
        for name, _ in official.train_list if train else official.test_list:
            entry = safe_load(where / name)
            data.append(np.asarray(entry["data"]))
            targets.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        images = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
        meta = safe_load(where / official.meta["filename"])
        names = list(meta[official.meta["key"]])
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(
            f"{where}: not readable as CIFAR python batches ({type(err).__name__}: {err}); "
            f"re-extract {official.url} there"
        ) from err
    if len(images) != len(targets):
        raise ValueError(f"{where}: {len(images)} images but {len(targets)} labels")
    return images, [int(t) for t in targets], [str(n) for n in names]


def load_cifar(variant: str, data_root: Optional[Path], *, download: bool = False) -> LabelledSource:
    """Both splits as float tensors in [0, 1], shape (N, 3, 32, 32), labels int64."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CIFAR variant {variant!r}; valid choices: {list(VARIANTS)}")
    official = VARIANTS[variant]
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
