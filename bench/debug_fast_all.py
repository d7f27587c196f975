"""`debug=fast` is a smoke run of every strategy in under a minute: `clbench run
strategy=NAME debug=fast` for every registered strategy (on the scenario `clbench list
NAME` uses), each as a whole process; prints its wall and CPU seconds (CPU: robust to a
shared machine) and whether it completed, then the slowest.

    python bench/debug_fast_all.py [--strategies er dkvb ...] [--limit 60]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", nargs="*", default=None, help="default: every registered strategy")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds a smoke run may take")
    args = ap.parse_args()
    from clbench.api.strategy import STRATEGIES
    from clbench.cli.debug import default_scenario
    from clbench.config import load_plugins

    load_plugins()
    names = args.strategies or sorted(n for n in STRATEGIES.names() if not n.startswith("_"))
    exe = Path(sys.executable).with_name("clbench")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            scenario = default_scenario(name)
            cmd = [str(exe), "run", f"strategy={name}", f"scenario={scenario}", "debug=fast", "device=cpu",
                   f"results_dir={tmp}/{name}"]
            before = os.times()
            t = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t
            after = os.times()
            cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
            ok = proc.returncode == 0
            rows.append((name, wall, cpu, ok))
            why = "" if ok else ": " + ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1][:200]
            print(f"{name:<20} {scenario:<16} wall {wall:6.1f}s cpu {cpu:6.1f}s {'ok' if ok else 'FAILED'}{why}",
                  flush=True)
    slow = max(rows, key=lambda r: r[2])
    over = [r[0] for r in rows if r[2] > args.limit]
    print(f"{sum(r[3] for r in rows)}/{len(rows)} completed; slowest (CPU) {slow[0]} {slow[2]:.1f}s; "
          f"over {args.limit:.0f} CPU s: {over or 'none'} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')})")


if __name__ == "__main__":
    main()
