"""The ``min_batches_per_task`` hook: the protocol compares a strategy's declared need with
the task-agnostic stream it plans and records a warning for shorter tasks; the strategy
is told nothing (clbench/api/strategy.py, clbench/protocol/session.py)."""
from __future__ import annotations

import warnings

import pytest

from clbench import protocol
from clbench.api.strategy import Strategy
from scenarios.task_agnostic import as_task_agnostic

from probes import Probe
from synthetic import blob_scenario


class Needs(Probe):
    """A probe that needs ``need`` batches per task and counts how often it is asked."""

    need = 10

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked = 0

    def min_batches_per_task(self):
        self.asked += 1
        return self.need


def run(tmp_path, scenario, strategy):
    settings = protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu")
    return protocol.run(scenario, strategy, settings=settings)[0]


def test_the_default_declares_no_need():
    assert Strategy.min_batches_per_task(None) is None


def test_tasks_shorter_than_declared_are_a_recorded_warning(tmp_path):
    sc = as_task_agnostic(blob_scenario(n_exp=3, per_class=40), repeats=1)  # 80 samples a task: 5 batches of 16
    s = Needs(info=sc.info)
    with pytest.warns(RuntimeWarning, match="tasks shorter than it needs"):
        record = run(tmp_path, sc, s)
    (message,) = record.extra["warnings"]
    assert "3 of 3 stretches" in message and "last 5 batches of 16" in message and "needs 10 batches" in message
    assert s.asked == 1 and record.status == "complete"


def test_long_enough_tasks_and_visible_boundaries_give_no_warning(tmp_path):
    sc = as_task_agnostic(blob_scenario(n_exp=3, per_class=40), repeats=2)  # 10 batches a task: enough
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        record = run(tmp_path, sc, Needs(info=sc.info))
        assert "warnings" not in record.extra
        ci = blob_scenario(n_exp=3, per_class=40)
        s = Needs(info=ci.info)
        record = run(tmp_path, ci, s)
    assert "warnings" not in record.extra and s.asked == 0  # the strategy's own loop cuts those batches
