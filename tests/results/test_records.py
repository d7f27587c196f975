"""Run records: atomic writes, round trip, validation that names the bad file."""
import json

import pytest

from clbench.results import records
from clbench.cli import main
from clbench.results.records import RecordError, RunRecord


def make_record(**kw) -> RunRecord:
    base = dict(
        run_id="r1", created="2026-01-01T00:00:00+00:00", seed=0,
        scenario={"name": "split_fmnist", "kind": "class_incremental"},
        strategy={"name": "naive", "config": {"lr": 0.01}}, config={"seed": 0},
        matrix=[[0.1, 0.1], [0.9, 0.0], [0.5, 0.8]], union_accuracy=[0.9, 0.65],
        metrics={"ACC": 0.65, "AIA": 0.775, "FGT": 0.4, "BWT": -0.4, "FWT": None}, status="complete",
        experiences_done=2,
    )
    base.update(kw)
    return RunRecord(**base)


def test_round_trip(tmp_path):
    rec = make_record()
    path = records.save(rec, tmp_path)
    assert path == tmp_path / "runs" / "split_fmnist" / "naive" / "r1.json"
    assert records.load(path).to_dict() == rec.to_dict()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_truncated_record_is_reported_with_its_path(tmp_path, capsys):
    path = records.save(make_record(), tmp_path)
    path.write_text(path.read_text()[:50])
    with pytest.raises(RecordError, match=str(path)):
        records.load(path)
    assert main(["show", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("matrix"), "missing fields"),
    (lambda d: d.update(schema_version=99), "schema version 99"),
    (lambda d: d.update(status="weird"), "status 'weird'"),
    (lambda d: d.update(seed="zero"), "'seed' should be int"),
])
def test_schema_violations_are_named(tmp_path, mutate, message):
    data = make_record().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=message):
        records.load(path)


def test_failed_write_leaves_old_record_intact(tmp_path, monkeypatch):
    path = records.save(make_record(), tmp_path)
    before = path.read_text()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records.os, "fsync", full_disk)
    with pytest.raises(records.RecordWriteError, match="No space left on device") as info:
        records.save(make_record(metrics={"ACC": 0.1}), tmp_path)
    assert str(path) in str(info.value) and "unchanged" in str(info.value) and "\n" not in str(info.value)
    assert path.read_text() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_nan_is_saved_as_null_and_flagged(tmp_path):
    path = records.save(make_record(metrics={"ACC": float("nan"), "AIA": 0.5}), tmp_path)
    data = json.loads(path.read_text())
    assert data["metrics"] == {"ACC": None, "AIA": 0.5} and data["nonfinite"] == ["metrics.ACC"]


def test_show_prints_matrix_and_metrics(tmp_path, capsys):
    path = records.save(make_record(), tmp_path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy matrix" in out and "65.00" in out and "80.00" in out


@pytest.mark.parametrize("run_id", ["er+fpf-toy-s0-123", "20261202T195837-s0-0ea00d", "kfpf_kd.v2", "a=b@c"])
def test_run_ids_with_record_names_are_accepted(run_id, tmp_path):
    from handmade_records import make_record as handmade

    path = records.save(handmade("er+fpf", run_id=run_id), tmp_path)
    assert path.name == f"{run_id}.json" and records.inside(tmp_path, path)


@pytest.mark.parametrize("run_id", ["../victim", "/etc/passwd", "a/b", "a\\b", "a\0b", "..", ".", "", "a\rb", "-x"])
def test_run_ids_that_leave_the_results_folder_are_refused(run_id, tmp_path):
    assert not records.valid_run_id(run_id)
    with pytest.raises(RecordError, match="not a valid run id"):
        records.save(make_record(run_id=run_id), tmp_path)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))


def test_resume_force_is_a_harness_key_that_never_splits_rows():
    from clbench.results.leaderboard.collect import config_id, config_key
    from clbench.settings import harness_keys

    assert "resume_force" in harness_keys()
    plain = make_record(config={"seed": 0, "strategy": {"name": "naive"}})
    forced = make_record(config={"seed": 0, "strategy": {"name": "naive"}, "resume_force": True, "resume": "auto"})
    assert config_key(plain) == config_key(forced) and config_id(config_key(plain)) == config_id(config_key(forced))
