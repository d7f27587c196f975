"""End to end against Avalanche: `clbench run strategy=naive scenario=split_fmnist seed=0`
and the same work as a plain Avalanche 0.6 `Naive` script (bench/avalanche_naive.py),
each as a whole process, paired and interleaved (the order alternates each repeat).
Prints both wall times (median of the repeats), both final accuracies and the ratio
clbench / Avalanche (target <= 0.67, accuracy within 1 point).

    python bench/vs_avalanche.py [--repeats 3] [--train-per-class N] [--json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = 0.67
#: clbench's opt-in speed-ups (numerics change in the last bits; the default stays bit-identical to the references)
FAST = ["channels_last=true", "eval_batch_size=128"]


def clbench_exe() -> list[str]:
    exe = Path(sys.executable).with_name("clbench")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "clbench"]


def run_clbench(tmp: str, extra: list[str], seed: int = 0) -> tuple[float, float, dict]:
    """One whole ``clbench run`` of naive on split_fmnist: wall seconds, final ACC, train/eval seconds."""
    out = tempfile.mkdtemp(dir=tmp)
    cmd = clbench_exe() + ["run", "strategy=naive", "scenario=split_fmnist", f"seed={seed}", "logger=none",
                           "progress=false", f"results_dir={out}"] + extra
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"clbench failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    record = json.loads(Path(glob.glob(f"{out}/runs/**/*.json", recursive=True)[0]).read_text())
    timing = record["timing"]
    return wall, record["metrics"]["ACC"], {"train_s": sum(timing["train_s"]), "eval_s": sum(timing["eval_s"])}


def run_avalanche(extra: list[str]) -> tuple[float, float, dict]:
    cmd = [sys.executable, str(HERE / "avalanche_naive.py")] + extra
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"avalanche script failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, facts["ACC"], {"train_s": facts["train_s"], "eval_s": facts["eval_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-per-class", type=int, default=None, help="subsample both runs (quick look)")
    ap.add_argument("--json", action="store_true", help="last stdout line: the bench rows as JSON")
    ap.add_argument("--fast", action="store_true", help=f"also clbench with the opt-in speed-ups ({' '.join(FAST)})")
    args = ap.parse_args()
    cl_extra, av_extra = [], []
    if args.train_per_class:
        cl_extra.append(f"scenario.train_per_class={args.train_per_class}")
        av_extra.append(f"--train-per-class={args.train_per_class}")
    ours, theirs, fast = [], [], []
    env = os.environ.get("OMP_NUM_THREADS", "default")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            pair = [("clbench", lambda: run_clbench(tmp, cl_extra)), ("avalanche", lambda: run_avalanche(av_extra))]
            if args.fast:
                pair.insert(1, ("fast", lambda: run_clbench(tmp, cl_extra + FAST)))
            if r % 2:
                pair.reverse()
            got = {name: fn() for name, fn in pair}
            ours.append(got["clbench"])
            theirs.append(got["avalanche"])
            if args.fast:
                fast.append(got["fast"])
                print(f"repeat {r}: clbench {' '.join(FAST)} {got['fast'][0]:.1f}s (train {got['fast'][2]['train_s']:.1f}s, "
                      f"eval {got['fast'][2]['eval_s']:.1f}s) ACC {got['fast'][1]:.4f}", flush=True)
            print(f"repeat {r}: clbench {got['clbench'][0]:.1f}s (train {got['clbench'][2]['train_s']:.1f}s, eval "
                  f"{got['clbench'][2]['eval_s']:.1f}s) ACC {got['clbench'][1]:.4f} | avalanche {got['avalanche'][0]:.1f}s "
                  f"(train {got['avalanche'][2]['train_s']:.1f}s, eval {got['avalanche'][2]['eval_s']:.1f}s) "
                  f"ACC {got['avalanche'][1]:.4f}", flush=True)
    ratios = [o[0] / a[0] for o, a in zip(ours, theirs)]
    o_wall, a_wall = statistics.median(o[0] for o in ours), statistics.median(a[0] for a in theirs)
    o_acc, a_acc = statistics.median(o[1] for o in ours), statistics.median(a[1] for a in theirs)
    ratio = statistics.median(ratios)
    print(f"end to end, median of {args.repeats} paired runs (OMP_NUM_THREADS={env}): clbench {o_wall:.1f}s "
          f"ACC {o_acc:.4f}; avalanche {a_wall:.1f}s ACC {a_acc:.4f}; ratio clbench/avalanche {ratio:.3f} "
          f"(per pair: {', '.join(f'{x:.3f}' for x in ratios)}; target <= {TARGET}), accuracy gap "
          f"{100 * abs(o_acc - a_acc):.2f} points (target <= 1)")
    fast_rows = []
    if fast:
        f_ratio = statistics.median(f[0] / a[0] for f, a in zip(fast, theirs))
        f_wall, f_acc = statistics.median(f[0] for f in fast), statistics.median(f[1] for f in fast)
        print(f"with {' '.join(FAST)} (opt-in): clbench {f_wall:.1f}s ACC {f_acc:.4f}; ratio clbench/avalanche "
              f"{f_ratio:.3f}; accuracy gap {100 * abs(f_acc - a_acc):.2f} points")
        fast_rows = [{"target": f"end to end vs Avalanche, opt-in {' '.join(FAST)}", "measured": f"{f_wall:.1f}s "
                      f"(ACC {f_acc:.4f})", "yardstick": f"Avalanche 0.6 script {a_wall:.1f}s (ACC {a_acc:.4f})",
                      "ratio": round(f_ratio, 3), "limit": f"<= {TARGET}, ACC within 1 point",
                      "met": f_ratio <= TARGET and abs(f_acc - a_acc) <= 0.01}]
    if args.json:
        rows = fast_rows + [
            {"target": "end to end vs Avalanche Naive (split_fmnist, naive, seed 0)", "measured": f"{o_wall:.1f}s",
             "yardstick": f"Avalanche 0.6 script {a_wall:.1f}s", "ratio": round(ratio, 3), "limit": f"<= {TARGET}",
             "met": ratio <= TARGET},
            {"target": "same final accuracy as Avalanche", "measured": f"ACC {o_acc:.4f}",
             "yardstick": f"ACC {a_acc:.4f}", "ratio": None, "limit": "within 1 point",
             "met": abs(o_acc - a_acc) <= 0.01},
        ]
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
