"""Run loggers: harness callbacks that receive each matrix row and the final record.

A logger has ``start(record)``, ``log_row(step, row, record)``, optionally
``log_steps(step, values)`` (the loss curve), and ``finish(record) -> location or None``.
Failures warn and never stop a run (the protocol wraps every call).

Built in (config group ``logger``): ``wandb`` (offline by default), ``tensorboard``,
``csv`` and ``none``; several at once with Hydra's list syntax, ``logger=[wandb,csv]``
(each option adds itself to ``logger.use``; ``logger.use.csv=false`` drops one). Files go
under ``logger.dir`` (default: the run's ``results_dir``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from clbench.fields import setting
from clbench.registry import Registry


@dataclass
class LoggerConfig:
    """Which run loggers run, and their settings (config group ``logger``)."""

    name: str = setting("wandb", "the logger option chosen (the last one of a list like logger=[wandb,csv])")
    project: str = setting("clbench", "W&B project")
    entity: Optional[str] = setting(None, "W&B entity (null: your default)")
    mode: Optional[str] = setting(None, "W&B mode: online, offline or disabled (null: offline unless WANDB_MODE says)")
    dir: Optional[str] = setting(None, "where the loggers write (null: the run's results_dir)")
    use: Dict[str, bool] = setting(help="the loggers to run, in order: each option chosen adds itself "
                                        "(logger=[wandb,csv] gives {wandb: true, csv: true}; logger.use.csv=false "
                                        "drops one)", default_factory=dict)


def _preset(name: str) -> LoggerConfig:
    return LoggerConfig(name=name, use={} if name == "none" else {name: True})


LOGGER_PRESETS = {name: _preset(name) for name in ("wandb", "tensorboard", "csv", "none")}


LoggerBuilder = Callable[[Any, str], list]  # (config, results_dir) -> loggers
#: loggers by name, like strategies: a package adds one with ``LOGGERS.register(name, builder)``
#: and a preset config in ``LOGGER_PRESETS`` (config group ``logger``)
LOGGERS: Registry[LoggerBuilder] = Registry("logger")


def _wandb(config: Any, results_dir: str) -> list:
    from clbench.loggers.wandb_logger import WandbLogger

    return [WandbLogger(project=config.project, entity=config.entity, mode=config.mode, dir=config.dir or results_dir)]


def _tensorboard(config: Any, results_dir: str) -> list:
    from clbench.loggers.tensorboard_logger import TensorBoardLogger

    return [TensorBoardLogger(dir=config.dir or results_dir)]


def _csv(config: Any, results_dir: str) -> list:
    from clbench.loggers.csv_logger import CSVLogger

    return [CSVLogger(dir=config.dir or results_dir)]


LOGGERS.register("wandb", _wandb)
LOGGERS.register("tensorboard", _tensorboard)
LOGGERS.register("csv", _csv)
LOGGERS.register("none", lambda config, results_dir: [])


def selected(config: Any) -> list[str]:
    """The names of the loggers ``config`` asks for: those switched on in ``use``, or
    ``name`` alone where ``use`` is empty (a config built by hand, e.g. ``LoggerConfig("csv")``);
    ``none`` is no logger."""
    use = getattr(config, "use", None) or {}
    names = [str(k) for k, on in dict(use).items() if on] if use else [str(config.name)]
    return [n for n in names if n != "none"]


def build_loggers(config: Any, results_dir: str) -> list:
    """The loggers a config asks for (an unknown name lists the valid choices)."""
    builders = [(name, LOGGERS.get(name)) for name in selected(config)]  # every name checked before any is built
    return [lg for _, build in builders for lg in build(config, results_dir)]
