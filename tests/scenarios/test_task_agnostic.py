"""Task-agnostic streams (scenarios/task_agnostic.py): no task ids, no boundary calls, repeats
and blurry boundaries; a recurring stream refuses a schedule out of range."""
from collections import Counter

import pytest
import torch
from torch.utils.data import Subset

import scenarios.task_agnostic  # noqa: F401  (registers the presets until scenarios/__init__ imports it)
from clbench import protocol
from clbench.cli.launch import run_from_config
from clbench.config import compose
from clbench.api.strategy import Strategy, StrategyConfig, register_strategy
from clbench.types import TASK_AGNOSTIC, StepStats
from clbench.api.data import gather
from scenarios.task_agnostic import as_task_agnostic, blurry_plan

from conftest import small_run_overrides
from probes import sample_ids
from synthetic import blob_scenario


@register_strategy("_probe_ta")
class StreamProbe(Strategy):
    """Learns nothing; records every batch and every boundary hook call."""

    config_class = StrategyConfig

    def __init__(self, config, info, backbone=None, **kwargs) -> None:
        super().__init__(config, info, backbone, **kwargs)
        self.bias = torch.nn.Parameter(torch.zeros(info.num_classes))
        self.batches, self.hooks = [], []

    def begin_experience(self, info) -> None:
        self.hooks.append("begin")

    def end_experience(self) -> None:
        self.hooks.append("end")

    def train_experience(self, view) -> None:
        self.hooks.append("train_experience")

    def observe(self, batch) -> StepStats:
        self.batches.append(batch)
        return StepStats(loss=0.0, n=len(batch))

    def predict(self, x, task=None):
        return self.bias.expand(len(x), -1)


def stream_ids(scenario, batch_size=8, seed=0):
    """(ids, labels, None) of each stretch of the scenario's stream plan, as the protocol reads it."""
    g = torch.Generator().manual_seed(seed)
    sets = [e.train for e in scenario.experiences]
    out = []
    for source, rows in scenario.stream_plan([len(d) for d in sets], g):
        x, y = gather(sets, source, rows)[:2]
        out.append((sample_ids(x), y, None))
    return out


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
@pytest.mark.parametrize("name, foreign", [("split_fmnist_stream", [0] * 5), ("split_fmnist_blurry", [3, 6, 6, 6, 3])])
def test_probe_on_fmnist_streams_sees_no_task_and_no_boundary(tmp_path, name, foreign):
    from omegaconf import OmegaConf

    from clbench.config import data_root
    from clbench.api.scenario import build_scenario

    cfg = compose(small_run_overrides(tmp_path, "strategy=_probe_ta", f"scenario={name}", train_per_class=30, test_per_class=10))
    scenario = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
    probe = StreamProbe(OmegaConf.to_object(cfg.strategy), scenario.info)
    record, _ = protocol.run(scenario, probe, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu"))
    assert scenario.kind == TASK_AGNOSTIC and scenario.repeats == 1 and not scenario.visibility.boundaries
    assert probe.hooks == [] and probe.batches
    assert all(b.task is None and b.known is None for b in probe.batches)
    assert sum(len(b) for b in probe.batches) == 300  # every training sample once, no validation carved off
    labels = torch.cat([b.y for b in probe.batches])
    stretches = [labels[60 * i: 60 * (i + 1)] for i in range(5)]  # experiences back to back, 60 samples each
    own = [int(torch.isin(y, torch.tensor(e.classes)).sum()) for y, e in zip(stretches, scenario.experiences)]
    assert [60 - n for n in own] == foreign  # m = 0.1: 6-sample regions, 3 samples trade places per boundary
    assert len(record.matrix) == 6 and record.scenario["kind"] == TASK_AGNOSTIC


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_naive_runs_end_to_end_on_split_fmnist_stream(tmp_path):
    record, _ = run_from_config(compose(small_run_overrides(
        tmp_path, "strategy=naive", "scenario=split_fmnist_stream", train_per_class=30, test_per_class=10)))
    assert record.status == "complete" and len(record.matrix) == 6
    assert all(record.matrix[i][j] == 0.0 for i in range(1, 6) for j in range(i, 5))
    assert record.metrics["ACC"] is not None and record.metrics["FGT"] is not None
    assert any("epochs ignored" in d for d in record.deviations)


def test_repeats_play_each_experience_back_to_back():
    s = as_task_agnostic(blob_scenario(n_exp=3, per_class=10), repeats=3)
    for i, (ids, labels, _) in enumerate(stream_ids(s)):
        exp_ids = sorted(sample_ids(s.experiences[i].train.x))
        assert len(ids) == 3 * len(exp_ids)
        for r in range(3):  # three whole shuffled passes in a row
            assert sorted(ids[r * 20:(r + 1) * 20]) == exp_ids
        assert set(labels.tolist()) == set(s.experiences[i].classes)


@pytest.mark.parametrize("blurry, repeats", [(0.1, 1), (0.25, 2), (0.5, 1)])
def test_blurry_mixes_the_expected_samples_and_keeps_counts(blurry, repeats):
    base = blob_scenario(n_exp=4, per_class=25)
    s = as_task_agnostic(base, repeats=repeats, blurry=blurry)
    plain = stream_ids(as_task_agnostic(base, repeats=repeats))
    blurred = stream_ids(s)
    L = [repeats * len(e.train) for e in base.experiences]
    swapped = [min(int(blurry * L[i]), int(blurry * L[i + 1])) // 2 for i in range(3)]
    assert min(swapped) > 0
    owner = {i: k for k, e in enumerate(base.experiences) for i in sample_ids(e.train.x)}
    for k, (ids, labels, batches) in enumerate(blurred):
        assert len(ids) == L[k] == len(plain[k][0])  # each stretch keeps its length: evaluation points stay
        foreign = [p for p, i in enumerate(ids) if owner[i] != k]
        expected = (swapped[k - 1] if k > 0 else 0) + (swapped[k] if k < 3 else 0)
        assert len(foreign) == expected
        head, tail = int(blurry * L[k]) if k > 0 else 0, int(blurry * L[k]) if k < 3 else 0
        assert all(p < head or p >= L[k] - tail for p in foreign)  # only inside boundary regions
        assert sum(owner[ids[p]] == k - 1 for p in foreign) == (swapped[k - 1] if k > 0 else 0)
        for p, i in enumerate(ids):  # labels travel with their samples
            assert int(labels[p]) in base.experiences[owner[i]].classes
    every = Counter(i for ids, _, _ in blurred for i in ids)
    assert every == Counter({i: repeats for i in owner})  # each sample used exactly as often as without blurring


def test_blurry_zero_is_the_plain_stream_and_bad_values_are_refused():
    base = blob_scenario(n_exp=2, per_class=10)
    a = stream_ids(as_task_agnostic(base, blurry=0.0))
    b = stream_ids(as_task_agnostic(base))
    assert [x[0] for x in a] == [x[0] for x in b]
    with pytest.raises(ValueError, match=r"blurry must be in \[0, 0.5\].*0.7"):
        as_task_agnostic(base, blurry=0.7)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        as_task_agnostic(base, repeats=0)
    with pytest.raises(ValueError, match="only class-incremental"):
        as_task_agnostic(blob_scenario(kind="task_incremental"))


def test_blurry_plan_is_seeded_and_gather_matches_generic_datasets():
    p1 = blurry_plan([30, 40, 50], 2, 0.2, torch.Generator().manual_seed(3))
    p2 = blurry_plan([30, 40, 50], 2, 0.2, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(p1, p2))
    base = blob_scenario(n_exp=2, per_class=10)
    sets = [e.train for e in base.experiences]
    generic = [Subset(d, list(range(len(d)))) for d in sets]
    src, rows = torch.tensor([1, 0, 1, 0]), torch.tensor([3, 5, 0, 19])
    fast, slow = gather(sets, src, rows), gather(generic, src, rows)
    assert all(torch.equal(a, b) for a, b in zip(fast, slow))
    assert sample_ids(fast[0]) == [sample_ids(sets[e].x[r:r + 1])[0] for e, r in zip(src.tolist(), rows.tolist())]


def test_blurry_stream_runs_under_the_protocol(tmp_path):
    base = blob_scenario(n_exp=3, per_class=20)
    s = as_task_agnostic(base, repeats=2, blurry=0.2)
    probe = StreamProbe(StrategyConfig(name="_probe_ta", batch_size=16), s.info)
    record, _ = protocol.run(s, probe, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu"))
    assert probe.hooks == [] and all(b.task is None for b in probe.batches)
    ids = Counter(i for b in probe.batches for i in sample_ids(b.x))
    assert ids == Counter({i: 2 for e in base.experiences for i in sample_ids(e.train.x)})
    assert record.scenario["description"]["blurry"] == 0.2 and record.scenario["repeats"] == 2


@pytest.mark.usefixtures("fmnist_available")
def test_recurring_scenario_refuses_a_schedule_out_of_range(tmp_path):
    from omegaconf import OmegaConf

    from clbench.config import compose, data_root
    from clbench.api.scenario import build_scenario

    cfg = compose(small_run_overrides(tmp_path, "scenario=split_fmnist_recurring", "scenario.schedule=[0,7]",
                                      train_per_class=5, test_per_class=5))
    with pytest.raises(ValueError, match=r"schedule=\[0, 7\] .*valid: integers in 0..4"):
        build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
