"""The learner's view of an experience (clbench.api.view): a seeded validation split, disjoint
from training, and never a test sample; task ids only where the scenario shows them (on
synthetic streams and on real Fashion-MNIST)."""
import pytest

from clbench import protocol
from clbench.api.scenario import build_scenario
from clbench.config import compose, data_root
from clbench.protocol import RunSettings
from clbench.types import TASK_INCREMENTAL
from omegaconf import OmegaConf

from conftest import small_run_overrides
from probes import Probe
from synthetic import blob_scenario


def settings(tmp_path, **kw):
    return RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_validation_split_is_disjoint_seeded_and_test_never_seen(tmp_path):
    scenario = blob_scenario(n_exp=2, per_class=50)
    probe = Probe(info=scenario.info)
    protocol.run(scenario, probe, settings=settings(tmp_path, val_fraction=0.2))
    train, val = set(probe.train_ids), set(probe.validation_ids)
    assert train and val and not (train & val)
    assert len(val) == pytest.approx(0.2 * 200, abs=2) and train | val == set(range(200))
    assert all(i < 1_000_000 for i in train | val)  # test ids start at 1e6
    again = Probe(info=scenario.info)
    protocol.run(scenario, again, settings=settings(tmp_path, val_fraction=0.2))
    assert set(again.validation_ids) == val


def test_class_incremental_hides_task_ids(tmp_path):
    scenario = blob_scenario()
    probe = Probe(info=scenario.info)
    protocol.run(scenario, probe, settings=settings(tmp_path))
    assert probe.batch_tasks and all(t is None for t in probe.batch_tasks)
    assert all(t is None for t in probe.view_tasks + probe.info_tasks + probe.predict_tasks)
    assert probe.calls.count("begin") == 3


def test_task_incremental_shows_task_ids(tmp_path):
    scenario = blob_scenario(kind=TASK_INCREMENTAL)
    probe = Probe(info=scenario.info)
    protocol.run(scenario, probe, settings=settings(tmp_path))
    assert probe.view_tasks == [0, 1, 2] and probe.info_tasks == [0, 1, 2]
    assert {int(t[0]) for t in probe.batch_tasks} == {0, 1, 2}
    assert all(t is not None for t in probe.predict_tasks)


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
@pytest.mark.parametrize("name, visible", [("split_fmnist", False), ("split_fmnist_ti", True)])
def test_probe_sees_task_ids_only_where_shown(tmp_path, name, visible):
    cfg = compose(small_run_overrides(tmp_path, f"scenario={name}", train_per_class=20, test_per_class=5))
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
    probe = Probe(info=scenario.info)
    protocol.run(scenario, probe, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False))
    seen = probe.batch_tasks + probe.predict_tasks
    assert probe.batch_tasks
    if visible:
        assert all(t is not None for t in seen) and probe.view_tasks == [0, 1, 2, 3, 4]
    else:
        assert all(t is None for t in seen) and set(probe.view_tasks) == {None}
        assert not hasattr(probe, "task_id") and all(i is None for i in probe.info_tasks)
