"""CIFAR-10/100 read from fixtures written in their native pickle format; sklearn digits."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.config_store import ConfigStore

from clbench.cli.launch import run_from_config
from clbench.config import compose
from clbench.errors import DataMissingError
from scenarios import cifar_digits  # noqa: F401  (registers the scenarios)
from scenarios.class_incremental import ClassIncrementalConfig, build_class_incremental
from scenarios.sources import cifar, digits

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng: np.random.Generator, labels: list[int]) -> np.ndarray:
    """Rows of 3072 uint8 (R plane, G plane, B plane; each 32x32 row-major), class-dependent."""
    base = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    base[:, :1024] = (np.array(labels, dtype=np.uint8) * 25)[:, None]  # red plane encodes the class
    return base


def write_cifar10(root: Path, per_class_per_batch: int = 2, per_class_test: int = 2, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` as the release lays it out: 5 data batches, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    for name, per_class in [(b, per_class_per_batch) for b in batches] + [("test_batch", per_class_test)]:
        labels = [c for c in range(10) for _ in range(per_class)]
        rng.shuffle(labels)
        _pickle(d / name, {"batch_label": name, "labels": labels, "data": _images(rng, labels),
                           "filenames": [f"{name}_{i}.png" for i in range(len(labels))]})
    _pickle(d / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": 10 * per_class_per_batch, "num_vis": 3072})
    return root


def write_cifar100(root: Path, per_class_train: int = 1, per_class_test: int = 1, seed: int = 0) -> Path:
    """``root/cifar-100-python`` with train, test (fine and coarse labels) and meta."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for name, per_class in (("train", per_class_train), ("test", per_class_test)):
        fine = [c for c in range(100) for _ in range(per_class)]
        rng.shuffle(fine)
        _pickle(d / name, {"filenames": [f"{i}.png" for i in range(len(fine))], "batch_label": name,
                           "fine_labels": fine, "coarse_labels": [c // 5 for c in fine],
                           "data": rng.integers(0, 256, size=(len(fine), 3072), dtype=np.uint8)})
    _pickle(d / "meta", {"fine_label_names": [f"fine{c}" for c in range(100)],
                         "coarse_label_names": [f"coarse{c}" for c in range(20)]})
    return root


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


def test_split_cifar100_presets_split_as_named(tmp_path):
    write_cifar100(tmp_path)
    for name, n in (("split_cifar100", 10), ("split_cifar100_20", 20)):
        node = ConfigStore.instance().repo["scenario"][f"{name}.yaml"].node
        cfg = ClassIncrementalConfig(**{k: node[k] for k in ("name", "kind", "source", "classes_per_experience")})
        sc = build_class_incremental(cfg, data_root=tmp_path, seed=0)
        assert len(sc.experiences) == n and all(len(e.classes) == 100 // n for e in sc.experiences)
        assert node.default_backbone == "cnn28"


@pytest.mark.slow
def test_naive_runs_split_cifar10_from_fixture(tmp_path):
    write_cifar10(tmp_path / "data")
    cfg = compose([
        "logger=none", "progress=false", f"results_dir={tmp_path / 'results'}", "device=cpu",
        "strategy=naive", "scenario=split_cifar10", f"data_root={tmp_path / 'data'}", "strategy.epochs=1",
        "strategy.batch_size=16", "backbone.width=8",
    ])
    assert cfg.backbone.name == "cnn28"  # the scenario's default backbone
    record, path = run_from_config(cfg)
    assert record.status == "complete" and path.exists()
    assert len(record.matrix) == 6 and all(len(r) == 5 for r in record.matrix)
    assert all(record.matrix[i][j] == 0.0 for i in range(1, 6) for j in range(i, 5))  # unseen classes masked
    assert record.scenario["description"]["source"] == "cifar10"
    assert "md5 differs" in record.scenario["description"]["files"]


def test_digits_split_is_fixed_and_stratified():
    a, b = digits.load(None), digits.load(None)
    assert (len(a.train), len(a.test)) == (1347, 450) and a.input_shape == (1, 8, 8)
    assert a.train.x.shape[1:] == (1, 8, 8) and float(a.train.x.max()) == 1.0 and float(a.train.x.min()) == 0.0
    assert torch.equal(a.test.y, b.test.y) and a.test.fingerprint == b.test.fingerprint
    n_train, n_test = torch.bincount(a.train.y, minlength=10), torch.bincount(a.test.y, minlength=10)
    share = n_test.float() / (n_train + n_test).float()
    assert torch.all((share - 0.25).abs() < 0.01), share  # stratified: every class ~25% in test


def test_split_digits_class_order_and_experiences():
    node = ConfigStore.instance().repo["scenario"]["split_digits.yaml"].node
    cfg = ClassIncrementalConfig(name="split_digits", kind=node.kind, source=node.source,
                                 classes_per_experience=node.classes_per_experience)
    sc = build_class_incremental(cfg, data_root=None, seed=0)
    order = [int(c) for c in np.random.default_rng(0).permutation(10)]
    assert sc.class_order == order and len(sc.experiences) == 5
    for i, exp in enumerate(sc.experiences):
        assert exp.classes == tuple(order[2 * i:2 * i + 2])
        assert set(exp.train.y.tolist()) == set(exp.classes) == set(exp.test.y.tolist())
    assert sum(len(e.train) for e in sc.experiences) == 1347
    assert build_class_incremental(cfg, data_root=None, seed=1).class_order != order
