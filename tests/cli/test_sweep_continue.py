"""Continuing and surviving sweeps (issue 25): `hydra.sweep.dir=<folder> resume=auto` skips the
jobs that are complete (and says so), a single `resume=auto` run of a complete config does not
train again, and a joblib worker killed mid-sweep costs only its own job."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clbench.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("fmnist_available")

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline")
TINY = ["strategy=naive", "strategy.epochs=1", "scenario=split_fmnist", "logger=none", "progress=false",
        "device=cpu", "scenario.train_per_class=30", "scenario.test_per_class=8"]


def _records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("runs/*/*/*.json"))]


def test_continuing_a_sweep_skips_its_complete_jobs_and_says_so(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert cli_main(["run", "-m", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}"]) == 0
    (lost,) = [p for p in sweep.glob("runs/*/*/*.json") if json.loads(p.read_text())["seed"] == 1]
    lost.unlink()  # job 1 as if the sweep had been killed before it ran
    capsys.readouterr()
    assert cli_main(["run", "-m", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}", "resume=auto"]) == 0
    out = capsys.readouterr()
    assert sorted(r["seed"] for r in _records(sweep)) == [0, 1]  # job 0 not run again
    assert "already complete" in out.err
    assert "sweep: 2 job(s), 2 complete (1 skipped: already complete), 0 not" in out.out
    marker = json.loads((sweep / "0" / "clbench_job.json").read_text())
    assert marker["exit"] == 0 and marker["skipped"] == "already complete" and marker["record"]


def test_resume_auto_of_a_complete_config_does_not_train_again(tmp_path, capsys):
    args = ["run", *TINY, f"results_dir={tmp_path}"]
    assert cli_main(args) == 0
    capsys.readouterr()
    assert cli_main([*args, "resume=auto"]) == 0
    err = capsys.readouterr().err
    (path,) = tmp_path.glob("runs/*/*/*.json")
    assert "already complete" in err and str(path.name) in err
    assert cli_main([*args, "resume=auto", "seed=1"]) == 0  # another config: a new run
    assert len(_records(tmp_path)) == 2


@pytest.mark.slow
def test_a_killed_joblib_worker_costs_only_its_own_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "clbench", "run", "-m", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2", "seed=0,1,2", *TINY, "scenario.train_per_class=60",
                             f"hydra.sweep.dir={sweep}"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    victim, deadline = None, time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for rec in _records(sweep) if sweep.is_dir() else []:
            if rec["status"] == "running" and rec["pid"] != proc.pid:
                victim = rec
                os.kill(rec["pid"], signal.SIGKILL)
                break
        time.sleep(0.02)
    assert victim is not None, "no job was seen running"
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "sweep: 3 job(s), 2 complete, 1 not" in out
    assert "lost" in out and f"seed={victim['seed']}" in out.split("lost", 1)[1].splitlines()[0]
    by_seed = {r["seed"]: r for r in _records(sweep)}
    assert sorted(by_seed) == [0, 1, 2]
    assert [by_seed[s]["status"] for s in sorted(by_seed) if s != victim["seed"]] == ["complete", "complete"]
    assert by_seed[victim["seed"]]["status"] == "interrupted"  # resume=auto continues it
