"""Experience checkpoints and resume (clbench.protocol.checkpoints): a run killed at any point
continues from its last finished experience and ends with exactly the matrix of an
uninterrupted run; a resume with a changed config is refused naming the keys, nothing to
match names the runs there, a complete run is not resumed, a strategy with state outside its
state_dict is not resumed, a requeued SLURM job resumes by itself; config_diff ignores the
execution settings."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clbench.cli import main as cli_main
from clbench.protocol import checkpoints
from clbench.results.records import load

from probes import interrupt_after_row

pytestmark = pytest.mark.usefixtures("fmnist_available")


#: one thread and the same settings in every process: CPU results are then bit-identical
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline")


SMALL = ["scenario=split_fmnist", "logger=none", "progress=false", "device=cpu",
         "scenario.train_per_class=150", "scenario.test_per_class=40"]


STRATEGIES = {
    "naive": ["strategy=naive", "strategy.epochs=2"],
    "er": ["strategy=er", "strategy.epochs=2", "strategy.buffer_size=100"],
    "dkvb": ["strategy=dkvb", "strategy.epochs=25", "strategy.num_codebooks=8", "strategy.pairs_per_codebook=32",
             "strategy.key_init_steps=20"],
}


def _clbench(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clbench", "run", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _record(results: Path) -> dict | None:
    found = sorted(results.glob("runs/*/*/*.json"))
    if not found:
        return None
    try:
        return json.loads(found[0].read_text())
    except (OSError, ValueError):  # being replaced this very moment
        return None


def _stop_during_experience_3(proc: subprocess.Popen, results: Path, sig: int, timeout: float = 240) -> dict:
    """Send ``sig`` as soon as the checkpoint of experience 2 is saved (so: while
    experience 3 trains)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = _record(results)
        if rec and any((results / "checkpoints" / rec["run_id"]).glob("step-0002.pt")):
            proc.send_signal(sig)
            proc.wait(timeout=60)
            return rec
        if proc.poll() is not None:
            pytest.fail(f"the run ended before experience 3: {proc.stderr.read()[-2000:]}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the run never reached experience 3")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["naive", "er", "dkvb"])
def test_kill_9_during_experience_3_then_resume_auto_gives_the_same_matrix(tmp_path, name):
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    full = _clbench([*STRATEGIES[name], *SMALL, f"results_dir={full_dir}"])  # side by side: 2 cores
    killed = _clbench([*STRATEGIES[name], *SMALL, f"results_dir={killed_dir}"])
    seen = _stop_during_experience_3(killed, killed_dir, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert seen["status"] == "running" and seen["experiences_done"] < 5
    assert list((killed_dir / "checkpoints" / seen["run_id"]).glob("step-*.pt"))
    resumed = subprocess.run([sys.executable, "-m", "clbench", "run", *STRATEGIES[name], *SMALL,
                              f"results_dir={killed_dir}", "resume=auto"], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    assert full.wait(timeout=300) == 0, full.stderr.read()[-3000:]
    a, b = _record(full_dir), _record(killed_dir)
    assert b["run_id"] == seen["run_id"] and b["status"] == "complete"
    assert b["matrix"] == a["matrix"]  # exactly
    assert b["metrics"] == a["metrics"]
    (resumed_from,) = [r["from_step"] for r in b["extra"]["resumed"]]
    assert 2 <= resumed_from < 5
    assert not (killed_dir / "checkpoints" / b["run_id"]).exists()  # removed at completion


@pytest.mark.slow
def test_sigterm_ends_interrupted_with_a_checkpoint_and_resume_by_run_id_completes(tmp_path):
    args = [*STRATEGIES["naive"], *SMALL, f"results_dir={tmp_path}"]
    proc = _clbench(args)
    _stop_during_experience_3(proc, tmp_path, signal.SIGTERM)
    assert proc.returncode == 143
    rec = _record(tmp_path)
    assert rec["status"] == "interrupted" and "SIGTERM" in rec["error"]
    ckpt = sorted((tmp_path / "checkpoints" / rec["run_id"]).glob("step-*.pt"))
    assert [p.name for p in ckpt] == [f"step-{rec['experiences_done']:04d}.pt"]  # only the latest is kept
    payload = torch.load(ckpt[0], weights_only=True)  # tensors and plain data only
    assert payload["step"] == rec["experiences_done"]
    assert payload["strategy"]["_extra_state"]["stateful"]["optimizer"]["state"]  # SGD momentum buffers
    done = subprocess.run([sys.executable, "-m", "clbench", "run", *args, f"resume={rec['run_id']}",
                           "keep_checkpoints=true"], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    final = _record(tmp_path)
    assert final["status"] == "complete" and len(final["matrix"]) == 6 and final["error"] is None
    kept = sorted(p.name for p in (tmp_path / "checkpoints" / rec["run_id"]).glob("step-*.pt"))
    assert kept == [f"step-{k:04d}.pt" for k in range(rec["experiences_done"], 5)]  # keep_checkpoints: every one


def _small(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", *STRATEGIES["naive"], *SMALL, "scenario.train_per_class=40", "scenario.test_per_class=10",
            "strategy.epochs=1", f"results_dir={tmp_path}", *extra]


def test_resume_with_a_changed_config_is_refused_naming_the_keys(tmp_path, capsys, monkeypatch):
    interrupt_after_row(monkeypatch, 2)
    assert cli_main(_small(tmp_path)) == 143
    monkeypatch.undo()
    capsys.readouterr()
    assert cli_main(_small(tmp_path, "resume=auto", "strategy.lr=0.02", "scenario.test_per_class=12")) == 0
    out = capsys.readouterr()
    assert "no interrupted run of this config" in out.err  # auto: not that run, a new one
    run_id = next(p.name for p in (tmp_path / "checkpoints").iterdir() if (p / "meta.json").exists())
    assert cli_main(_small(tmp_path, f"resume={run_id}", "strategy.lr=0.02", "scenario.test_per_class=12")) == 2
    err = capsys.readouterr().err
    assert "strategy.lr: 0.01 -> 0.02" in err and "scenario.test_per_class: 10 -> 12" in err
    assert "differs from the checkpoint's in 2 key(s)" in err
    # execution-only settings may change
    assert cli_main(_small(tmp_path, f"resume={run_id}", "num_workers=0", "keep_checkpoints=true")) == 0
    assert load(next(tmp_path.glob(f"runs/*/*/{run_id}.json"))).status == "complete"


def test_resume_names_the_runs_there_when_nothing_matches(tmp_path, capsys):
    assert cli_main(_small(tmp_path, "resume=nope")) == 2
    err = capsys.readouterr().err
    assert "resume='nope': no checkpoint there" in err and "none" in err


def test_a_complete_run_is_not_resumed_and_leaves_no_checkpoint(tmp_path, capsys):
    assert cli_main(_small(tmp_path)) == 0
    assert not any((tmp_path / "checkpoints").glob("*/step-*.pt"))
    capsys.readouterr()
    assert cli_main(_small(tmp_path, "resume=auto")) == 0  # complete already: skipped, not run again (issue 25.2)
    assert len(list(tmp_path.glob("runs/*/*/*.json"))) == 1 and "already complete" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_strategy_whose_state_is_not_all_in_its_state_dict_is_not_resumed(tmp_path, capsys, monkeypatch):
    from strategies.baselines import Naive

    interrupt_after_row(monkeypatch, 1)
    assert cli_main(_small(tmp_path)) == 143
    monkeypatch.undo()
    monkeypatch.setattr(Naive, "resumable", False)
    run_id = next((tmp_path / "checkpoints").iterdir()).name
    assert cli_main(_small(tmp_path, f"resume={run_id}")) == 2
    assert "cannot be resumed" in capsys.readouterr().err


def test_a_requeued_slurm_job_resumes_by_itself(tmp_path, capsys, monkeypatch):
    interrupt_after_row(monkeypatch, 3)
    assert cli_main(_small(tmp_path)) == 143
    monkeypatch.undo()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert cli_main(_small(tmp_path)) == 0
    (path,) = tmp_path.glob("runs/*/*/*.json")
    record = load(path)
    assert record.status == "complete" and record.extra["resumed"][0]["from_step"] == 3


def test_config_diff_ignores_execution_settings_only():
    saved = {"seed": 0, "results_dir": "a", "resume": None, "strategy": {"lr": 0.1, "name": "er"}, "progress": True}
    current = {"seed": 1, "results_dir": "b", "resume": "auto", "strategy": {"lr": 0.1, "name": "er"}, "progress": False}
    assert checkpoints.config_diff(saved, current) == ["seed: 0 -> 1"]
