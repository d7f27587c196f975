"""Fashion-MNIST from its native idx files (gzipped or not).

Looked for, in order: ``<data_root>/fashion-mnist``, ``<data_root>/FashionMNIST/raw``
(torchvision's layout) and Debian's ``/usr/share/datasets/fashion-mnist``
(``apt-get install dataset-fashion-mnist``). With ``download=true`` torchvision fetches
the files into ``<data_root>/FashionMNIST/raw``.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from clbench.api.data import TensorData
from clbench.errors import DataMissingError
from scenarios.sources import SOURCES, LabelledSource

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (LeCun's format: magic, dims, big-endian data), .gz or plain."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {data.size}")
    return data.reshape(dims)


def candidate_dirs(data_root: Optional[Path]) -> list[Path]:
    dirs = []
    if data_root is not None:
        dirs += [Path(data_root) / "fashion-mnist", Path(data_root) / "FashionMNIST" / "raw"]
    return dirs + [DEBIAN_DIR]


def _find(directory: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def find_files(data_root: Optional[Path]) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """The first directory holding all four idx files, and their paths."""
    for d in candidate_dirs(data_root):
        found = {split: (_find(d, img), _find(d, lab)) for split, (img, lab) in FILES.items()}
        if all(p is not None for pair in found.values() for p in pair):
            return d, found  # type: ignore[return-value]
    looked = ", ".join(str(d) for d in candidate_dirs(data_root))
    raise DataMissingError(
        f"Fashion-MNIST not found: looked for {', '.join(s for pair in FILES.values() for s in pair)} (.gz or not) "
        f"in {looked}. Get it with `apt-get install dataset-fashion-mnist` (Debian), put the idx files in "
        f"<data_root>/fashion-mnist, or allow a download with scenario.download=true."
    )


def load(data_root: Optional[Path], *, download: bool = False) -> LabelledSource:
    """Both splits as float tensors in [0, 1], shape (N, 1, 28, 28), labels int64."""
    if download:
        from torchvision.datasets import FashionMNIST

        if data_root is None:
            raise DataMissingError("scenario.download=true needs a data_root to download into")
        FashionMNIST(str(data_root), train=True, download=True)
        FashionMNIST(str(data_root), train=False, download=True)
    directory, files = find_files(data_root)
    splits = {}
    for split, (img_path, lab_path) in files.items():
        images, labels = read_idx(img_path), read_idx(lab_path)
        if len(images) != len(labels):
            raise ValueError(f"{img_path} has {len(images)} images but {lab_path} has {len(labels)} labels")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        splits[split] = TensorData(x, torch.from_numpy(labels.astype(np.int64)), fingerprint=f"fmnist/{split}")
    return LabelledSource("fmnist", splits["train"], splits["test"], CLASS_NAMES, (1, 28, 28), str(directory))


SOURCES.register("fmnist", load)
