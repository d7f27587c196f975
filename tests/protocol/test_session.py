"""One run's loop (clbench.protocol.session): a task-agnostic stream gets no boundary calls,
and boundaries it hides leave no trace on the live learner; a frozen encoder sees each
experience when it starts and never a test input."""
from __future__ import annotations

import torch
from torch import nn

from clbench import protocol
from clbench.api.data import TensorData
from clbench.api.scenario import Scenario
from clbench.types import TASK_AGNOSTIC, Experience

from probes import Probe, Recorder
from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_task_agnostic_has_no_boundary_calls(tmp_path):
    scenario = blob_scenario(kind=TASK_AGNOSTIC)
    probe = Probe(info=scenario.info)
    record, _ = protocol.run(scenario, probe, settings=settings(tmp_path))
    assert set(probe.calls) == {"observe"} and all(t is None for t in probe.batch_tasks)
    assert probe.view_tasks == [] and len(record.matrix) == 4


class FixedStream(Scenario):
    """A task-agnostic scenario whose stream is the samples in stored order (no shuffle),
    so two instances with different boundary positions deliver the same sequence."""

    def stream_plan(self, sizes, generator):
        return [(torch.full((n,), e, dtype=torch.long), torch.arange(n)) for e, n in zip(self.steps, sizes)]


def split_sequence(cuts: list[int]) -> FixedStream:
    g = torch.Generator().manual_seed(0)
    n = sum(cuts)
    y = torch.arange(n) % 4
    x = torch.randn(n, 1, 2, 2, generator=g)
    x[:, 0, 0, 0] = torch.arange(n).float()
    exps, start = [], 0
    for i, c in enumerate(cuts):
        rows = torch.arange(start, start + c)
        test = TensorData(x[rows] + 1000, y[rows])
        exps.append(Experience(i, TensorData(x[rows], y[rows]), test, (0, 1, 2, 3), i))
        start += c
    return FixedStream("seq", "task_agnostic", exps, 4, (1, 2, 2), [0, 1, 2, 3])


def test_hidden_boundaries_leave_no_trace_on_the_live_learner(tmp_path):
    """Same sample sequence, boundaries at other places: the live learner's record of
    calls and batches is identical (no eval()/before_eval/predict, no short batch at a
    boundary: batches straddle it), and its final weights too."""
    logs, weights = [], []
    for cuts in ([40, 40, 40], [30, 53, 37]):
        sc = split_sequence(cuts)
        s = Recorder(info=sc.info)
        protocol.run(sc, s, settings=settings(tmp_path))
        logs.append(s.log)
        weights.append(s.bias.detach().clone())
    assert logs[0] == logs[1]
    assert not any(call[0] in ("predict", "before_eval", "begin", "end") for call in logs[0])
    assert [c for c in logs[0] if c == ("train", False)] == []
    assert [c[1] for c in logs[0] if c[0] == "observe"] == [8] * 15  # 120 samples: no short batch anywhere
    assert ("end_stream",) in logs[0]
    assert torch.equal(weights[0], weights[1])


class SpyEncoder(nn.Module):
    """A frozen encoder that writes down the id (pixel 0) of every input it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1), requires_grad=False)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen += [int(v) for v in x[:, 0, 0, 0]]
        return x.flatten(1) * self.w


class EncodedLearner(Recorder):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.encoder = SpyEncoder()
        self.seen_at_begin: list[set] = []

    def frozen_encoder(self):
        return self.encoder

    def begin_experience(self, info) -> None:
        self.seen_at_begin.append(set(self.encoder.seen))

    def predict(self, x, task=None):
        return self.bias.expand(len(x), -1)


def test_frozen_encoder_sees_each_experience_when_it_starts_and_never_a_test_input(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_CACHE", "off")
    sc = blob_scenario(n_exp=3, per_class=10, test_per_class=5)
    s = EncodedLearner(info=sc.info)
    protocol.run(sc, s, settings=settings(tmp_path))
    ids = [set(int(i) for i in e.train.x[:, 0, 0, 0]) for e in sc.experiences]
    for i, seen in enumerate(s.seen_at_begin):
        assert seen == set().union(*ids[: i + 1]), i  # experience i's inputs (train + validation), no later ones
    assert all(v < 1_000_000 for v in s.encoder.seen)  # test ids start at 1e6: encoded only on the copy
