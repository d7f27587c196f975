"""The scenario API (clbench.api.scenario): what a learner is told of the stream, its size
without its boundaries."""
from __future__ import annotations

from scenarios.task_agnostic import as_task_agnostic
from synthetic import blob_scenario


def test_stream_size_counts_training_samples_without_revealing_boundaries():
    sc = blob_scenario(n_exp=3, per_class=20)  # 40 training samples per experience
    assert sc.info_for(0.1).stream_size == 3 * (40 - 4)
    assert sc.info_for(0.1).num_experiences == 3
    ta = as_task_agnostic(sc, repeats=2)
    info = ta.info_for(0.1)
    assert info.stream_size == 2 * 120 and info.num_experiences is None  # no hold-out, T hidden
