"""End-to-end runs on real Fashion-MNIST subsets through the CLI's code path."""
import pytest

from clbench import protocol
from clbench.cli.launch import run_from_config
from clbench.config import compose, data_root
from clbench.api.scenario import build_scenario
from omegaconf import OmegaConf

from conftest import small_run_overrides
from probes import Probe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fmnist_available")]


def run(tmp_path, *overrides, **kw):
    return run_from_config(compose(small_run_overrides(tmp_path, *overrides, **kw)))


def test_naive_forgets_joint_does_not_er_between(tmp_path):
    # A fixed class order that keeps Fashion-MNIST's upper-body cluster (T-shirt, Pullover,
    # Coat, Shirt) in the last two experiences: then what joint "forgets" is training noise,
    # not new confusable classes arriving.
    common = ("scenario=split_fmnist", "seed=0", "scenario.class_order=[1,8,5,7,9,3,0,2,4,6]",
              "strategy.epochs=3", "strategy.optimizer=adam", "strategy.lr=0.001", "strategy.batch_size=32")
    fgt = {}
    for name in ("naive", "joint", "er"):
        extra = ("strategy.buffer_size=200",) if name == "er" else ()
        record, _ = run(tmp_path, f"strategy={name}", *common, *extra, train_per_class=250, test_per_class=60)
        assert record.status == "complete" and len(record.matrix) == 6
        fgt[name] = record.metrics["FGT"]
    assert fgt["naive"] > 0.5, fgt
    assert fgt["joint"] < 0.1, fgt
    assert fgt["joint"] < fgt["er"] < fgt["naive"], fgt


def test_same_seed_same_matrix_other_seed_other_order(tmp_path):
    a, _ = run(tmp_path, "strategy=naive", "seed=3")
    b, _ = run(tmp_path, "strategy=naive", "seed=3")
    c, _ = run(tmp_path, "strategy=naive", "seed=4")
    assert a.matrix == b.matrix and a.scenario["class_order"] == b.scenario["class_order"]
    assert c.scenario["class_order"] != a.scenario["class_order"]


def test_seed_zero_class_order_is_documented(tmp_path):
    cfg = compose(small_run_overrides(tmp_path, "scenario=split_fmnist", "seed=0"))
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
    assert scenario.class_order == [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]  # README and class_incremental.py say so
    assert [e.classes for e in scenario.experiences] == [(4, 6), (2, 7), (3, 5), (9, 0), (8, 1)]


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


def test_wandb_offline_run_holds_both_matrices(tmp_path):
    import json

    record, _ = run(tmp_path, "strategy=naive", "logger=wandb", train_per_class=20, test_per_class=10)
    where = record.environment["logs"]["WandbLogger"]
    tables = {}
    for f in (tmp_path / "wandb").rglob("*.table.json"):
        assert str(f).startswith(where)
        tables[f.name.split("_table")[0].rsplit("_", 2)[0]] = json.loads(f.read_text())
    acc, fgt = tables["accuracy_matrix"], tables["forgetting_matrix"]
    assert [row[1:] for row in acc["data"]] == record.matrix  # JSON round trip of the same floats
    assert acc["columns"] == ["after", "exp_1", "exp_2", "exp_3", "exp_4", "exp_5"]
    assert len(fgt["data"]) == 5 and fgt["data"][4][1] == pytest.approx(record.forgetting_matrix[4][0])
    assert list((tmp_path / "wandb").rglob("*.wandb")), "the offline run log itself is missing"


def test_wandb_failure_warns_and_record_is_written(tmp_path, monkeypatch):
    import wandb

    def broken(*a, **k):
        raise RuntimeError("wandb is down")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(RuntimeWarning, match="wandb is down"):
        record, path = run(tmp_path, "strategy=naive", "logger=wandb", train_per_class=20, test_per_class=10)
    assert record.status == "complete" and path.exists()
