"""Every performance target of issue 17 in one table: runs each bench script as a
subprocess with ``--json`` (the script's last stdout line is ``{"rows": [...]}``, each
row ``target, measured, yardstick, ratio, limit, met``), then prints the machine and the
table. A script that does not exist is skipped; one that fails is listed as failed.

    python bench/run_all.py [--quick] [--only vs_avalanche,overhead,...] [--markdown]

``--quick`` runs reduced repeats and sizes (a few minutes on two cores); the full run
takes about half an hour (vs_avalanche alone: 3 x two whole runs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: script -> (full arguments, quick arguments)
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "vs_avalanche": (["--repeats", "3", "--standard"], ["--repeats", "1", "--train-per-class", "300", "--standard"]),
    "overhead": (["--repeats", "3", "--epochs", "1", "--variants", "channels_last"],
                 ["--repeats", "2", "--train-per-class", "300"]),
    "eval_throughput": (["--repeats", "3", "--eval-batch-sizes", "512,256,128", "--channels-last"],
                        ["--repeats", "2", "--quick", "--eval-batch-sizes", "512,128", "--channels-last"]),
    "setup_phases": (["--repeats", "3"], ["--repeats", "1", "--quick"]),
    "startup": ([], ["--repeats", "2"]),
    "sweeps": ([], ["--train-per-class", "100", "--epochs", "1", "--skip-submitit"]),  # issue 16
}


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{gpu}, Python {platform.python_version()}")


def run_script(name: str, args: list[str]) -> tuple[list[dict], str]:
    path = HERE / f"{name}.py"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(path), *args, "--json"], cwd=HERE.parent, capture_output=True, text=True)
    took = time.perf_counter() - t
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return [], f"failed (exit {proc.returncode}) after {took:.0f}s: {' | '.join(tail)}"
    try:
        rows = json.loads(lines[-1])["rows"]
    except (ValueError, KeyError) as err:
        return [], f"no JSON rows on the last line ({err})"
    return rows, f"{took:.0f}s"


def fmt_ratio(r) -> str:
    return "-" if r is None else f"{r:.3g}"


def fmt_met(m) -> str:
    return {True: "yes", False: "NO", None: "-"}[m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced repeats and sizes (a few minutes)")
    ap.add_argument("--only", default="", help="comma-separated script names (default: all)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    args = ap.parse_args()
    names = [n for n in (args.only.split(",") if args.only else SCRIPTS) if n]
    table: list[dict] = []
    notes: list[str] = []
    for name in names:
        if name not in SCRIPTS:
            raise SystemExit(f"unknown bench script {name!r}; valid choices: {sorted(SCRIPTS)}")
        if not (HERE / f"{name}.py").exists():
            notes.append(f"{name}: skipped (bench/{name}.py does not exist)")
            continue
        print(f"running bench/{name}.py ...", file=sys.stderr, flush=True)
        rows, status = run_script(name, SCRIPTS[name][1 if args.quick else 0])
        notes.append(f"{name}: {status}")
        table += [{**r, "script": name} for r in rows]
    print(f"machine: {machine()}")
    print(f"mode: {'quick (reduced repeats and sizes)' if args.quick else 'full'}; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    head = ["script", "target", "measured", "yardstick", "ratio", "limit", "met?"]
    body = [[r["script"], r["target"], r["measured"], r["yardstick"], fmt_ratio(r.get("ratio")), r["limit"],
             fmt_met(r.get("met"))] for r in table]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in body:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body)] if body else [len(h) for h in head]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for row in body:
            print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
