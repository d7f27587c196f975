"""The named streams over CIFAR and digits (scenarios/cifar_digits.py): the split_cifar100
presets split as named, naive runs split_cifar10 from a fixture, split_digits has a seeded
class order and its experiences."""
from __future__ import annotations

import numpy as np
import pytest
from hydra.core.config_store import ConfigStore

from clbench.cli.launch import run_from_config
from clbench.config import compose
from scenarios import cifar_digits  # noqa: F401  (registers the scenarios)
from scenarios.class_incremental import ClassIncrementalConfig, build_class_incremental

from fixtures.cifar_layout import write_cifar10, write_cifar100


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
