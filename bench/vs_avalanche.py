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
#: the standard path (the default until the fast one, channels_last at evaluation batch 128, matched its accuracy)
STANDARD = ["channels_last=false", "eval_batch_size=512"]


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
    ap.add_argument("--standard", action="store_true",
                    help=f"also clbench on the standard path ({' '.join(STANDARD)})")
    args = ap.parse_args()
    cl_extra, av_extra = [], []
    if args.train_per_class:
        cl_extra.append(f"scenario.train_per_class={args.train_per_class}")
        av_extra.append(f"--train-per-class={args.train_per_class}")
    ours, theirs, standard = [], [], []
    env = os.environ.get("OMP_NUM_THREADS", "default")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            pair = [("clbench", lambda: run_clbench(tmp, cl_extra)), ("avalanche", lambda: run_avalanche(av_extra))]
            if args.standard:
                pair.insert(1, ("standard", lambda: run_clbench(tmp, cl_extra + STANDARD)))
            if r % 2:
                pair.reverse()
            got = {name: fn() for name, fn in pair}
            ours.append(got["clbench"])
            theirs.append(got["avalanche"])
            if args.standard:
                got_s = got["standard"]
                standard.append(got_s)
                print(f"repeat {r}: clbench {' '.join(STANDARD)} {got_s[0]:.1f}s (train {got_s[2]['train_s']:.1f}s, "
                      f"eval {got_s[2]['eval_s']:.1f}s) ACC {got_s[1]:.4f}", flush=True)
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
    standard_rows = []
    if standard:
        s_ratio = statistics.median(f[0] / a[0] for f, a in zip(standard, theirs))
        s_wall, s_acc = statistics.median(f[0] for f in standard), statistics.median(f[1] for f in standard)
        print(f"with {' '.join(STANDARD)} (standard path): clbench {s_wall:.1f}s ACC {s_acc:.4f}; ratio "
              f"clbench/avalanche {s_ratio:.3f}; accuracy gap {100 * abs(s_acc - a_acc):.2f} points")
        standard_rows = [{"target": f"end to end vs Avalanche, standard path {' '.join(STANDARD)}",
                          "measured": f"{s_wall:.1f}s (ACC {s_acc:.4f})",
                          "yardstick": f"Avalanche 0.6 script {a_wall:.1f}s (ACC {a_acc:.4f})",
                          "ratio": round(s_ratio, 3), "limit": "a reference, no target", "met": None}]
    if args.json:
        rows = standard_rows + [
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
