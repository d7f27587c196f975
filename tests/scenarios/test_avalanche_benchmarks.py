"""Avalanche benchmarks as clbench scenarios (scenarios/avalanche_benchmarks.py,
``scenario=avalanche``): ``fmnist_tensors`` refuses a split that would drop classes, a classic
benchmark offline names where it looked, and ``scenario=avalanche_ti`` runs through
`clbench run`."""
from __future__ import annotations

import json

import pytest

import scenarios.avalanche_benchmarks as avb  # registers scenario avalanche / avalanche_ti
from clbench.errors import DataMissingError
from clbench.types import TASK_INCREMENTAL

from conftest import CLASSES

pytestmark = pytest.mark.filterwarnings("ignore")


def test_fmnist_tensors_refuses_a_split_that_would_drop_classes(fmnist):
    with pytest.raises(ValueError, match="cannot be split into n_experiences=3"):
        avb.fmnist_tensors(None, n_experiences=3, source=fmnist)


def test_classic_benchmark_offline_names_where_it_looked(tmp_path):
    cfg = avb.AvalancheScenarioConfig(name="avalanche", benchmark="SplitMNIST")
    with pytest.raises(DataMissingError, match=str(tmp_path / "mnist")):
        avb.build_benchmark(cfg, data_root=tmp_path, seed=0)
    with pytest.raises(ValueError, match="valid choices"):
        avb.build_benchmark(avb.AvalancheScenarioConfig(benchmark="SplitMNSIT"), data_root=tmp_path, seed=0)


@pytest.mark.slow
def test_avalanche_benchmark_runs_through_clbench_run(tmp_path):
    from clbench.cli.launch import run_from_config
    from clbench.config import compose

    cfg = compose(["strategy=naive", "scenario=avalanche_ti", "scenario.n_experiences=2", f"scenario.classes={CLASSES}",
                   "scenario.train_per_class=40", "scenario.test_per_class=20", "strategy.epochs=1", "backbone.width=8",
                   "logger=none", "progress=false", f"results_dir={tmp_path}", "device=cpu", "+scenario.args.shuffle=false"])
    record, path = run_from_config(cfg)
    saved = json.loads(path.read_text())
    assert saved["status"] == "complete" and saved["scenario"]["kind"] == TASK_INCREMENTAL
    assert saved["scenario"]["experience_classes"] == [[0, 1], [2, 3]]  # shuffle=false reached nc_benchmark
    assert saved["scenario"]["description"]["benchmark"] == "fmnist_tensors"
    assert len(saved["matrix"]) == 3 and all(0.0 <= a <= 1.0 for row in saved["matrix"] for a in row)
    assert any("subsampled" in d for d in saved["deviations"])
