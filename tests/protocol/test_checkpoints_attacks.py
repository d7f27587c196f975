"""Resume under attack (issue 25): a crafted run id deletes nothing outside the results folder,
meta.json's record path works from another working directory, a claim held by a dead process
on another host is recoverable (lease, SLURM requeue, resume_force=true), claim() is exclusive
across processes, a damaged or hostile checkpoint ends in one line (falling back to an earlier
one, never chosen again), resume=<a file that is no checkpoint> says so, and the leftovers of
killed runs are cleaned by the next run in that results folder."""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch

from clbench.cli import main as cli_main
from clbench.protocol import checkpoints, claims
from clbench.results import records

from probes import interrupt_after_row

pytestmark = pytest.mark.usefixtures("fmnist_available")

TINY = ["strategy=naive", "strategy.epochs=1", "scenario=split_fmnist", "logger=none", "progress=false",
        "device=cpu", "scenario.train_per_class=30", "scenario.test_per_class=8"]


def _run(results: Path, *extra: str) -> int:
    return cli_main(["run", *TINY, f"results_dir={results}", *extra])


def _interrupted(results: Path, row: int, *extra: str) -> None:
    """A run of TINY under ``results`` that stops as SIGTERM would right after row ``row``."""
    with pytest.MonkeyPatch.context() as mp:
        interrupt_after_row(mp, row)
        assert _run(results, *extra) == 143


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """A results folder holding one run interrupted after row 2, with the checkpoints of rows
    1 and 2 (keep_checkpoints=true)."""
    results = tmp_path_factory.mktemp("interrupted") / "results"
    _interrupted(results, 2, "keep_checkpoints=true")
    return results


def _copy(interrupted: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the interrupted results folder and its run's checkpoint folder."""
    results = tmp_path / "results"
    shutil.copytree(interrupted, results)
    (ckpt,) = (results / "checkpoints").iterdir()
    return results, ckpt


def _record(results: Path) -> records.RunRecord:
    (path,) = results.glob("runs/*/*/*.json")
    return records.load(path)


def _errors(err: str) -> list[str]:
    """The error lines of stderr (``resuming from ...`` is information), and never a traceback."""
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if ln.startswith("clbench: error")]


# -- 1. a crafted run id --------------------------------------------------------------------------

def test_a_checkpoint_whose_run_id_climbs_out_of_the_results_folder_deletes_nothing(interrupted, tmp_path, capsys):
    results, ckpt = _copy(interrupted, tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    step = ckpt / "step-0002.pt"
    payload = torch.load(step, weights_only=True)
    record = json.loads(payload["record"])
    record["run_id"] = payload["run_id"] = "../../victim"
    payload["record"] = json.dumps(record)
    torch.save(payload, step)
    capsys.readouterr()
    assert _run(results, "resume=auto") == 0  # the crafted checkpoint is set aside: resumed from step 1
    err = capsys.readouterr().err
    assert "'../../victim' is not a valid run id" in err and "falling back to step-0001.pt" in err
    assert (victim / "precious.txt").read_text() == "keep me"
    assert _record(results).extra["resumed"][0]["from_step"] == 1
    assert not (results / "checkpoints").exists()  # its own checkpoint folder removed at completion, nothing else


def test_remove_deletes_only_a_checkpoint_folder_this_run_created(tmp_path):
    results = tmp_path / "results"
    mine = checkpoints.checkpoint_dir(results, "r-1")
    mine.mkdir(parents=True)
    records.write_json_atomic(mine / "meta.json", {"run_id": "r-1"})
    (mine / "step-0001.pt").write_bytes(b"x")
    other = checkpoints.checkpoint_dir(results, "r-2")
    other.mkdir()
    (other / "meta.json").write_text(json.dumps({"run_id": "someone-else"}))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "meta.json").write_text(json.dumps({"run_id": "r-3"}))
    link = checkpoints.checkpoint_dir(results, "r-3")
    link.symlink_to(outside, target_is_directory=True)
    for run_id, where in (("r-2", other), ("r-3", link), ("r-3", outside), ("r-1", other)):
        assert not checkpoints.remove(where, run_id, results)
    assert (other / "meta.json").exists() and (outside / "meta.json").exists()
    with pytest.raises(checkpoints.ResumeError, match="not a valid run id"):
        checkpoints.checkpoint_dir(results, "../outside")
    assert checkpoints.remove(mine, "r-1", results) and not mine.exists()


def test_a_run_id_that_is_not_one_is_refused_where_it_enters(tmp_path, capsys):
    for bad in ("../x", "a/b", "..", "", "x" * 200, "a\nb"):
        assert not records.valid_run_id(bad)
    rec = records.RunRecord(run_id="../../evil", created="2026-01-01T00:00:00+00:00", seed=0,
                            scenario={"name": "toy"}, strategy={"name": "naive"}, config={}, matrix=[])
    with pytest.raises(records.RecordError, match="not a valid run id"):
        records.record_path(tmp_path, rec)
    rec.run_id, rec.strategy = "ok", {"name": "../../evil"}
    with pytest.raises(records.RecordError, match="strategy name"):
        records.record_path(tmp_path, rec)
    assert _run(tmp_path, "resume=../no-such-folder-h25/x") == 2
    assert "not a run id" in capsys.readouterr().err


# -- 3. meta.json from another working directory ----------------------------------------------------

def test_resume_auto_from_another_working_directory_continues_the_run(tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    _interrupted(Path("results"), 2)  # the default: a results_dir relative to the working directory
    (meta,) = (first / "results" / "checkpoints").glob("*/meta.json")
    assert json.loads(meta.read_text())["record_path"].startswith("runs/")  # results_dir-relative
    monkeypatch.chdir(second)
    capsys.readouterr()
    assert _run(first / "results", "resume=auto") == 0
    assert "resuming from" in capsys.readouterr().err
    record = _record(first / "results")
    assert record.status == "complete" and record.extra["resumed"][0]["from_step"] == 2
    assert not list((first / "results").glob("checkpoints/*"))


# -- 4. claims across hosts -------------------------------------------------------------------------

def _claim_file(ckpt: Path, host: str, age_s: float, **extra) -> None:
    (ckpt / "claim").write_text(json.dumps({"pid": 12345, "host": host, "heartbeat": time.time() - age_s, **extra}))


def test_a_claim_on_another_host_is_held_until_its_lease_expires_or_resume_force(tmp_path):
    ckpt = tmp_path / "checkpoints" / "r-1"
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text(json.dumps({"run_id": "r-1"}))
    _claim_file(ckpt, "node-that-crashed", age_s=5)
    with pytest.raises(checkpoints.ResumeError) as info:
        claims.claim(ckpt)
    message = str(info.value)
    assert "node-that-crashed" in message and "lease" in message and "resume_force=true" in message
    assert "taken over" in claims.claim(ckpt, force=True)
    assert claims.holder(ckpt)["pid"] == os.getpid()
    claims.release(ckpt)
    _claim_file(ckpt, "node-that-crashed", age_s=claims.LEASE_S + 60)
    assert "lease expired" in claims.claim(ckpt)
    claims.release(ckpt)
    _claim_file(ckpt, socket.gethostname(), age_s=0, pid=os.getppid())  # a live process on this host
    with pytest.raises(checkpoints.ResumeError, match="still running"):
        claims.claim(ckpt, force=True)


def test_a_requeued_slurm_job_takes_over_the_claim_of_its_own_earlier_run(tmp_path, monkeypatch):
    ckpt = tmp_path / "checkpoints" / "r-1"
    ckpt.mkdir(parents=True)
    _claim_file(ckpt, "node-a", age_s=5, slurm={"job": "777", "restart": 0})
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert "requeued" in claims.claim(ckpt)


def test_a_run_killed_on_another_host_is_resumed_once_its_lease_expired(interrupted, tmp_path, capsys):
    results, ckpt = _copy(interrupted, tmp_path)
    (path,) = results.glob("runs/*/*/*.json")
    data = json.loads(path.read_text())
    data.update(status="running", host="node-that-crashed", pid=4242, error=None)  # killed there by a node crash
    path.write_text(json.dumps(data))
    _claim_file(ckpt, "node-that-crashed", age_s=5)
    capsys.readouterr()
    assert _run(results, "resume=auto") == 2  # its lease is fresh: it may still run there
    err = capsys.readouterr().err
    assert "node-that-crashed" in err and "resume_force=true" in err and len(_errors(err)) == 1
    _claim_file(ckpt, "node-that-crashed", age_s=claims.LEASE_S + 60)
    assert _run(results, "resume=auto") == 0
    err = capsys.readouterr().err
    assert "lease expired" in err and "resuming from" in err
    assert _record(results).status == "complete"


# -- 5. claim() is exclusive -----------------------------------------------------------------------

def _claimer(directory: str, start, done, results) -> None:
    start.wait()
    try:
        claims.claim(Path(directory))
        results.put("claimed")
    except checkpoints.ResumeError:
        results.put("refused")
    done.wait()  # stay alive (a dead claimer's claim may be taken over) until every process tried


def test_claim_is_exclusive_among_processes_started_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 4
    for trial in range(6):
        directory = tmp_path / f"run-{trial}"
        start, done, results = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_claimer, args=(str(directory), start, done, results)) for _ in range(n)]
        for p in procs:
            p.start()
        outcomes = sorted(results.get(timeout=60) for _ in range(n))
        for p in procs:
            p.join(timeout=60)
        assert outcomes == ["claimed"] + ["refused"] * (n - 1), f"trial {trial}: {outcomes}"


# -- 8. a damaged or hostile checkpoint ------------------------------------------------------------

class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(interrupted, tmp_path, capsys):
    results, ckpt = _copy(interrupted, tmp_path)
    (ckpt / "step-0002.pt").write_bytes(b"\0" * 100)  # e.g. a disk error
    capsys.readouterr()
    assert _run(results, "resume=auto") == 0
    err = capsys.readouterr().err
    assert "step-0002.pt" in err and "falling back" in err
    record = _record(results)
    assert record.status == "complete" and record.extra["resumed"][0]["from_step"] == 1


def test_a_hostile_checkpoint_ends_in_one_line_and_is_never_chosen_again(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "results"
    _interrupted(results, 1)
    (ckpt,) = (results / "checkpoints").iterdir()
    with open(ckpt / "step-0001.pt", "wb") as f:
        pickle.dump({"format": 1, "run_id": ckpt.name, "evil": _Evil()}, f)
    capsys.readouterr()
    assert _run(results, "resume=auto") == 2
    err = capsys.readouterr().err
    assert len(_errors(err)) == 1 and "step-0001.pt" in err and "rm " in err
    assert not (tmp_path / "pwned").exists()
    assert _run(results, "resume=auto") == 0  # not chosen again: a new run
    assert "no interrupted run of this config" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


# -- 10. resume= a file that is no checkpoint -------------------------------------------------------

def test_resume_of_a_file_that_is_not_a_checkpoint_says_so(tmp_path, capsys):
    not_one = tmp_path / "passwd"
    not_one.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert _run(tmp_path / "results", f"resume={not_one}") == 2
    err = capsys.readouterr().err
    assert "not a clbench checkpoint" in err and "differs" not in err and len(_errors(err)) == 1


# -- 11. leftovers of killed runs --------------------------------------------------------------------

def test_the_next_run_cleans_what_killed_runs_left_and_nothing_else(interrupted, tmp_path, capsys):
    results, ckpt = _copy(interrupted, tmp_path)
    (record_path,) = results.glob("runs/*/*/*.json")
    stale = record_path.parent / f".{record_path.name}.k3x_9a2b.tmp"  # a kill during the record's write
    stale.write_text('{"half": ')
    ckpt_tmp = ckpt / ".step-0003.pt.ab12cd34.tmp"
    ckpt_tmp.write_bytes(b"half a checkpoint")
    users = [record_path.parent / ".notes.json.tmp", record_path.parent / "mine.tmp", ckpt.parent / "README"]
    for f in users:
        f.write_text("the user's")
    young = record_path.parent / f".{record_path.name}.young123.tmp"  # may be being written right now
    young.write_text("{")
    old = time.time() - records.TEMP_GRACE_S - 60
    for f in (stale, ckpt_tmp, *users):
        os.utime(f, (old, old))
    # a second run, killed just after its record was saved complete (its checkpoint folder stays)
    done = json.loads(record_path.read_text())
    done.update(run_id="20260101T000000-s0-000000", status="complete")
    records.write_json_atomic(record_path.with_name(f"{done['run_id']}.json"), done)
    left = checkpoints.checkpoint_dir(results, done["run_id"])
    shutil.copytree(ckpt, left)
    meta = json.loads((left / "meta.json").read_text())
    meta["run_id"], meta["config"]["keep_checkpoints"], meta["keep_checkpoints"] = done["run_id"], False, False
    (left / "meta.json").write_text(json.dumps(meta))
    for f in left.glob(".*.tmp"):
        f.unlink()
    capsys.readouterr()
    assert _run(results, "scenario.test_per_class=9") == 0  # another config: a new run beside them
    assert not stale.exists() and not ckpt_tmp.exists() and not left.exists()
    assert all(f.read_text() == "the user's" for f in users) and young.exists()
    assert sorted(p.name for p in ckpt.glob("step-*.pt")) == ["step-0001.pt", "step-0002.pt"]  # resumable: kept
    assert "cleaned" in capsys.readouterr().err
