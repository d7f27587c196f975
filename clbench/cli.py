"""The ``clbench`` command: run, list, show (and what later modules add)."""
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
                "leaderboard": leaderboard_command, "data": data_command}
    if command not in commands:
        print(f"clbench: unknown command {command!r}; valid choices: {', '.join(commands)}", file=sys.stderr)
        return 2
    return commands[command](rest)


def run_command(args: list[str]) -> int:
    """``clbench run``: one run is composed here, so that bad overrides get a message
    naming the valid choices; flags such as ``-m`` (sweeps) go to Hydra's own entry
    point, so launchers (local, Submitit) work unchanged."""
    from clbench.validate import check_composition, check_overrides

    # `+experiment=NAME` / `+debug=NAME` (the lightning-hydra-template spelling) select the
    # optional groups that the primary config already lists
    args = [a[1:] if a.startswith(("+experiment=", "+debug=")) else a for a in args]
    problems = check_overrides(args)  # before the plugins (and torch) are imported: a refusal is instant
    if not problems and not any(a.startswith("-") for a in args):
        problems = check_composition(args, explain_config_error)  # unknown names/keys, types: from the config index
    if problems:
        return _refuse(problems)
    from clbench.config import store_configs

    store_configs()
    if any(a.startswith("-") for a in args):
        if "-m" in args or "--multirun" in args:
            from clbench import sweep

            # `clbench run hydra/launcher=joblib -m strategy=...`: Hydra's parser wants its
            # overrides in one run, so the flag goes first
            args = [a for a in args if a in ("-m", "--multirun")][:1] + [a for a in args if a not in ("-m", "--multirun")]

            problems = sweep.check_strategy_keys(args) + sweep.check_launcher(args)  # before any job starts
            if problems:
                return _refuse(problems)
            args = sweep.with_sweep_dir(args)
        return _hydra_main(args)
    from clbench.config import compose

    try:
        cfg = compose(args)
    except Exception as err:  # Hydra/OmegaConf composition errors
        print(f"clbench: error: {explain_config_error(err, args)}", file=sys.stderr)
        return 2
    return execute(cfg)


def _refuse(problems: list[str]) -> int:
    """Print the reasons a config is refused (one line each) and return 2."""
    for problem in problems:
        print(f"clbench: error: {problem}", file=sys.stderr)
    return 2


def _hydra_main(args: list[str]) -> int:
    import hydra

    from clbench.config import CONF_DIR

    from clbench import sweep

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


def explain_config_error(err: BaseException, overrides: list[str]) -> str:
    """Turn a Hydra composition error into one message naming the bad value and the
    valid choices (config group options, or the keys of the node, or the type)."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    if isinstance(err, MissingConfigException):
        import re

        text = str(err).split("Config search path")[0]
        options = [ln.strip() for ln in text.splitlines() if ln.startswith("\t")]
        found = re.search(r"Could not find '([^/']+)/([^']+)'", text)
        if found and options:
            return f"unknown {found.group(1)} {found.group(2)!r}; valid choices: {', '.join(options)}"
        return text.strip()
    cause = err.__cause__ or err
    full_key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and full_key:
        parent, _, key = full_key.rpartition(".")
        valid = _valid_keys(parent, [o for o in overrides if not o.lstrip("+~").startswith(full_key + "=")])
        where = parent or "the run config"
        return f"unknown key {key!r} in {where}; valid keys: {', '.join(valid)}"
    if isinstance(cause, ValidationError) and full_key:
        return f"bad value for {full_key}: {str(cause).splitlines()[0]}"
    return str(err).strip()


def _valid_keys(parent: str, overrides: list[str]) -> list[str]:
    from omegaconf import OmegaConf

    from clbench.config import compose

    try:
        node = OmegaConf.select(compose(overrides), parent) if parent else compose(overrides)
        return sorted(k for k in node.keys() if k != "defaults")
    except Exception:  # noqa: BLE001 - best effort: the main message still stands
        return ["(could not list)"]


def execute(cfg, on_record=None) -> int:
    """Validate and run one composed config; user errors print one message and return 2.
    ``on_record``: called with ``{"path", "status"}`` of the run's record, where there is one."""
    from clbench.errors import user_errors
    from clbench.validate import check_config

    problems = check_config(cfg)  # every setting, wherever it came from, before anything is built
    if problems:
        return _refuse(problems)
    try:
        from clbench.launch import run_from_config

        record, path = run_from_config(cfg)
    except user_errors() as err:
        print(f"clbench: error: {err}", file=sys.stderr)
        _print_log_locations(sys.stderr)
        return 2
    except BaseException as err:
        _print_log_locations(sys.stderr)  # a failed or interrupted run still has its W&B run
        if on_record is not None and getattr(err, "record_path", None):
            on_record({"path": str(Path(err.record_path).resolve()),
                       "status": "interrupted" if type(err).__name__ == "Interrupted" else "failed"})
        return _run_ended(err)
    if on_record is not None:
        on_record({"path": str(Path(path).resolve()), "status": record.status})
    from rich.console import Console

    from clbench.console import print_record

    console = Console()
    print_record(record, console)
    console.print(f"record: {path}", soft_wrap=True, markup=False, highlight=False)
    logs = record.environment.get("logs", {}) if isinstance(record.environment, dict) else {}
    for name, where in (logs.items() if isinstance(logs, dict) else []):
        if name != "WandbLogger":  # printed below, with the upload hint
            console.print(f"{name}: {where}", soft_wrap=True, markup=False, highlight=False)
    _print_log_locations(sys.stdout)
    return 0


def _run_ended(err: BaseException) -> int:
    """A run that stopped: SIGTERM / Ctrl-C (exit 143 / 130) or non-finite numbers (exit 1)
    in one line, naming the record (``err.record_path`` where the protocol attached it);
    any other error propagates with its traceback."""
    where = getattr(err, "record_path", None)
    saved = f"; the record (status {{}}) keeps the rows done so far: {where}" if where else \
        "; the record (status {}) keeps the rows done so far"
    if isinstance(err, KeyboardInterrupt) or type(err).__name__ == "Interrupted":
        print(f"clbench: run interrupted ({str(err) or 'Ctrl-C'}){saved.format('interrupted')}", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else 143
    if isinstance(err, FloatingPointError):  # e.g. a non-finite loss (strategy.lr too high)
        print(f"clbench: run failed: {err}{saved.format('failed')}", file=sys.stderr)
        return 1
    raise err


def _print_log_locations(stream) -> None:
    """Say (once) where this process's W&B runs went, with ``wandb sync`` for offline ones."""
    module = sys.modules.get("clbench.loggers.wandb_logger")
    if module is None:
        return
    while module.FINISHED:
        print(module.location_line(module.FINISHED.pop(0)), file=stream, flush=True)


def list_command(args: list[str]) -> int:
    """Print strategies and scenarios with what each needs and supports (from the config
    index when it is fresh: no plugin or torch import)."""
    from rich.console import Console
    from rich.table import Table

    from clbench.config_index import listing

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
    from clbench.console import print_record
    from clbench.records import RecordError, load

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
    """``clbench leaderboard``: see clbench.leaderboard.command."""
    from clbench.leaderboard import leaderboard_command as command

    return command(args)


def data_command(args: list[str]) -> int:
    """``clbench data <action> <scenario> ...``: handlers registered by scenario packages."""
    from clbench.registry import UnknownNameError
    from clbench.scenario import DATA_COMMANDS

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
