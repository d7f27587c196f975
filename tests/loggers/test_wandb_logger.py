"""The W&B logger (clbench.loggers.wandb_logger): a failed or interrupted run closes its W&B run
with the partial matrices, exit code, group, tags, summary and loss curves; a complete run
exits 0; an offline run on real Fashion-MNIST holds both matrices; a W&B failure warns and
the record is still written."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clbench.cli.launch import run_from_config
from clbench.config import compose

from conftest import small_run_overrides
from handmade_records import make_record


class _FakeRun:
    def __init__(self, tmp: Path, **kw) -> None:
        self.kw, self.logged, self.summary, self.metrics, self.exit_code = kw, [], {}, [], "open"
        self.dir = str(tmp / "wandb" / "offline-run-20261126_000000-x" / "files")

    def define_metric(self, name, step_metric=None, **kw):
        self.metrics.append((name, step_metric))

    def log(self, data, step=None):
        self.logged.append(data)

    def finish(self, exit_code=None):
        self.exit_code = exit_code


@pytest.fixture
def fake_wandb(tmp_path, monkeypatch):
    import types

    import wandb

    runs = []

    def init(**kw):
        runs.append(_FakeRun(tmp_path, **kw))
        return runs[-1]

    fake = types.SimpleNamespace(init=init, Settings=lambda **kw: kw, Table=wandb.Table, Image=lambda fig: "img")
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return runs


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_a_failed_or_interrupted_run_closes_its_wandb_run_with_partial_matrices(fake_wandb, tmp_path, status):
    from clbench.loggers import wandb_logger
    from clbench.loggers.wandb_logger import WandbLogger

    T = 5
    rec = make_record("naive", 0, deviations=["epochs=1 (paper: 5)"], status=status,
                      matrix=[[0.0] * T, [0.9, 0, 0, 0, 0], [0.5, 0.8, 0, 0, 0]])
    rec.scenario["num_experiences"] = T
    rec.error = "RuntimeError: non-finite loss at experience 3, step 12"
    lg = WandbLogger(dir=str(tmp_path))
    lg.start(rec)
    lg.log_steps(10, {"loss": 0.5})
    lg.log_steps(20, {"train/loss": 0.25})
    lg.log_row(1, rec.matrix[1], rec)
    where = lg.finish(rec)
    (run,) = fake_wandb
    assert run.exit_code == 1 and run.summary["status"] == status and "non-finite" in run.summary["error"]
    tables = [d for d in run.logged if "accuracy_matrix" in d][0]
    acc, fgt = tables["accuracy_matrix"], tables["forgetting_matrix"]
    assert len(acc.columns) == T + 1 and all(len(r) == T + 1 for r in acc.data) and len(acc.data) == 3
    assert len(fgt.data) == 2 and fgt.data[1][1] == pytest.approx(0.4)  # F[2][1] = R[1][1] - R[2][1] = 0.9 - 0.5
    from clbench.results.leaderboard.collect import config_id, config_key

    assert run.kw["group"] == f"toy/naive/{config_id(config_key(rec))}"
    assert "class_incremental" in run.kw["tags"] and "deviations" in run.kw["tags"]
    assert {"train/loss": 0.5, "train/global_step": 10} in run.logged
    assert {"train/loss": 0.25, "train/global_step": 20} in run.logged
    assert ("train/*", "train/global_step") in run.metrics and ("acc/*", "experience") in run.metrics
    assert run.summary["params/total"] == 100 and run.summary["timing/train_s_total"] == 5.0
    assert wandb_logger.location_line(where).endswith(f"wandb sync {where})")
    wandb_logger.FINISHED.clear()


def test_a_complete_run_finishes_with_exit_code_0(fake_wandb, tmp_path):
    from clbench.loggers import wandb_logger
    from clbench.loggers.wandb_logger import WandbLogger

    lg = WandbLogger(dir=str(tmp_path))
    rec = make_record()
    lg.start(rec)
    lg.finish(rec)
    assert fake_wandb[0].exit_code == 0 and fake_wandb[0].summary["ACC"] == pytest.approx(1.6 / 3)
    wandb_logger.FINISHED.clear()


def run(tmp_path, *overrides, **kw):
    return run_from_config(compose(small_run_overrides(tmp_path, *overrides, **kw)))


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
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


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_wandb_failure_warns_and_record_is_written(tmp_path, monkeypatch):
    import wandb

    def broken(*a, **k):
        raise RuntimeError("wandb is down")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(RuntimeWarning, match="wandb is down"):
        record, path = run(tmp_path, "strategy=naive", "logger=wandb", train_per_class=20, test_per_class=10)
    assert record.status == "complete" and path.exists()
