"""``clbench check strategy=NAME [strategy.KEY=VALUE ...]``: the strategy contract
(``clbench.protocol.contract``) on tiny synthetic streams, plus the config check (the
strategy's config composes from the command line into its own config class), for a
plugin author before a real run. Exit 0 when every check passes, 1 otherwise."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

USAGE = "clbench check strategy=NAME [strategy.KEY=VALUE ...] [--module PKG.MODULE] [--kinds KIND,...]"


def check_command(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="clbench check", usage=USAGE, description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="strategy=NAME and strategy.KEY=VALUE overrides")
    parser.add_argument("--module", action="append", default=[],
                        help="import this module first (a strategy not installed as a clbench plugin)")
    parser.add_argument("--kinds", help="scenario families to check (default: every family the strategy runs on)")
    try:
        ns = parser.parse_args(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    names = [o.split("=", 1)[1] for o in ns.overrides if o.startswith("strategy=")]
    bad = [o for o in ns.overrides if not o.startswith(("strategy=", "strategy."))]
    if len(names) != 1 or bad:
        print(f"clbench: error: give one strategy=NAME and only strategy.KEY=VALUE overrides ({USAGE})", file=sys.stderr)
        return 2
    for module in ns.module:
        importlib.import_module(module)
    from clbench.config import compose
    from clbench.config.explain import explain_config_error
    from clbench.errors import user_errors
    from clbench.protocol.contract import Finding, check_strategy

    name = names[0]
    try:
        findings = [config_finding(name, ns.overrides)]
        cfg = compose(list(ns.overrides) + ["logger=none"])
    except user_errors() as err:
        print(f"clbench: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - Hydra's composition errors
        print(f"clbench: error: {explain_config_error(err, list(ns.overrides))}", file=sys.stderr)
        return 2
    given = {o.split("=", 1)[0].split(".", 1)[1] for o in ns.overrides if o.startswith("strategy.")}
    overrides = {k: cfg.strategy[k] for k in given}
    kinds = ns.kinds.split(",") if ns.kinds else None
    try:
        findings += check_strategy(name, overrides=overrides, kinds=kinds)
    except user_errors() as err:
        findings.append(Finding("build", "-", False, str(err)))
    _print(name, findings)
    return 0 if all(f.ok for f in findings) else 1


def config_finding(name: str, overrides: list[str]) -> Any:
    """Whether ``strategy=NAME`` composes into exactly the strategy's own config class."""
    from omegaconf import OmegaConf

    from clbench.api.strategy import STRATEGIES
    from clbench.config import compose
    from clbench.protocol.contract import Finding

    cls = STRATEGIES.get(name)
    built = OmegaConf.to_object(compose([f"strategy={name}", "logger=none"]).strategy)
    if type(built) is not cls.config_class:
        return Finding("config composes", "-", False, f"strategy={name} composes into {type(built).__name__}, not "
                       f"{cls.config_class.__name__}: register the strategy with its own config_class")
    if built != cls.config_class(name=name):
        return Finding("config composes", "-", False, "the composed config differs from the config class's defaults")
    return Finding("config composes", "-", True, f"{cls.config_class.__name__}")


def _print(name: str, findings: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"clbench check: {name}")
    for c in ("check", "family", "result", "detail"):
        table.add_column(c)
    for f in findings:
        table.add_row(f.check, f.kind, "[green]pass[/]" if f.ok else "[bold red]FAIL[/]", f.detail)
    Console(width=160).print(table)
    failed = sum(not f.ok for f in findings)
    print(f"{len(findings) - failed} of {len(findings)} checks passed" + (f"; {failed} failed" if failed else ""))
