"""The ``clbench`` command: run, list, show, leaderboard, data (dispatch and the small
commands; a run itself goes through ``clbench.cli.launch``, a sweep ``clbench.cli.sweep``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

USAGE = """clbench <command> ...    (clbench --version: the installed version)

commands:
  run [key=value ...]   train and evaluate one strategy on one scenario, e.g.
                        clbench run strategy=er scenario=split_fmnist seed=1 strategy.buffer_size=500
                        (Hydra overrides; -m sweeps, e.g. clbench run -m strategy=naive,er seed=0,1,2)
  list                  registered strategies and scenarios, with what each needs and supports
  show RECORD.json      the accuracy matrix and metrics of a saved run
  leaderboard [RESULTS_DIR] [--format md|csv|latex|html] [--out FILE] [--scenario NAME ...]
              [--metric KEY ...] [--rank KEY] [--figures DIR]
                        tables of aggregated run records (mean ± std over seeds), e.g.
                        clbench leaderboard results/ (your runs), results/reference (ours)
  check strategy=NAME [strategy.KEY=VALUE ...] [--module PKG.MOD]
                        the strategy contract on tiny synthetic streams (finite loss, same seed
                        same matrix, state round trip, resume) and its config, for plugin authors
  data check|convert SCENARIO [--data-root DIR]
                        check or lay out a scenario's files (e.g. clbench data check split53)
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``clbench``; returns the exit status. A closed standard output
    (``clbench list | head``) ends the command quietly."""
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 141  # as a shell reports a process ended by SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (tests capture it)
        pass


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version", "version"):
        from clbench import __version__

        print(f"clbench {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    commands = {"run": run_command, "list": list_command, "show": show_command,
                "leaderboard": leaderboard_command, "check": check_command, "data": data_command}
    if command not in commands:
        print(f"clbench: unknown command {command!r}; valid choices: {', '.join(commands)}", file=sys.stderr)
        return 2
    return commands[command](rest)


def run_command(args: list[str]) -> int:
    """``clbench run``: one run is composed here, so that bad overrides get a message
    naming the valid choices; flags such as ``-m`` (sweeps) go to Hydra's own entry
    point, so launchers (local, Submitit) work unchanged."""
    from clbench.cli.launch import execute, refuse
    from clbench.config.explain import explain_config_error
    from clbench.config.validate import check_composition, check_overrides

    # `+experiment=NAME` / `+debug=NAME` (the lightning-hydra-template spelling) select the
    # optional groups that the primary config already lists
    args = [a[1:] if a.startswith(("+experiment=", "+debug=")) else a for a in args]
    problems = check_overrides(args)  # before the plugins (and torch) are imported: a refusal is instant
    if not problems and not any(a.startswith("-") for a in args):
        problems = check_composition(args)  # unknown names/keys, types: from the config index
    if problems:
        return refuse(problems)
    from clbench.config import store_configs

    store_configs()
    if any(a.startswith("-") for a in args):
        if "-m" in args or "--multirun" in args:
            from clbench.cli import sweep

            # `clbench run hydra/launcher=joblib -m strategy=...`: Hydra's parser wants its
            # overrides in one run, so the flag goes first
            args = [a for a in args if a in ("-m", "--multirun")][:1] + [a for a in args if a not in ("-m", "--multirun")]

            problems = sweep.check_strategy_keys(args) + sweep.check_launcher(args)  # before any job starts
            if problems:
                return refuse(problems)
            args = sweep.with_sweep_dir(args)
        return _hydra_main(args)
    from clbench.config import compose

    try:
        cfg = compose(args)
    except Exception as err:  # Hydra/OmegaConf composition errors
        print(f"clbench: error: {explain_config_error(err, args)}", file=sys.stderr)
        return 2
    return execute(cfg)


def _hydra_main(args: list[str]) -> int:
    import hydra

    from clbench.config import CONF_DIR

    from clbench.cli import sweep

    codes: list[int] = []

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _run(cfg) -> int:
        code = sweep.run_job(cfg)  # a job's failure is reported by the sweep's summary; the others go on
        codes.append(code)
        return code

    saved = sys.argv
    sys.argv = ["clbench run", *args]
    sweep.LAST_SWEEP.clear()
    try:
        _run()
    finally:
        sys.argv = saved
    if sweep.LAST_SWEEP:
        return sweep.exit_code()
    return codes[-1] if codes else 0


def list_command(args: list[str]) -> int:
    """Print strategies and scenarios with what each needs and supports (from the config
    index when it is fresh: no plugin or torch import)."""
    from rich.console import Console
    from rich.table import Table

    from clbench.config.finder import listing

    found = listing()
    console = Console(width=160)
    t = Table(title="strategies")
    for c in ("name", "needs", "supports", "paper recipe"):
        t.add_column(c)
    for name, s in found["strategies"].items():
        t.add_row(name, ", ".join(s["needs"]) or "nothing", ", ".join(s["kinds"]), "yes" if s["paper_recipe"] else "—")
    console.print(t)
    t = Table(title="scenarios")
    for c in ("name", "family", "task ids (train/test)", "boundaries", "labels", "default backbone"):
        t.add_column(c)
    for name, s in found["scenarios"].items():
        t.add_row(name, s["kind"], f"{'yes' if s['task_id_train'] else 'no'}/{'yes' if s['task_id_test'] else 'no'}",
                  "yes" if s["boundaries"] else "no", "multi-label" if s["kind"] == "multilabel" else "single",
                  s["default_backbone"])
    console.print(t)
    return 0


def show_command(args: list[str]) -> int:
    """Print a saved run's matrix and metrics."""
    parser = argparse.ArgumentParser(prog="clbench show", description="Print a saved run's matrix and metrics.")
    parser.add_argument("record", type=Path, help="a run record, e.g. results/runs/<scenario>/<strategy>/<run_id>.json")
    try:
        ns = parser.parse_args(args)
    except SystemExit as exit_:  # argparse printed the usage
        return int(exit_.code or 0)
    from clbench.results.console import print_record
    from clbench.results.records import RecordError, load

    try:
        record = load(ns.record)
    except RecordError as err:
        hint = ""
        if ns.record.is_dir():
            hint = f"; for a table of the runs under it: clbench leaderboard {ns.record}"
        print(f"clbench: error: {err}{hint}", file=sys.stderr)
        return 2
    print_record(record)
    return 0


def leaderboard_command(args: list[str]) -> int:
    """``clbench leaderboard``: see clbench.results.leaderboard.command."""
    from clbench.results.leaderboard import leaderboard_command as command

    return command(args)


def check_command(args: list[str]) -> int:
    """``clbench check``: see clbench.cli.check."""
    from clbench.cli.check import check_command as command

    return command(args)


def data_command(args: list[str]) -> int:
    """``clbench data <action> <scenario> ...``: handlers registered by scenario packages."""
    from clbench.registry import UnknownNameError
    from clbench.api.scenario import DATA_COMMANDS

    choices = DATA_COMMANDS.names()
    if len(args) < 2:
        print(f"usage: clbench data <action> <scenario> [options]; available: {', '.join(c.replace('/', ' ') for c in choices)}")
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    try:
        handler = DATA_COMMANDS.get(f"{args[0]}/{args[1]}")
    except UnknownNameError:
        print(f"clbench: error: unknown data command {' '.join(args[:2])!r}; valid choices: "
              f"{', '.join(c.replace('/', ' ') for c in choices)}", file=sys.stderr)
        return 2
    return handler(args[2:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
