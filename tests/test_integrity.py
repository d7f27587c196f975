"""Protocol integrity (issue 11): evaluation tells the learner nothing, hidden boundaries
leave no trace, frozen encoders see data only when the protocol allows, the feature
cache cannot serve stale features, and strategies reach no data root."""
from __future__ import annotations

import ast
import hashlib
import importlib
import linecache
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from clbench import protocol

from clbench.models import features
from clbench.models.backbones import BackboneConfig
from clbench.api.data import TensorData
from clbench.api.scenario import Scenario
from clbench.api.strategy import Strategy, StrategyConfig
from clbench.types import Batch, Experience, StepStats
from strategies.baselines import ERConfig, ExperienceReplay, FinetuneConfig, Naive
from synthetic import blob_scenario

REPO = Path(__file__).resolve().parents[1]


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


class Recorder(Strategy):
    """Learns a bias; records, on the object it lives in, every call and a digest of
    every batch it is handed. Evaluation copies append to their own lists (and to the
    class-level ``eval_batches``, the test's side channel)."""

    eval_batches: list = []

    def __init__(self, config=None, info=None, backbone=None, **kw) -> None:
        super().__init__(config or StrategyConfig(name="_recorder", epochs=1, batch_size=8), info, backbone, **kw)
        self.bias = nn.Parameter(torch.zeros(info.num_classes))
        self.opt = torch.optim.SGD(self.parameters(), lr=0.1)
        self.log: list = []

    def train(self, mode: bool = True):
        if hasattr(self, "log"):
            self.log.append(("train", mode))
        return super().train(mode)

    def begin_experience(self, info) -> None:
        self.log.append(("begin", info.index))

    def end_experience(self) -> None:
        self.log.append(("end",))

    def end_stream(self) -> None:
        self.log.append(("end_stream",))

    def before_eval(self) -> None:
        self.log.append(("before_eval",))

    def observe(self, batch: Batch) -> StepStats:
        digest = hashlib.sha1(batch.x.numpy().tobytes()).hexdigest()[:10]
        self.log.append(("observe", len(batch), digest))
        loss = nn.functional.cross_entropy(self.bias.expand(len(batch), -1), batch.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    def predict(self, x, task=None):
        self.log.append(("predict", len(x)))
        Recorder.eval_batches.append(x[:, 0, 0, 0].clone())
        return self.bias.expand(len(x), -1)


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


@pytest.mark.parametrize("kind", ["class_incremental", "task_incremental"])
def test_test_batches_mix_experiences_and_have_a_fixed_size(tmp_path, kind):
    Recorder.eval_batches = []
    sc = blob_scenario(kind, n_exp=3, per_class=10, test_per_class=25)
    s = Recorder(info=sc.info)
    protocol.run(sc, s, settings=settings(tmp_path, eval_batch_size=16))
    assert not any(c[0] == "predict" for c in s.log)  # the live learner never predicts
    batches = Recorder.eval_batches
    owner = {int(i): k for k, e in enumerate(sc.experiences) for i in e.test.x[:, 0, 0, 0]}
    mixed = [len({owner[int(i)] for i in b}) > 1 for b in batches if len(b) == 16]
    assert sum(mixed) >= 0.8 * len(mixed)
    sizes = [len(b) for b in batches]
    # per evaluation point all batches are full but the last: sizes say nothing of the experience
    assert sizes.count(16) >= len(sizes) - (4 if kind == "task_incremental" else 3)


class _Naive(Naive):
    pass


class CallCounter(Naive):
    """The adversary of issue 11: assumes the evaluator calls predict experience by
    experience, so that batch k of a row belongs to experience k // batches_per_exp,
    and masks the scores to that experience's classes."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.classes: list = []
        self.calls = 0

    def begin_experience(self, info) -> None:
        self.classes.append(list(info.classes))

    def before_eval(self) -> None:
        self.calls = 0

    def predict(self, x, task=None):
        scores = super().predict(x, task)
        guess = min(self.calls // 4, len(self.classes) - 1)  # 200 test images per exp, batches of 50
        self.calls += 1
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.classes[guess]] = 0
        return scores + mask


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_adapting_on_predict_calls_does_not_beat_naive(tmp_path):
    from omegaconf import OmegaConf

    from clbench.config import compose, data_root
    from clbench.api.scenario import build_scenario
    from conftest import small_run_overrides

    cfg = compose(small_run_overrides(tmp_path, "strategy=naive", train_per_class=100, test_per_class=100))
    sc = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
    config = FinetuneConfig(name="naive", epochs=1, optimizer="adam", lr=1e-3)
    acc = {}
    for cls in (Naive, CallCounter):
        torch.manual_seed(0)
        s = cls(config, sc.info_for(0.1), OmegaConf.to_object(cfg.backbone), seed=0)
        record, _ = protocol.run(sc, s, settings=settings(tmp_path, eval_batch_size=50))
        acc[cls.__name__] = record.metrics["ACC"]
    assert acc["CallCounter"] <= acc["Naive"] + 0.03, acc


def test_live_state_does_not_depend_on_how_often_it_was_evaluated(tmp_path):
    states = []
    for rows in ("all", "final"):
        sc = blob_scenario(n_exp=3, per_class=20)
        torch.manual_seed(0)
        s = ExperienceReplay(ERConfig(name="er", epochs=2, batch_size=8, buffer_size=20), sc.info_for(0.1),
                             BackboneConfig(name="cnn28", width=4), seed=0)
        record, _ = protocol.run(sc, s, settings=settings(tmp_path, eval_rows=rows))
        assert record.status == "complete"
        states.append(s.state_dict())
    a, b = states
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
    ea, eb = a["_extra_state"], b["_extra_state"]
    assert all(torch.equal(ea["generators"][k], eb["generators"][k]) for k in ea["generators"])
    assert torch.equal(ea["stateful"]["buffer"]["fields"]["x"], eb["stateful"]["buffer"]["fields"]["x"])
    assert ea["stateful"]["buffer"]["seen"] == eb["stateful"]["buffer"]["seen"]


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


# -- the feature cache is keyed by content, weights and code ------------------------------
def _enc(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_cache_never_serves_another_copy_of_the_same_named_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 1, 4, 4, generator=g)
    y = torch.arange(30) % 3
    plain = TensorData(x, y, fingerprint="fmnist/train")
    inverted = TensorData(1 - x, y, fingerprint="fmnist/train")  # same name, same labels, other pixels
    enc = _enc()
    a = features.encode(enc, plain, device=torch.device("cpu"), cache=tmp_path)
    b = features.encode(enc, inverted, device=torch.device("cpu"), cache=tmp_path)
    assert not torch.allclose(a.x, b.x)
    assert torch.allclose(b.x, enc(1 - x), atol=1e-6)
    perm0, perm1 = torch.randperm(16, generator=g), torch.randperm(16, generator=g)  # "PermutedMNIST" seeds
    p0 = TensorData(x.flatten(1)[:, perm0].view_as(x), y, fingerprint="permuted")
    p1 = TensorData(x.flatten(1)[:, perm1].view_as(x), y, fingerprint="permuted")
    rot = TensorData(torch.rot90(x, 1, (2, 3)), y, fingerprint="permuted")
    keys = {features.cache_key(enc, d, torch.device("cpu")) for d in (p0, p1, rot, plain)}
    assert len(keys) == 4


def test_cache_stores_features_only_and_labels_come_from_the_dataset(tmp_path):
    x, y = torch.rand(12, 1, 4, 4), torch.arange(12) % 3
    enc = _enc()
    features.encode(enc, TensorData(x, y), device=torch.device("cpu"), cache=tmp_path)
    (path,) = tmp_path.glob("*.pt")
    assert set(torch.load(path, weights_only=True)) == {"features"}
    relabelled = features.encode(enc, TensorData(x, (y + 1) % 3), device=torch.device("cpu"), cache=tmp_path)
    assert torch.equal(relabelled.y, (y + 1) % 3)  # a hit, with the dataset's own labels


ENCODER_SOURCE = '''
import torch.nn.functional as F
from torch import nn


class Resizer(nn.Module):
    def forward(self, x):
        return F.interpolate(x, size=(8, 8), mode="{mode}").flatten(1)
'''


def test_a_code_change_in_the_encoder_is_a_new_cache_entry(tmp_path, monkeypatch):
    pkg = tmp_path / "encmod"
    pkg.mkdir()
    monkeypatch.syspath_prepend(str(pkg))
    file = pkg / "clbench_test_encoder.py"
    keys = []
    data = TensorData(torch.rand(5, 1, 4, 4), torch.zeros(5, dtype=torch.long))
    for mode in ("bilinear", "nearest"):
        file.write_text(ENCODER_SOURCE.format(mode=mode))
        linecache.clearcache()
        sys.modules.pop("clbench_test_encoder", None)
        module = importlib.import_module("clbench_test_encoder")
        keys.append(features.cache_key(module.Resizer(), data, torch.device("cpu")))
    assert keys[0] != keys[1]


# -- no data roots in strategies -------------------------------------------------------
def test_strategies_never_import_scenarios_nor_take_a_data_root():
    for path in sorted((REPO / "strategies").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("scenarios"), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("scenarios") for a in node.names), path.name
            elif isinstance(node, ast.Attribute):
                assert node.attr != "data_root", f"{path.name} reaches for a data root"
    import inspect

    assert "data_root" not in inspect.signature(Strategy.__init__).parameters
