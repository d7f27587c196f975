"""Class-incremental streams (scenarios/class_incremental.py): with seed 0, split_fmnist's class
order is the one the README and the module document."""
import pytest

from clbench.api.scenario import build_scenario
from clbench.config import compose, data_root
from omegaconf import OmegaConf

from conftest import small_run_overrides


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_seed_zero_class_order_is_documented(tmp_path):
    cfg = compose(small_run_overrides(tmp_path, "scenario=split_fmnist", "seed=0"))
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
    assert scenario.class_order == [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]  # README and class_incremental.py say so
    assert [e.classes for e in scenario.experiences] == [(4, 6), (2, 7), (3, 5), (9, 0), (8, 1)]
