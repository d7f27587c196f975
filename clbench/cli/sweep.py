"""Sweeps (``clbench run -m ...``) on Hydra's launchers: the basic one, joblib, Submitit.

- Before anything is launched, a sweep whose ``strategy.<key>`` overrides do not fit
  every swept strategy is refused, with the per-strategy commands that do fit.
- Each sweep gets its own folder, ``<results_dir>/sweeps/<time>-<id>`` (two sweeps never
  share one); each job leaves a marker in its job folder (its overrides, exit status and
  record) and, unless ``results_dir=`` was given, writes its record into the sweep folder.
- When every job has ended, :class:`SweepSummary` (a Hydra callback, in the launching
  process) prints where the records are and the leaderboard of exactly that sweep.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from clbench.cli.joblib_jobs import MARKER  # torch- and hydra-free at import; joblib_jobs never imports this module


# -- before launching -------------------------------------------------------------------------

def _parse(args: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])


def _values(override: Any) -> list[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    return [str(override.value())]


def check_strategy_keys(args: list[str]) -> list[str]:
    """Problems of a sweep whose ``strategy.<key>=`` overrides do not exist in every swept
    strategy: one message, with the commands (one per strategy) that would run."""
    try:
        overrides = _parse(args)
    except Exception:  # noqa: BLE001 - a malformed override: Hydra says what is wrong
        return []
    strategies: list[str] = ["naive"]
    keys: dict[str, str] = {}
    for o in overrides:
        key = o.key_or_group
        if key in ("experiment", "+experiment"):
            return []  # experiments pick their strategies and settings; each job composes its own
        if key == "strategy":
            strategies = _values(o)
        elif key.startswith("strategy.") and not o.is_add() and not o.is_delete():
            keys[key.split(".")[1]] = key
    if not keys or len(strategies) < 2:
        return []  # one strategy: composition refuses an unknown key as for a single run
    from clbench.config.finder import option_keys  # torch-free (the config index; else the full load)

    known = {s: option_keys("strategy", s) for s in strategies}
    if any(v is None for v in known.values()):
        return []  # an unknown strategy: refused with its valid choices when composed
    lacking = {s: [k for k in keys if k not in known[s]] for s in strategies}
    lacking = {s: ks for s, ks in lacking.items() if ks}
    if not lacking:
        return []
    lines = ["a sweep over strategies with keys of their own: "
             + "; ".join(f"strategy {s!r} has no key {', '.join(repr(k) for k in ks)}" for s, ks in lacking.items())
             + ". Sweep each strategy with its own keys:"]
    for s in strategies:
        kept = [a for a in args if not _is_key(a, "strategy")
                and not any(_is_key(a, keys[k]) for k in lacking.get(s, []))]
        lines.append("    clbench run " + " ".join(_with_strategy(kept, s)))
    lines.append("  or put each strategy's settings in an experiment config (clbench/conf/experiment/, e.g. "
                 "reference/split_fmnist_er.yaml) and sweep those: "
                 "clbench run -m experiment=reference/split_fmnist_naive,reference/split_fmnist_er seed=0,1,2")
    return ["\n".join(lines)]


def check_launcher(args: list[str]) -> list[str]:
    """A SLURM launcher where there is no SLURM (no ``sbatch``): refused before launching,
    instead of Submitit's error from inside Hydra."""
    import shutil

    launcher = next((a.split("=", 1)[1] for a in args if _is_key(a, "hydra/launcher")), None)
    if launcher in ("slurm", "submitit_slurm") and shutil.which("sbatch") is None:
        return [f"hydra/launcher={launcher} submits to SLURM, but this machine has no `sbatch` (not a SLURM login "
                "node); run the sweep here with hydra/launcher=joblib hydra.launcher.n_jobs=N or "
                "hydra/launcher=submitit_local"]
    return []


def _is_key(arg: str, key: str) -> bool:
    return arg.split("=", 1)[0].lstrip("+~") == key


def _with_strategy(args: list[str], name: str) -> list[str]:
    flags = [a for a in args if a.startswith("-")]
    rest = [a for a in args if not a.startswith("-")]
    return [*flags, f"strategy={name}", *rest]


def with_sweep_dir(args: list[str]) -> list[str]:
    """``args`` plus ``hydra.sweep.dir=<results_dir>/sweeps/<time>-<id>`` unless one is given:
    a folder of its own for each sweep."""
    if any(_is_key(a, "hydra.sweep.dir") for a in args):
        return args
    results = next((a.split("=", 1)[1] for a in args if _is_key(a, "results_dir")), "results")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return [*args, f"hydra.sweep.dir={results}/sweeps/{stamp}-{uuid.uuid4().hex[:6]}"]


# -- in each job --------------------------------------------------------------------------

def run_job(cfg: Any) -> int:
    """One job of a sweep (or a Hydra-launched single run): run it, leave the marker."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from clbench.cli.launch import execute

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    given = [o.split("=", 1)[0].lstrip("+~") for o in hydra_cfg.overrides.task]
    if multirun and "results_dir" not in given:
        with open_dict(cfg):
            cfg.results_dir = str(hydra_cfg.sweep.dir)  # the sweep's records stay together
    done: dict = {}
    out = Path(hydra_cfg.runtime.output_dir)
    if multirun:  # a start marker: a job whose process dies is found by it (clbench.cli.joblib_jobs)
        from clbench.results.records import write_json_atomic

        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / MARKER, {"overrides": list(hydra_cfg.overrides.task), "exit": None, "record": None,
                                         "status": "running", "pid": os.getpid(), "results_dir": str(cfg.results_dir)})
    code = execute(cfg, on_record=done.update)
    if multirun:
        write_json_atomic(out / MARKER, {"overrides": list(hydra_cfg.overrides.task), "exit": code,
                                         "record": done.get("path"), "status": done.get("status"),
                                         "skipped": done.get("skipped")})
    return code


# -- after the sweep --------------------------------------------------------------------------

#: exit status of the last sweep of this process (0: every job complete)
LAST_SWEEP: dict = {}


class SweepSummary(Callback):
    """At the end of a sweep: one line per job that did not complete (or was skipped as
    already complete), where the records are, and the leaderboard of exactly this sweep.
    At its start, a joblib sweep is made to survive a killed job (``clbench.cli.joblib_jobs``)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from clbench.cli import joblib_jobs

        if str(config.hydra.launcher.get("_target_", "")) == joblib_jobs.TARGET:
            joblib_jobs.install()

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = []
        for marker in sorted(sweep_dir.glob(f"*/{MARKER}"), key=lambda p: _num(p.parent.name)):
            try:
                jobs.append(json.loads(marker.read_text()))
            except (OSError, ValueError):
                continue
        bad = [j for j in jobs if j.get("exit") != 0]
        skipped = [j for j in jobs if j.get("exit") == 0 and j.get("skipped")]
        LAST_SWEEP.update(jobs=len(jobs), failed=len(bad), skipped=len(skipped), dir=str(sweep_dir))
        out = sys.stdout
        also = f" ({len(skipped)} skipped: already complete)" if skipped else ""
        print(f"\nsweep: {len(jobs)} job(s), {len(jobs) - len(bad)} complete{also}, {len(bad)} not "
              f"(folder {sweep_dir})", file=out)
        for j in skipped:
            print(f"  skipped ({j['skipped']}): {' '.join(j.get('overrides', []))} -> {j.get('record')}", file=out)
        for j in bad:
            if j.get("exit") is None:
                print(f"  did not finish (its process died?): {' '.join(j.get('overrides', []))}", file=out)
                continue
            if j.get("status") == "lost":
                print(f"  lost ({j.get('reason') or 'its process was killed'}): {' '.join(j.get('overrides', []))}"
                      + (f" -> {j['record']} (resume=auto continues it)" if j.get("record") else ""), file=out)
                continue
            print(f"  exit {j.get('exit')} ({j.get('status') or 'refused'}): {' '.join(j.get('overrides', []))}"
                  + (f" -> {j['record']}" if j.get("record") else ""), file=out)
        if not any(j.get("record") for j in jobs):
            return
        print(f"records: {_records_where(sweep_dir, jobs)}", file=out)
        print(f"leaderboard of this sweep (clbench leaderboard {sweep_dir}):", file=out, flush=True)
        from clbench.results.leaderboard import leaderboard_command

        leaderboard_command([str(sweep_dir), "--format", "md"])
        out.flush()


def _records_where(sweep_dir: Path, jobs: list[dict]) -> str:
    paths = [Path(j["record"]) for j in jobs if j.get("record")]
    inside = all(sweep_dir.resolve() in p.resolve().parents for p in paths)
    return str(sweep_dir / "runs") if inside else ", ".join(str(p) for p in paths)


def _num(name: str) -> int:
    return int(name) if name.isdigit() else 1 << 30


def exit_code() -> int:
    """1 if a job of the last sweep did not complete, else 0."""
    return 1 if LAST_SWEEP.get("failed") else 0
