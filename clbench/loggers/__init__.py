"""Run loggers: harness callbacks that receive each matrix row and the final record.

A logger has ``start(record)``, ``log_row(step, row, record)`` and
``finish(record) -> location or None``. Failures warn and never stop a run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from clbench.registry import Registry


@dataclass
class LoggerConfig:
    """``name``: ``wandb`` or ``none``. ``mode``: wandb's mode; None means offline unless
    WANDB_MODE says otherwise. ``dir``: where wandb writes (default results_dir)."""

    name: str = "wandb"
    project: str = "clbench"
    entity: Optional[str] = None
    mode: Optional[str] = None
    dir: Optional[str] = None


LOGGER_PRESETS = {"wandb": LoggerConfig(name="wandb"), "none": LoggerConfig(name="none")}


LoggerBuilder = Callable[[Any, str], list]  # (config, results_dir) -> loggers
#: loggers by name, like strategies: a package adds one with ``LOGGERS.register(name, builder)``
#: and a preset config in ``LOGGER_PRESETS`` (config group ``logger``)
LOGGERS: Registry[LoggerBuilder] = Registry("logger")


def _wandb(config: Any, results_dir: str) -> list:
    from clbench.loggers.wandb_logger import WandbLogger

    return [WandbLogger(project=config.project, entity=config.entity, mode=config.mode, dir=config.dir or results_dir)]


LOGGERS.register("wandb", _wandb)
LOGGERS.register("none", lambda config, results_dir: [])


def build_loggers(config: Any, results_dir: str) -> list:
    """The loggers a config asks for (an unknown name lists the valid choices)."""
    return LOGGERS.get(config.name)(config, results_dir)
