"""Runs that stop on a full disk or on numbers out of float range end in one line (issue 25):
a full disk at a record or checkpoint write leaves the run `interrupted`, so resume=auto
continues it once there is space; strategy.lr=1e300 ends as `failed` naming the key."""
from __future__ import annotations

import errno
import json
import os

import pytest
from clbench.cli import main as cli_main
from clbench.results import records

pytestmark = pytest.mark.usefixtures("fmnist_available")

TINY = ["strategy=naive", "strategy.epochs=1", "scenario=split_fmnist", "logger=none", "progress=false",
        "device=cpu", "scenario.train_per_class=30", "scenario.test_per_class=8"]


def _run(results, *extra: str) -> int:
    return cli_main(["run", *TINY, f"results_dir={results}", *extra])


def _record(results) -> records.RunRecord:
    (path,) = results.glob("runs/*/*/*.json")
    return records.load(path)


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def _full_disk(monkeypatch, part: str, call: int = 1) -> None:
    """``os.fsync`` raises ENOSPC, as a full disk would, once: on the ``call``-th file whose
    path contains ``part``."""
    original, calls = os.fsync, []

    def fsync(fd):
        if part in os.readlink(f"/proc/self/fd/{fd}"):
            calls.append(1)
            if len(calls) == call:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_at_a_checkpoint_write_stops_the_run_interrupted_and_resumable(tmp_path, capsys, monkeypatch):
    _full_disk(monkeypatch, ".step-0002.pt.")  # the checkpoint of row 2
    code = _run(tmp_path)
    err = capsys.readouterr().err
    assert code != 0 and len(_lines(err)) == 1, err
    assert "disk full" in err and "step-0002.pt" in err and "resume=auto" in err
    record = _record(tmp_path)
    assert record.status == "interrupted" and "disk full" in record.error
    monkeypatch.undo()
    assert _run(tmp_path, "resume=auto") == 0
    record = _record(tmp_path)
    assert record.status == "complete" and record.extra["resumed"][0]["from_step"] == 1


def test_a_full_disk_at_a_record_write_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    records.save(records.RunRecord(run_id="r-1", created="2026-01-01T00:00:00+00:00", seed=0, scenario={"name": "toy"},
                                   strategy={"name": "naive"}, config={}, matrix=[]), tmp_path)
    (path,) = tmp_path.glob("runs/*/*/*.json")
    before = path.read_text()
    _full_disk(monkeypatch, ".r-1.json.")
    rec = records.load(path)
    rec.matrix = [[1.0]]
    with pytest.raises(records.DiskFullError) as info:
        records.save(rec, tmp_path)
    assert "\n" not in str(info.value) and "disk full" in str(info.value) and str(path) in str(info.value)
    assert path.read_text() == before and not list(path.parent.glob(".*.tmp"))
    monkeypatch.undo()
    _full_disk(monkeypatch, "/runs/", call=2)  # the record saved after row 2
    code = _run(tmp_path / "run")
    err = capsys.readouterr().err
    assert code != 0 and len(_lines(err)) == 1 and "disk full" in err, err
    assert _record(tmp_path / "run").status == "interrupted"


def test_a_learning_rate_beyond_float_range_ends_failed_in_one_line(tmp_path, capsys):
    code = _run(tmp_path, "strategy.lr=1e300")
    err = capsys.readouterr().err
    assert code == 1 and len(_lines(err)) == 1, err
    assert "strategy.lr" in err and "1e+300" in err
    record = _record(tmp_path)
    assert record.status == "failed" and "strategy.lr" in record.error
    assert json.loads(next(tmp_path.glob("runs/*/*/*.json")).read_text())["status"] == "failed"
