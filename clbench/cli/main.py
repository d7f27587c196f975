"""The ``clbench`` command: run, list, show, leaderboard, data (dispatch and the small
commands; a run itself goes through ``clbench.cli.launch``, a sweep ``clbench.cli.sweep``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

USAGE = """clbench <command> ...    (clbench --version: the installed version)

commands:
  run [key=value ...]   train and evaluate one strategy on one scenario, e.g.
                        clbench run strategy=er scenario=split_fmnist seed=1 strategy.buffer_size=500
                        (Hydra overrides; -m sweeps, e.g. clbench run -m strategy=naive,er seed=0,1,2;
                        debug=fast|overfit|profile: quick runs; --help: every key of that config with
                        its value, valid range and description, and what it costs on this machine)
  list [NAME] [--no-timing]
                        registered strategies and scenarios, with what each needs and supports; with
                        a strategy, scenario or add-on NAME: its keys (default, valid range,
                        description) and the paper recipe's estimated steps and time on this machine
  show RECORD.json      the accuracy matrix and metrics of a saved run
  leaderboard [RESULTS_DIR] [--format md|csv|latex|html] [--out FILE] [--scenario NAME ...]
              [--metric KEY ...] [--rank KEY] [--figures DIR]
                        tables of aggregated run records (mean ± std over seeds), e.g.
                        clbench leaderboard results/ (your runs), results/reference (ours)
  check strategy=NAME [strategy.KEY=VALUE ...] [--module PKG.MOD]
                        the strategy contract on tiny synthetic streams (finite loss, same seed
                        same matrix, state round trip, resume) and its config, for plugin authors
  reproduce METHOD [--dry-run] [key=value ...]
                        run a method's paper configs (experiment=paper/METHOD_*) as one Hydra multirun
                        (hydra/launcher=slurm too) and print each result against the paper's target
  tune [key=value ...] KEY=V1,V2 ... --out FILE [--experiences K] [--holdout F] [--metric M]
                        choose settings on a validation hold-out of the first K experiences only (never
                        test data) over the grid of the keys given several values; writes the chosen
                        config as an experiment file (tuning: tuned-on-first-task)
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
                "leaderboard": leaderboard_command, "check": check_command, "data": data_command,
                "reproduce": reproduce_command, "tune": tune_command}
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
    wants_help = any(a in ("--help", "-h") for a in args)
    if wants_help:  # our own help: every key described, and the cost of the config
        args = [a for a in args if a not in ("--help", "-h", "-m", "--multirun")]
    problems = check_overrides(args)  # before the plugins (and torch) are imported: a refusal is instant
    if not problems and not any(a.startswith("-") for a in args):
        problems = check_composition(args)  # unknown names/keys, types: from the config index
    if problems:
        return refuse(problems)
    from clbench.config import store_configs

    store_configs()
    if wants_help:
        return run_help(args)
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
    from clbench.cli.debug import reporter

    return execute(cfg, on_record=reporter(cfg))  # debug=profile|overfit say what they found


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
    index when it is fresh: no plugin or torch import); with a NAME, that strategy's,
    scenario's or add-on's keys and the cost of its paper recipe (:func:`describe_name`)."""
    names = [a for a in args if not a.startswith("-")]
    unknown_flags = [a for a in args if a.startswith("-") and a not in ("--no-timing", "-h", "--help")]
    if unknown_flags or len(names) > 1 or any(a in ("-h", "--help") for a in args):
        print("usage: clbench list [NAME] [--no-timing]   (NAME: a strategy, scenario or add-on)",
              file=sys.stderr if unknown_flags or len(names) > 1 else sys.stdout)
        return 2 if unknown_flags or len(names) > 1 else 0
    if names:
        return describe_name(names[0], timing="--no-timing" not in args)
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


# -- help per strategy, scenario and add-on ---------------------------------------------------------

#: the keys a registration sets (not in the config classes' help: they say which option it is)
STRUCTURAL_HELP = {
    "name": "the option's registered name (chosen with <group>=NAME, not set by hand)",
    "kind": "the scenario family (set by the scenario's registration)",
    "default_backbone": "the backbone this scenario uses unless backbone= is given",
}
#: the top-level keys of the run config that are config groups (described in their own tables)
_GROUP_KEYS = ("strategy", "scenario", "backbone", "logger", "addon", "debug", "defaults")


def _console() -> Any:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)


def _show(value: Any) -> str:
    from clbench.fields import show

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict, tuple)):
        import json

        return json.dumps(value, default=str)
    return show(value)


def fields_table(title: str, cls: type, values: Any, prefix: str = "") -> Any:
    """A rich table of the fields of config class ``cls``: key (with ``prefix``), value
    (``values``'s, with the class default where it differs), valid range, description."""
    from rich.markup import escape
    from rich.table import Table

    from clbench.fields import describe_fields

    table = Table(title=escape(title), title_justify="left", show_lines=False)
    for column in ("key", "value", "valid", "description"):
        table.add_column(column, overflow="fold")
    for f in describe_fields(cls):
        if f["name"] in _GROUP_KEYS:
            continue
        value = values.get(f["name"], f["default"]) if hasattr(values, "get") else f["default"]
        shown = _show(value)
        if _show(f["default"]) != shown and f["name"] != "name":
            shown += f" (default {_show(f['default'])})"
        described = f["help"] or STRUCTURAL_HELP.get(f["name"], "")
        table.add_row(escape(prefix + f["name"]), escape(shown), escape(f["valid"] or _type_words(f["type"])),
                      escape(described))
    return table


def _type_words(hint: Any) -> str:
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = " or null" if type(None) in typing.get_args(hint) else ""
    base = args[0] if args and typing.get_origin(hint) is typing.Union else hint
    names = {int: "an integer", float: "a number", str: "text", bool: "true or false"}
    return names.get(base, getattr(base, "__name__", str(base)).lower() if base is not None else "") + optional


def _node_class(node: Any) -> Optional[type]:
    from omegaconf import OmegaConf

    try:
        cls = OmegaConf.get_type(node)
    except Exception:  # noqa: BLE001 - a plain mapping
        return None
    return cls if isinstance(cls, type) and hasattr(cls, "__dataclass_fields__") else None


def _first_line(doc: Optional[str]) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def print_config_help(cfg: Any, *, timing: bool = True, cost: bool = True, sections: tuple[str, ...] = (
        "run", "strategy", "scenario", "backbone", "addon", "logger"), console: Any = None) -> None:
    """Every key of the composed run config ``cfg``, table by table, then (``cost``) what
    it costs (:func:`clbench.cli.debug.estimate`; ``timing``: with a measured time per step)."""
    from clbench.config import RunConfig

    console = console or _console()
    for section in sections:
        if section == "run":
            console.print(fields_table("run settings (key=value)", RunConfig, cfg))
            continue
        node = cfg.get(section)
        cls = None if node is None else _node_class(node)
        if cls is None or (section == "addon" and node.get("name") == "none"):
            continue
        console.print(fields_table(f"{section}={node.get('name')} ({section}.<key>=value)", cls, node,
                                   prefix=f"{section}."))
    if cost:
        _print_cost(cfg, timing, console)


def _print_cost(cfg: Any, timing: bool, console: Any) -> None:
    """The steps (and, with ``timing``, the estimated time) of ``cfg``'s strategy on its scenario."""
    from omegaconf import OmegaConf

    from clbench.cli.debug import estimate
    from clbench.errors import user_errors

    cls = _node_class(cfg.strategy)
    defaults = cls() if cls is not None else None
    changed = [k for k, v in OmegaConf.to_container(cfg.strategy).items()
               if k != "name" and defaults is not None and _show(v) != _show(getattr(defaults, k, v))]
    what = "this config" if changed else "the paper recipe" if _recipe(cfg.strategy.name) else "the defaults"
    if timing:
        console.print("measuring a few steps on this machine ...", style="dim")
    try:
        found = estimate(cfg, timing=timing)
    except user_errors() as err:
        console.print(f"cost: not estimated ({err})", soft_wrap=True, markup=False, highlight=False)
        return
    for line in found.lines(what):
        console.print(line, soft_wrap=True, markup=False, highlight=False)


def _recipe(strategy: str) -> bool:
    from clbench.api.strategy import STRATEGIES

    return bool(getattr(STRATEGIES.get(strategy), "paper_defaults", False))


def run_help(args: list[str]) -> int:
    """``clbench run [key=value ...] --help``: the config those overrides compose, every key
    with its value, valid range and description, the groups' options, and its cost."""
    from clbench.config import compose
    from clbench.config.explain import explain_config_error

    try:
        cfg = compose(args)
    except Exception as err:  # Hydra/OmegaConf composition errors
        print(f"clbench: error: {explain_config_error(err, args)}", file=sys.stderr)
        return 2
    console = _console()
    console.print("usage: clbench run [key=value ...]   (-m: a sweep over comma lists; debug=fast|overfit|profile: "
                  "quick runs; `clbench list NAME`: one strategy's or scenario's keys)", soft_wrap=True,
                  markup=False, highlight=False)
    for group, options in _group_options().items():
        console.print(f"{group}: {', '.join(options)}", soft_wrap=True, markup=False, highlight=False)
    print_config_help(cfg, console=console)
    return 0


def _group_options() -> dict[str, list[str]]:
    """The options of every config group (the ConfigStore's and the YAML files')."""
    from hydra.core.config_store import ConfigStore

    from clbench.config import CONF_DIR

    repo = ConfigStore.instance().repo
    out = {g: sorted(k[:-5] for k in dict.keys(repo.get(g, {})) if k.endswith(".yaml") and not k.startswith("_"))
           for g in ("strategy", "scenario", "backbone", "addon", "logger")}
    for g in ("debug", "experiment"):
        out[g] = sorted(str(p.relative_to(CONF_DIR / g).with_suffix("")) for p in (CONF_DIR / g).rglob("*.yaml"))
    return out


def describe_name(name: str, *, timing: bool = True) -> int:
    """``clbench list NAME``: a strategy's keys and the cost of its recipe on its default
    scenario (:func:`clbench.cli.debug.default_scenario`), a scenario's keys and the cost
    of the default strategy on it, or an add-on's keys."""
    import difflib

    from clbench.config import compose, store_configs

    store_configs()
    options = _group_options()
    console = _console()
    if name in options["strategy"]:
        from clbench.api.strategy import STRATEGIES
        from clbench.cli.debug import default_scenario

        cls = STRATEGIES.get(name)
        scenario = default_scenario(name)
        console.print(f"strategy {name}: {_first_line(cls.__doc__)}", soft_wrap=True, markup=False, highlight=False)
        console.print(f"  runs on: {', '.join(sorted(cls.kinds))}; needs: {', '.join(sorted(cls.needs)) or 'nothing'}; "
                      f"paper recipe as defaults: {'yes' if cls.paper_defaults else 'no'}"
                      + (f"; paper backbone: {cls.paper_backbone}" if cls.paper_backbone else ""),
                      soft_wrap=True, markup=False, highlight=False)
        if scenario is None:
            console.print("  no registered scenario it runs on", markup=False)
            return 0
        cfg = compose([f"strategy={name}", f"scenario={scenario}"])
        print_config_help(cfg, timing=timing, sections=("strategy",), console=console)
        return 0
    if name in options["scenario"]:
        from clbench.api.scenario import SCENARIOS

        cfg = compose([f"scenario={name}"])
        console.print(f"scenario {name} ({cfg.scenario.kind}): {_first_line(SCENARIOS.get(name).__doc__)}",
                      soft_wrap=True, markup=False, highlight=False)
        console.print("  (the cost below is the default strategy's, naive, on it)", markup=False, highlight=False)
        print_config_help(cfg, timing=timing, sections=("scenario",), console=console)
        return 0
    if name in options["addon"]:
        from clbench.api.addon import ADDONS

        cfg = compose([f"addon={name}"])
        console.print(f"add-on {name} (strategy=NAME addon={name}): {_first_line(ADDONS.get(name).__doc__)}",
                      soft_wrap=True, markup=False, highlight=False)
        print_config_help(cfg, cost=False, sections=("addon",), console=console)
        return 0
    everything = options["strategy"] + options["scenario"] + [a for a in options["addon"] if a != "none"]
    close = difflib.get_close_matches(name, everything, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ";"
    print(f"clbench: error: unknown strategy, scenario or add-on {name!r}{hint} valid choices: {', '.join(everything)}",
          file=sys.stderr)
    return 2


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


def reproduce_command(args: list[str]) -> int:
    """``clbench reproduce``: see clbench.cli.reproduce."""
    from clbench.cli.reproduce import reproduce_command as command

    return command(args, run=run_command)


def tune_command(args: list[str]) -> int:
    """``clbench tune``: see clbench.cli.tune."""
    from clbench.cli.tune import tune_command as command

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
