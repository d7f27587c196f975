"""Avalanche's strategies as clbench baselines (strategies/avalanche_baselines.py,
``strategy=avl_*``): each trains under the clbench protocol, Avalanche seeing each experience
once, in order; bad settings name the choices."""
from __future__ import annotations

import json
import math

import pytest
import torch

import strategies.avalanche_baselines as avl_baselines  # registers avl_*
from clbench import protocol
from clbench.api.strategy import STRATEGIES
from clbench.models.backbones import BackboneConfig
from clbench.types import CLASS_INCREMENTAL

from conftest import TINY

pytestmark = pytest.mark.filterwarnings("ignore")


SMALL = {"avl_gem": dict(patterns_per_exp=20), "avl_agem": dict(patterns_per_exp=20, sample_size=32),
         "avl_gdumb": dict(mem_size=60), "avl_replay": dict(mem_size=40)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(avl_baselines.SPECS))
def test_avalanche_baseline_under_clbench_protocol(name, benchmarks, tmp_path):
    from clbench.avalanche import scenario_from_benchmark

    scenario = scenario_from_benchmark(benchmarks[CLASS_INCREMENTAL])
    cls = STRATEGIES.get(name)
    config = cls.config_class(name=name, epochs=1, batch_size=32, **SMALL.get(name, {}))
    strategy = cls(config, scenario.info, TINY, seed=0)
    before = [p.detach().clone() for p in strategy.model.parameters()]
    record, path = protocol.run(scenario, strategy, settings=protocol.RunSettings(
        device="cpu", progress=False, results_dir=str(tmp_path)))
    template = strategy.template
    assert template.clock.train_exp_counter == 2  # Avalanche saw each experience once, in order
    assert template.train_mb_size == 32 and template.eval_every == -1
    assert strategy.model is template.model  # predict uses the model Avalanche trained (GDumb replaces it)
    assert any(not torch.equal(a, b) for a, b in zip(before, template.model.parameters()))
    assert record.status == "complete" and len(record.matrix) == 3
    assert math.isfinite(record.metrics["ACC"]) and record.metrics["BWT"] is not None
    assert "batch_size=32 (paper:" in " ".join(record.strategy["deviations"])
    assert record.strategy["details"]["reference"].endswith(avl_baselines.SPECS[name].reference)
    assert json.loads(path.read_text())["strategy"]["name"] == name


def test_bad_baseline_settings_name_the_choices(benchmarks):
    from clbench.avalanche import scenario_from_benchmark

    info = scenario_from_benchmark(benchmarks[CLASS_INCREMENTAL], materialize_data=False).info
    cls = STRATEGIES.get("avl_ewc")
    with pytest.raises(ValueError, match="'sgd', 'adam'"):
        cls(cls.config_class(name="avl_ewc", optimizer="rmsprop"), info, BackboneConfig())
