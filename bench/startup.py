"""Start-up times of the ``clbench`` command, whole processes (issue 17's start-up targets).

- a refused ``clbench run`` (unknown strategy / scenario / backbone / logger, unknown key,
  a value of the wrong type, a value out of range): under 1 s;
- ``clbench list``: under 2 s;
- the quickstart run (``clbench run strategy=naive scenario=split_fmnist seed=0
  logger=none progress=false``) reaches its first training step within 2 s of process
  start, not counting the data decoding (building the scenario) nor the evaluation of
  row 0 (the accuracy matrix's row before any training; evaluation, not start-up).

Each is the median of ``--repeats`` processes (default 5) after one warm-up process (it
writes the config index, ``clbench.config.index``, if it is stale: the first command
after an install or an edit takes the full load, about 2-3 s). The ratio is measured
time / limit (met: <= 1).

How the first training step is seen without changing the run: the quickstart process is
``python -c PRELUDE run ...``, where PRELUDE (below) only installs an import hook and
then calls ``clbench.cli.main`` as the ``clbench`` script does. After ``clbench.api.strategy``
is imported, the hook wraps ``clbench.api.strategy._reporting`` (the wrapper every
strategy's ``observe`` gets when its class is made), so that the first call of any
``observe`` writes the timeline and ends the process (``os._exit``: the bench needs no
more than the first step); after ``clbench.api.scenario`` and ``clbench.protocol``, it wraps
``build_scenario`` and ``Session.evaluate_row`` to time the data decoding and row 0. The
start is taken in this process just before the child is spawned, so interpreter start-up
counts.

    python bench/startup.py [--repeats 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
REFUSAL_LIMIT_S = 1.0
LIST_LIMIT_S = 2.0
FIRST_STEP_LIMIT_S = 2.0

#: (command-line arguments after `clbench run`, a word its message must contain)
REFUSALS = [
    (["strategy=nope"], "'nope'"),
    (["scenario=nope"], "'nope'"),
    (["backbone=nope"], "'nope'"),
    (["logger=nope"], "'nope'"),
    (["strategy=er", "strategy.bogus=1"], "'bogus'"),
    (["scenario.bogus=1"], "'bogus'"),
    (["strategy.epochs=abc"], "abc"),
    (["strategy.epochs=0"], "strategy.epochs=0"),
]
QUICKSTART = ["strategy=naive", "scenario=split_fmnist", "seed=0", "logger=none", "progress=false"]

PRELUDE = r'''
import importlib.abc, json, os, sys, time
_OUT = os.environ["CLBENCH_BENCH_TIMELINE"]
_T = {"build_scenario_s": 0.0, "row0_eval_s": 0.0}

def _first_step():
    _T["first_step"] = time.time()
    _T["modules"] = sorted(m for m in ("torchvision", "timm", "avalanche", "wandb", "matplotlib", "sklearn")
                           if m in sys.modules)
    _T["plugin_modules"] = sorted(m for m in sys.modules if m.startswith(("strategies.", "scenarios.")))
    with open(_OUT, "w") as f:
        json.dump(_T, f)
    os._exit(0)

def _patch_strategy(mod):
    original = mod._reporting
    def _reporting(observe):
        wrapped = original(observe)
        def first(self, batch):
            _first_step()
        first._reports_steps = True
        return first
    mod._reporting = _reporting

def _timed(fn, key):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            _T[key] += time.perf_counter() - t
    return wrapper

def _patch_scenario(mod):
    mod.build_scenario = _timed(mod.build_scenario, "build_scenario_s")

def _patch_protocol(mod):
    session = getattr(mod, "Session", None)
    if session is not None and hasattr(session, "evaluate_row"):
        original = session.evaluate_row
        def evaluate_row(self, step, *a, **k):
            if step != 0:
                return original(self, step, *a, **k)
            t = time.perf_counter()
            try:
                return original(self, step, *a, **k)
            finally:
                _T["row0_eval_s"] += time.perf_counter() - t
        session.evaluate_row = evaluate_row

_PATCHES = {"clbench.api.strategy": _patch_strategy, "clbench.api.scenario": _patch_scenario,
            "clbench.protocol": _patch_protocol}
#: imports whose time is reported (inclusive of what they import themselves)
_TIMED = ("torch", "torch._dynamo", "torchvision", "wandb", "hydra", "strategies", "scenarios")

def _noop(module):
    pass

class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in _PATCHES and name not in _TIMED:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                loader, patch = spec.loader, _PATCHES.get(name, _noop)
                run = loader.exec_module
                def exec_module(module, run=run, patch=patch, name=name):
                    t = time.perf_counter()
                    run(module)
                    _T.setdefault("imports_s", {})[name] = time.perf_counter() - t
                    patch(module)
                loader.exec_module = exec_module
                return spec
        return None

sys.meta_path.insert(0, _Hook())
sys.argv = ["clbench", *sys.argv[1:]]
from clbench.cli import main
sys.exit(main())
'''


def timed(cmd: list[str], env: dict, cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    return time.perf_counter() - t, out


def clbench(*args: str) -> list[str]:
    return [PYTHON, "-c", "import sys; from clbench.cli import main; sys.exit(main())", *args]


def measure_refusal(args: list[str], word: str, repeats: int, env: dict, cwd: str) -> dict:
    timed(clbench("run", *args), env, cwd)  # warm-up (writes a stale index)
    walls = []
    for _ in range(repeats):
        wall, out = timed(clbench("run", *args), env, cwd)
        if out.returncode != 2 or word not in out.stderr:
            raise SystemExit(f"clbench run {' '.join(args)}: expected a refusal naming {word}, got rc "
                             f"{out.returncode}: {out.stderr[-500:]}")
        walls.append(wall)
    return {"args": args, "median_s": statistics.median(walls), "walls": walls, "message": out.stderr.strip()}


def measure_list(repeats: int, env: dict, cwd: str) -> dict:
    timed(clbench("list"), env, cwd)
    walls = []
    for _ in range(repeats):
        wall, out = timed(clbench("list"), env, cwd)
        if out.returncode != 0 or "strategies" not in out.stdout:
            raise SystemExit(f"clbench list failed: {out.stderr[-500:]}")
        walls.append(wall)
    return {"median_s": statistics.median(walls), "walls": walls}


def measure_first_step(repeats: int, env: dict, cwd: str) -> dict:
    runs = []
    for i in range(repeats + 1):  # the first is the warm-up
        with tempfile.TemporaryDirectory() as tmp:
            timeline = Path(tmp) / "timeline.json"
            e = dict(env, CLBENCH_BENCH_TIMELINE=str(timeline))
            cmd = [PYTHON, "-c", PRELUDE, "run", *QUICKSTART, f"results_dir={tmp}/results"]
            t0 = time.time()
            out = subprocess.run(cmd, capture_output=True, text=True, env=e, cwd=cwd, timeout=900)
            if out.returncode != 0 or not timeline.exists():
                raise SystemExit(f"the quickstart run did not reach a training step (rc {out.returncode}): "
                                 f"{out.stderr[-1500:]}")
            t = json.loads(timeline.read_text())
        total = t["first_step"] - t0
        if i:
            runs.append({"to_first_step_s": total, "build_scenario_s": t["build_scenario_s"],
                         "row0_eval_s": t["row0_eval_s"], "imports_s": t.get("imports_s", {}),
                         "startup_s": total - t["build_scenario_s"] - t["row0_eval_s"],
                         "heavy_modules": t["modules"], "plugin_modules": t["plugin_modules"]})
    med = {k: statistics.median(r[k] for r in runs) for k in ("to_first_step_s", "build_scenario_s", "row0_eval_s",
                                                               "startup_s")}
    names = sorted({k for r in runs for k in r["imports_s"]})
    med["imports_s"] = {k: statistics.median(r["imports_s"].get(k, 0.0) for r in runs) for k in names}
    return {**med, "runs": runs, "heavy_modules": runs[-1]["heavy_modules"], "plugin_modules": runs[-1]["plugin_modules"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="last stdout line: the bench rows as JSON")
    ap.add_argument("--skip-run", action="store_true", help="only the refusals and clbench list")
    args = ap.parse_args()
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    cwd = tempfile.mkdtemp(prefix="clbench-startup-")
    rows = []

    def row(target: str, seconds: float, limit: float, extra: str = "") -> None:
        ratio = seconds / limit
        rows.append({"target": target, "measured": f"{seconds:.2f} s{extra}", "yardstick": f"limit {limit:g} s",
                     "ratio": round(ratio, 3), "limit": "<= 1", "met": ratio <= 1})
        print(f"{target:<70} {seconds:6.2f} s  (limit {limit:g} s, ratio {ratio:.2f})", flush=True)

    print(f"median of {args.repeats} processes after a warm-up; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
    for refusal, word in REFUSALS:
        r = measure_refusal(refusal, word, args.repeats, env, cwd)
        row(f"refusal: clbench run {' '.join(refusal)}", r["median_s"], REFUSAL_LIMIT_S)
    r = measure_list(args.repeats, env, cwd)
    row("clbench list", r["median_s"], LIST_LIMIT_S)
    if not args.skip_run:
        r = measure_first_step(args.repeats, env, cwd)
        print(f"  quickstart: process start to first step {r['to_first_step_s']:.2f} s, of which scenario build "
              f"(data decoding) {r['build_scenario_s']:.2f} s and row-0 evaluation {r['row0_eval_s']:.2f} s; "
              f"heavy modules imported: {', '.join(r['heavy_modules']) or 'none'}; plugin modules: "
              f"{', '.join(r['plugin_modules'])}; import times (median, inclusive): "
              f"{', '.join(f'{k} {v:.2f} s' for k, v in r['imports_s'].items())}", flush=True)
        row("quickstart run: process start to first training step (excl. data decoding, row-0 eval)",
            r["startup_s"], FIRST_STEP_LIMIT_S,
            f" (all {r['to_first_step_s']:.2f} s: data {r['build_scenario_s']:.2f} s, row 0 {r['row0_eval_s']:.2f} s)")
    if args.json:
        print(json.dumps({"rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
