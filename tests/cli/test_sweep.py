"""Sweeps on Hydra's launchers (clbench.cli.sweep): Submitit's local executor end to end, SLURM's
sbatch script rendered without a cluster, per-sweep folders, refusals before launch."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clbench.cli import main as cli_main

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline")
TINY = ["scenario=split_fmnist", "logger=none", "progress=false", "device=cpu", "strategy.epochs=1",
        "scenario.train_per_class=40", "scenario.test_per_class=10"]


def _sweep_dirs(results: Path) -> list[Path]:
    return sorted(p for p in (results / "sweeps").iterdir() if p.is_dir())


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_a_sweep_of_4_jobs_through_submitit_local(tmp_path):
    """Submitit's real local executor: each job a process of its own."""
    out = subprocess.run([sys.executable, "-m", "clbench", "run", "-m", "hydra/launcher=submitit_local",
                          "strategy=naive,er", "seed=0,1", *TINY, f"results_dir={tmp_path}/r"],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (sweep,) = _sweep_dirs(tmp_path / "r")
    assert (sweep / ".submitit").is_dir()  # really launched by Submitit
    markers = sorted(sweep.glob("*/clbench_job.json"))
    assert len(markers) == 4 and all(json.loads(m.read_text())["exit"] == 0 for m in markers)
    records = [json.loads(Path(json.loads(m.read_text())["record"]).read_text()) for m in markers]
    assert sorted((r["strategy"]["name"], r["seed"]) for r in records) == [("er", 0), ("er", 1), ("naive", 0),
                                                                           ("naive", 1)]
    assert all(r["status"] == "complete" for r in records)
    assert "sweep: 4 job(s), 4 complete, 0 not" in out.stdout
    assert f"leaderboard of this sweep (clbench leaderboard {sweep})" in out.stdout
    board = out.stdout.split("leaderboard of this sweep", 1)[1]
    rows = [ln for ln in board.splitlines() if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    assert len(rows) == 2 and all("| 2 |" in ln for ln in rows)  # two rows, n = 2 seeds each
    assert len(list((tmp_path / "r").glob("runs/*/*/*.json"))) == 4  # results_dir= given: the records go there


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_two_sweeps_at_once_into_one_results_dir_keep_everything(tmp_path):
    """Each sweep gets a folder of its own; records and job folders never collide."""
    procs = [subprocess.Popen([sys.executable, "-m", "clbench", "run", "-m", "strategy=naive", "seed=0,1", *TINY],
                              cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        assert "sweep: 2 job(s), 2 complete" in out
    sweeps = _sweep_dirs(tmp_path / "results")
    assert len(sweeps) == 2
    for sweep in sweeps:  # records live in the sweep's folder (no results_dir= given)
        assert len(list(sweep.glob("runs/split_fmnist/naive/*.json"))) == 2
        assert len(list(sweep.glob("*/clbench_job.json"))) == 2
    assert cli_main(["leaderboard", str(sweeps[0]), "--format", "csv"]) == 0


@pytest.mark.usefixtures("fmnist_available")
def test_a_job_that_fails_is_reported_and_the_sweep_goes_on(tmp_path, capsys):
    code = cli_main(["run", "-m", "strategy=clr,naive", *TINY, f"results_dir={tmp_path}"])
    out = capsys.readouterr()
    assert code == 1
    assert "sweep: 2 job(s), 1 complete, 1 not" in out.out
    assert "exit 2 (refused): strategy=clr" in out.out
    assert "does not support class_incremental" in out.err
    (sweep,) = _sweep_dirs(tmp_path)
    assert [json.loads(m.read_text())["exit"] for m in sorted(sweep.glob("*/clbench_job.json"))] == [2, 0]


def test_a_sweep_over_strategies_with_keys_of_their_own_is_refused_with_the_forms_that_work(tmp_path, capsys):
    code = cli_main(["run", "-m", "strategy=naive,er", "strategy.buffer_size=200", "seed=0,1",
                     f"results_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "strategy 'naive' has no key 'buffer_size'" in err
    assert "clbench run -m strategy=naive seed=0,1" in err  # naive's own sweep, without the key
    assert "clbench run -m strategy=er strategy.buffer_size=200 seed=0,1" in err
    assert "experiment=" in err
    assert not (tmp_path / "sweeps").exists()  # refused before any job


def test_the_slurm_launcher_config_composes_and_renders_an_sbatch_script(tmp_path, monkeypatch):
    """hydra/launcher=slurm (ours, on hydra-submitit-launcher's submitit_slurm): the script
    Submitit would hand to sbatch, rendered by Submitit itself; no cluster needed."""
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf, open_dict

    from clbench.config import CONF_DIR, store_configs

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")  # Submitit checks that srun exists
    (fake / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    store_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90",
                                 "hydra.launcher.array_parallelism=4", "strategy=er", "seed=0"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    with open_dict(cfg):
        cfg.hydra.job.name = "clbench"
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    # as hydra-submitit-launcher's launch() builds its executor
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit X", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --signal=USR2@120", "#SBATCH --open-mode=append"):
        assert line in script, line
    assert f"{tmp_path}/sweep/.submitit" in script
    assert params["array_parallelism"] == 4


def test_a_slurm_sweep_where_there_is_no_slurm_is_refused_with_what_works_here(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert cli_main(["run", "-m", "hydra/launcher=slurm", "seed=0,1", f"results_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "no `sbatch`" in err and "hydra/launcher=joblib" in err
    assert not (tmp_path / "sweeps").exists()
