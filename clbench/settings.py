"""Harness settings of one run: the one definition used by the command line (as the
top of Hydra's run config), by ``protocol.run`` and by the leaderboard (which ignores
every field marked ``harness``: they say how a run was executed, not what was run).

Imports nothing heavy, so that a bad value is refused before torch loads.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from clbench.errors import UserError
from clbench.fields import problems, setting


class BudgetSettingError(UserError, ValueError):
    """A ``budget.*`` value out of its range (named with its valid range)."""


def _harness(default, help: str, **valid):
    return setting(default, help, harness=True, **valid)


@dataclass
class BudgetSettings:
    """Compute- and memory-matched mode: limits per experience (null: none)."""

    steps: Optional[int] = setting(None, "optimisation steps per experience: training stops at exactly this many "
                                         "(null: no limit)", ge=1)
    flops: Optional[float] = setting(None, "training FLOPs per experience (per-phase FLOP counter, switched on by "
                                           "this key): no training step starts once they are spent (null: no limit)",
                                     gt=0)
    memory_bytes: Optional[int] = setting(None, "bytes the learner may hold (model + frozen copies + stored data); "
                                                "checked after preparation and after each experience (null: no limit)",
                                          ge=1)

    def active(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.steps, self.flops, self.memory_bytes))


#: the default values of the evaluation-protocol settings: the leaderboard leaves a key at its
#: value here out of a row's configuration label (budget, eval_every, tuning: the values that
#: leave a run as it was before they existed)
OFF_VALUES = {"budget": {"steps": None, "flops": None, "memory_bytes": None}, "eval_every": 0, "tuning": None,
              "channels_last": True}
#: run settings added after records existed: the value a record with a run config but without
#: the key ran with (channels_last: the standard memory format, before it became the default)
MISSING_MEANS = {"channels_last": False}


@dataclass
class RunSettings:
    """How a run is executed (not the method's or the scenario's settings)."""

    seed: int = _harness(0, "class order, data order, splits, weight init", ge=0)
    device: str = _harness("auto", "auto | cpu | cuda | cuda:N")
    val_fraction: float = setting(0.1, "validation hold-out of each experience (the fraction of its training data)",
                                  ge=0, lt=1)
    eval_batch_size: int = _harness(128, "test samples per evaluation batch (128: the fastest measured for cnn28 "
                                         "on CPU, bench/eval_throughput.py)", ge=1)
    results_dir: str = _harness("results", "where records go (runs/<scenario>/<strategy>/<run_id>.json)")
    progress: bool = _harness(True, "progress bars (lines when not a terminal)")
    count_flops: bool = _harness(False, "count FLOPs per phase with torch.utils.flop_counter")
    num_workers: int = _harness(0, "data loader worker processes for file-backed data sets (0: the main process)",
                                ge=0)
    log_every: int = _harness(50, "optimisation steps per point of the loss curve (and per non-finite check)", ge=1)
    eval_rows: str = _harness("all", "evaluate every row, or only rows 0 and T", choices=("all", "final"))
    channels_last: bool = setting(
        True, "the learner's conv weights in channels_last memory format, also those built in prepare() and "
              "begin_experience() (CPU, cnn28: training 1.5x, evaluation 2x faster, same accuracy over seeds); "
              "false: the standard format, whose numerics differ in the last bits: its own leaderboard rows")
    resume: Optional[str] = _harness(None, "auto | RUN_ID | PATH: continue a killed or interrupted run from its last "
                                           "experience checkpoint (auto: the newest one of this config; new run if none)")
    resume_force: bool = _harness(False, "resume a run that another host's claim still holds (its heartbeat is younger "
                                         "than the lease): only when that process is known to be dead, e.g. a crashed "
                                         "node; a live process on this host is never taken over")
    keep_checkpoints: bool = _harness(False, "keep every experience's checkpoint, also after the run completes "
                                             "(default: only the latest, removed at completion)")
    budget: BudgetSettings = setting(default_factory=BudgetSettings,
                                     help="compute-/memory-matched mode: budget.steps=, budget.flops=, "
                                          "budget.memory_bytes= per experience")
    eval_every: int = setting(0, "evaluate the evaluation copy every N optimisation steps inside experiences "
                                 "(the online accuracy curve; 0: only after each experience)", ge=0)
    tuning: Optional[str] = setting(None, "how the method's settings were chosen (null: 'paper' where the run keeps "
                                          "the paper's recipe, else 'ours')",
                                    choices=("paper", "ours", "tuned-on-first-task", "tuned-on-other-data"))

    def __post_init__(self) -> None:
        if not isinstance(self.budget, BudgetSettings):  # a mapping from a composed config
            given = self.budget if hasattr(self.budget, "keys") else {}  # absent (a dataclass MISSING): no limits
            self.budget = BudgetSettings(**{k: given[k] for k in given.keys()})
        found = problems(self.budget, "budget.")
        if found:  # refused where the settings are read, before any data is loaded or model built
            raise BudgetSettingError("; ".join(found))
        if self.budget.flops is not None:
            self.count_flops = True  # the budget is counted with the per-phase FLOP counter


def harness_keys() -> list[str]:
    """Names of the settings that do not change what a run measures."""
    return [f.name for f in fields(RunSettings) if f.metadata.get("harness")]


def settings_of(config) -> RunSettings:
    """The :class:`RunSettings` part of a composed run config (or any mapping/object)."""
    get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
    return RunSettings(**{f.name: get(f.name, f.default) for f in fields(RunSettings)})
