"""CIFAR-10/100 (scenarios/sources/cifar.py) read from fixtures in their native pickle format:
pixels, labels and names; fine labels; Avalanche's layout; a missing or corrupt copy named;
a planted pickle refused and never run."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.errors import DataMissingError
from scenarios.sources import cifar

from fixtures.cifar_layout import CIFAR10_NAMES, write_cifar10, write_cifar100


def test_cifar10_fixture_reads_pixels_labels_and_names(tmp_path):
    write_cifar10(tmp_path)
    src = cifar.load_cifar10(tmp_path)
    assert src.class_names == CIFAR10_NAMES and src.input_shape == (3, 32, 32)
    assert src.train.x.shape == (100, 3, 32, 32) and src.test.x.shape == (20, 3, 32, 32)
    assert src.train.x.dtype == torch.float32 and 0.0 <= float(src.train.x.min()) and float(src.train.x.max()) <= 1.0
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    # data_batch_2's first image is sample 20 (batches are concatenated in order); plane layout is CHW
    expected = torch.from_numpy(raw["data"][0].reshape(3, 32, 32).astype(np.float32) / 255.0)
    assert torch.equal(src.train.x[20], expected) and int(src.train.y[20]) == raw["labels"][0]
    assert torch.bincount(src.train.y, minlength=10).tolist() == [10] * 10
    assert torch.allclose(src.train.x[:, 0, 0, 0] * 255, src.train.y.float() * 25)  # the class lives in red
    assert "md5 differs from the published release" in src.origin  # a fixture, and the record says so
    assert src.train.fingerprint.startswith("cifar10/") and src.train.fingerprint != "cifar10/train"


def test_cifar100_uses_fine_labels_and_meta_names(tmp_path):
    write_cifar100(tmp_path)
    src = cifar.load_cifar100(tmp_path)
    assert src.num_classes == 100 and src.class_names[7] == "fine7"
    assert sorted(src.train.y.tolist()) == list(range(100))  # fine, not coarse (which stop at 19)


def test_cifar_found_in_avalanche_layout(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    assert len(cifar.load_cifar10(tmp_path).train) == 100


def test_cifar_missing_says_where_and_how(tmp_path):
    with pytest.raises(DataMissingError) as err:
        cifar.load_cifar10(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "cifar-10-python.tar.gz" in msg and "scenario.download=true" in msg
    (tmp_path / "cifar-100-python").mkdir()
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"")
    with pytest.raises(DataMissingError, match="meta"):
        cifar.load_cifar100(tmp_path)


def test_cifar_corrupt_batch_is_named(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar-10-batches-py"):
        cifar.load_cifar10(tmp_path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_cifar_pickle_is_refused_and_never_runs(tmp_path):
    from scenarios.sources import cifar

    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
        labels = list(range(10))
        with open(d / name, "wb") as f:
            pickle.dump({"labels": labels, "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8)}, f, protocol=2)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f, protocol=2)
    marker = tmp_path / "pwned"
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({"labels": [0], "data": _Evil(marker)}, f, protocol=2)
    with pytest.raises(ValueError) as err:
        cifar.load_cifar10(tmp_path)
    assert "data_batch_1" in str(err.value) and "refused" in str(err.value) and "system" in str(err.value)
    assert not marker.exists()
    # the same file without the payload loads (arrays, lists, dicts, bytes are admitted)
    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({"labels": list(range(10)), "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                     "batch_label": b"raw bytes"}, f, protocol=2)
    assert len(cifar.load_cifar10(tmp_path).train) == 50
