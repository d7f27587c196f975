"""Sweeps and resume (issue 16): wall time of a 2 strategies x 3 seeds sweep on
split_fmnist (reduced settings) run one job after the other vs 2 at a time (Hydra's joblib
launcher, Submitit's local executor); checkpoint size and save time per experience (er,
clr); what a resume costs (its setup time, and its wall time against the part of the run
it redoes).

    python bench/sweeps.py [--train-per-class 300] [--epochs 2] [--skip-submitit] [--json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline")


def clbench(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clbench", "run", *args], cwd=cwd, env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def records(root: Path) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in glob.glob(f"{root}/**/runs/*/*/*.json", recursive=True)]


def sweep_times(small: list[str], skip_submitit: bool) -> dict[str, float]:
    sweep = ["-m", "strategy=naive,er", "seed=0,1,2", "scenario=split_fmnist", *small]
    out = {}
    launchers = {"sequential (basic launcher)": [], "joblib, n_jobs=2": ["hydra/launcher=joblib",
                                                                         "hydra.launcher.n_jobs=2"]}
    if not skip_submitit:
        launchers["submitit_local (6 processes at once)"] = ["hydra/launcher=submitit_local"]
    for name, launcher in launchers.items():
        with tempfile.TemporaryDirectory() as tmp:
            out[name] = clbench(*launcher, *sweep, cwd=Path(tmp))
            assert len(records(Path(tmp))) == 6, f"{name}: not 6 records"
    return out


def checkpoint_costs(small: list[str]) -> dict[str, dict]:
    out = {}
    for name, scenario in (("er", "split_fmnist"), ("clr", "split_fmnist_ti")):
        with tempfile.TemporaryDirectory() as tmp:
            clbench(f"strategy={name}", f"scenario={scenario}", *small, f"results_dir={tmp}", "keep_checkpoints=true",
                    cwd=Path(tmp))
            (rec,) = records(Path(tmp))
            sizes = [p.stat().st_size for p in Path(tmp).glob("checkpoints/*/step-*.pt")]
            train = rec["timing"]["train_s"]
            out[name] = {"bytes": max(sizes), "save_s": rec["timing"]["checkpoint_s"],
                         "train_s_per_experience": sum(train) / len(train)}
    return out


def resume_cost(small: list[str]) -> dict:
    """Kill an er run when its checkpoint of experience 2 exists, resume it; compare."""
    args = ["strategy=er", "scenario=split_fmnist", *small]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        full = clbench(*args, f"results_dir={root}/full", cwd=root)
        proc = subprocess.Popen([sys.executable, "-m", "clbench", "run", *args, f"results_dir={root}/k"], cwd=root,
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not glob.glob(f"{root}/k/checkpoints/*/step-0002.pt"):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        resumed = clbench(*args, f"results_dir={root}/k", "resume=auto", cwd=root)
        (a,), (b,) = records(root / "full"), records(root / "k")
        assert a["matrix"] == b["matrix"], "resumed matrix differs"
        return {"full_s": full, "resume_s": resumed, "setup_s": b["extra"]["resumed"][0]["setup_s"],
                "from_step": b["extra"]["resumed"][0]["from_step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-submitit", action="store_true")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    small = ["logger=none", "progress=false", "device=cpu", f"strategy.epochs={ns.epochs}",
             f"scenario.train_per_class={ns.train_per_class}", "scenario.test_per_class=100"]
    print(f"machine: {os.cpu_count()} CPUs; settings: {' '.join(small)}")
    times = sweep_times(small, ns.skip_submitit)
    base = times["sequential (basic launcher)"]
    rows = []
    for name, t in times.items():
        print(f"sweep 2 strategies x 3 seeds, {name}: {t:.1f} s ({t / base:.2f}x sequential)")
        rows.append({"target": f"sweep 2x3, {name}", "measured": f"{t:.1f} s", "yardstick": f"sequential {base:.1f} s",
                     "ratio": round(t / base, 3), "limit": "< 1 with 2 workers on 2 cores" if t is not base else "",
                     "met": (t < base) if t is not base else None})
    for name, c in checkpoint_costs(small).items():
        mean_save = sum(c["save_s"]) / len(c["save_s"])
        ratio = mean_save / c["train_s_per_experience"]
        print(f"checkpoint {name}: {c['bytes'] / 1e6:.2f} MB, save {mean_save * 1e3:.1f} ms per experience "
              f"({ratio:.2%} of an experience's training)")
        rows.append({"target": f"checkpoint per experience, {name}", "measured": f"{c['bytes'] / 1e6:.2f} MB, "
                     f"{mean_save * 1e3:.1f} ms", "yardstick": f"training {c['train_s_per_experience']:.2f} s/exp",
                     "ratio": round(ratio, 4), "limit": "", "met": None})
    r = resume_cost(small)
    print(f"resume of er from experience {r['from_step']}: {r['resume_s']:.1f} s wall (setup {r['setup_s']:.3f} s) "
          f"vs {r['full_s']:.1f} s for the whole run; matrices identical")
    rows.append({"target": "resume overhead (er, from experience 2 of 5)", "measured": f"setup {r['setup_s']:.3f} s, "
                 f"wall {r['resume_s']:.1f} s", "yardstick": f"whole run {r['full_s']:.1f} s",
                 "ratio": round(r["resume_s"] / r["full_s"], 3), "limit": "", "met": None})
    if ns.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
