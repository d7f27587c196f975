"""The protocol on a synthetic stream: matrix shape, row 0, splits, visibility."""
import pytest
import torch

from clbench import protocol

from clbench.results import records
from clbench.protocol import IncompatibleError, RunSettings
from clbench.types import TASK_AGNOSTIC, TASK_INCREMENTAL

from probes import Probe
from synthetic import blob_scenario


def settings(tmp_path, **kw):
    return RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_matrix_shape_row_zero_and_record(tmp_path):
    scenario = blob_scenario(n_exp=3)
    record, path = protocol.run(scenario, Probe(info=scenario.info), settings=settings(tmp_path))
    assert len(record.matrix) == 4 and all(len(r) == 3 for r in record.matrix)
    assert record.status == "complete" and record.experiences_done == 3
    assert len(record.union_accuracy) == 3 and len(record.timing["train_s"]) == 3
    # class-incremental: nothing is seen before training, later experiences are masked out
    assert record.matrix[0] == [0.0, 0.0, 0.0] and record.matrix[1][1:] == [0.0, 0.0]
    # the probe predicts the first allowed class: half of exp 1 (classes 0, 1) is right after step 1
    assert record.matrix[1][0] == 0.5
    assert path.exists() and records.load(path).matrix == record.matrix


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


def test_task_agnostic_has_no_boundary_calls(tmp_path):
    scenario = blob_scenario(kind=TASK_AGNOSTIC)
    probe = Probe(info=scenario.info)
    record, _ = protocol.run(scenario, probe, settings=settings(tmp_path))
    assert set(probe.calls) == {"observe"} and all(t is None for t in probe.batch_tasks)
    assert probe.view_tasks == [] and len(record.matrix) == 4


def test_incompatible_pairing_refused_before_training(tmp_path):
    class NeedsTasks(Probe):
        needs = frozenset({"task_id_test"})
        kinds = frozenset({TASK_INCREMENTAL, "class_incremental"})

    scenario = blob_scenario()
    probe = NeedsTasks(info=scenario.info)
    with pytest.raises(IncompatibleError, match=r"needs \['task_id_test'\].*runs on scenario kinds: \['task_incremental'\]"):
        protocol.run(scenario, probe, settings=settings(tmp_path))
    assert probe.calls == [] and not list(tmp_path.rglob("*.json"))


def test_failure_keeps_completed_rows(tmp_path):
    class Crashes(Probe):
        def end_experience(self):
            super().end_experience()
            if self.calls.count("end") == 2:
                raise RuntimeError("boom")

    scenario = blob_scenario()
    with pytest.raises(RuntimeError, match="boom"):
        protocol.run(scenario, Crashes(info=scenario.info), settings=settings(tmp_path))
    (path,) = records.find(tmp_path)
    saved = records.load(path)
    assert saved.status == "failed" and "boom" in saved.error
    assert saved.experiences_done == 1 and len(saved.matrix) == 2


def test_params_added_per_experience_counted(tmp_path):
    class Grows(Probe):
        def end_experience(self):
            super().end_experience()
            setattr(self, f"head{len(self.calls)}", torch.nn.Linear(2, 3))  # 9 parameters

    scenario = blob_scenario()
    record, _ = protocol.run(scenario, Grows(info=scenario.info), settings=settings(tmp_path))
    assert [a["total"] for a in record.params["added"]] == [9, 9, 9]
