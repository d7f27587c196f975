"""The ``clbench`` command: run, list, show (and what later modules add)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

USAGE = """clbench <command> ...

commands:
  run [key=value ...]   train and evaluate one strategy on one scenario, e.g.
                        clbench run strategy=er scenario=split_fmnist seed=1 strategy.buffer_size=500
                        (Hydra overrides; -m sweeps, e.g. clbench run -m strategy=naive,er seed=0,1,2)
  list                  registered strategies and scenarios, with what each needs and supports
  show RECORD.json      the accuracy matrix and metrics of a saved run
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    commands = {"run": run_command, "list": list_command, "show": show_command}
    if command not in commands:
        print(f"clbench: unknown command {command!r}; valid choices: {', '.join(commands)}", file=sys.stderr)
        return 2
    return commands[command](rest)


def run_command(args: list[str]) -> int:
    """``clbench run``: Hydra's own entry point, so overrides, -m sweeps and launchers work."""
    import hydra

    from clbench.config import CONF_DIR, store_configs

    store_configs()

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _run(cfg) -> None:
        code = execute(cfg)
        if code:
            sys.exit(code)

    saved = sys.argv
    sys.argv = ["clbench run", *args]
    try:
        _run()
    finally:
        sys.argv = saved
    return 0


def execute(cfg) -> int:
    """Run one composed config; user errors print one message and return 2."""
    from clbench.errors import user_errors

    try:
        record, path = run_from_config(cfg)
    except user_errors() as err:
        print(f"clbench: error: {err}", file=sys.stderr)
        return 2
    from rich.console import Console

    from clbench.console import print_record

    console = Console()
    print_record(record, console)
    console.print(f"record: {path}")
    for name, where in record.environment.get("logs", {}).items():
        console.print(f"{name}: {where}")
    return 0


def run_from_config(cfg):
    """Check, build and run what ``cfg`` describes; return ``(record, path)``."""
    from omegaconf import OmegaConf

    from clbench import protocol
    from clbench.config import data_root, to_dict
    from clbench.loggers import build_loggers
    from clbench.scenario import build_scenario
    from clbench.strategy import STRATEGIES

    strategy_cls = STRATEGIES.get(cfg.strategy.name)
    protocol.check_compatible(strategy_cls, cfg.scenario.kind, cfg.scenario.name)  # before any data is read
    settings = protocol.RunSettings(
        seed=cfg.seed, device=cfg.device, val_fraction=cfg.val_fraction, eval_batch_size=cfg.eval_batch_size,
        results_dir=cfg.results_dir, progress=cfg.progress, count_flops=cfg.count_flops, num_workers=cfg.num_workers,
    )
    protocol.resolve_device(settings.device)
    protocol.seed_everything(cfg.seed)
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=cfg.seed)
    strategy = strategy_cls(
        OmegaConf.to_object(cfg.strategy), scenario.info, OmegaConf.to_object(cfg.backbone),
        seed=cfg.seed, data_root=data_root(cfg),
    )
    loggers = build_loggers(cfg.logger, cfg.results_dir)
    return protocol.run(scenario, strategy, settings=settings, loggers=loggers, config=to_dict(cfg))


def list_command(args: list[str]) -> int:
    """Print strategies and scenarios with what each needs and supports."""
    from rich.console import Console
    from rich.table import Table

    from clbench.config import store_configs
    from clbench.scenario import SCENARIOS
    from clbench.strategy import STRATEGIES
    from clbench.types import VISIBILITY_BY_KIND

    store_configs()
    from hydra.core.config_store import ConfigStore

    repo = ConfigStore.instance().repo
    console = Console(width=160)
    t = Table(title="strategies")
    for c in ("name", "needs", "supports", "paper recipe"):
        t.add_column(c)
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        t.add_row(name, ", ".join(sorted(cls.needs)) or "nothing", ", ".join(sorted(cls.kinds)),
                  "yes" if cls.paper_defaults else "—")
    console.print(t)
    t = Table(title="scenarios")
    for c in ("name", "family", "task ids (train/test)", "boundaries", "labels", "default backbone"):
        t.add_column(c)
    for name in SCENARIOS.names():
        node = repo["scenario"][f"{name}.yaml"].node
        vis = VISIBILITY_BY_KIND[node.kind]
        t.add_row(name, node.kind, f"{'yes' if vis.task_id_train else 'no'}/{'yes' if vis.task_id_test else 'no'}",
                  "yes" if vis.boundaries else "no", "multi-label" if node.kind == "multilabel" else "single",
                  node.default_backbone)
    console.print(t)
    return 0


def show_command(args: list[str]) -> int:
    """Print a saved run's matrix and metrics."""
    parser = argparse.ArgumentParser(prog="clbench show")
    parser.add_argument("record", type=Path)
    ns = parser.parse_args(args)
    from clbench.console import print_record
    from clbench.records import RecordError, load

    try:
        record = load(ns.record)
    except RecordError as err:
        print(f"clbench: error: {err}", file=sys.stderr)
        return 2
    print_record(record)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
