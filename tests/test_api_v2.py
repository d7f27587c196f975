"""Strategy API v2 (issue 12): stream size, end_stream, add-ons and their compute,
routing accuracy computed by the protocol, auxiliary metrics, loss curves, the
augmentation contract, buffers with extra fields, preferred backbones; and the honest
ends of a run (non-finite loss, SIGTERM)."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from clbench import protocol
from clbench.api.addon import Addon, AddonConfig, register_addon
from clbench.api.augment import crop_flip
from clbench.api.buffers import ClassBalancedBuffer, ReservoirBuffer
from clbench.api.strategy import Strategy, StrategyConfig
from clbench.types import Batch, Prediction, StepStats
from scenarios.task_agnostic import as_task_agnostic
from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


class Bias(Strategy):
    """A learnable bias; counts calls and steps on itself."""

    name = "_bias"

    def __init__(self, config=None, info=None, backbone=None, **kw) -> None:
        super().__init__(config or StrategyConfig(name="_bias", epochs=2, batch_size=8), info, backbone, **kw)
        self.bias = nn.Parameter(torch.zeros(info.num_classes))
        self.opt = torch.optim.SGD(self.parameters(), lr=0.1)
        self.calls: list[str] = []
        self.steps = 0

    def observe(self, batch: Batch) -> StepStats:
        self.steps += 1
        self.calls.append("observe")
        loss = nn.functional.cross_entropy(self.bias.expand(len(batch), -1), batch.y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return StepStats(loss=loss.detach(), n=len(batch))

    def end_stream(self) -> None:
        self.calls.append("end_stream")

    def predict(self, x, task=None):
        return self.bias.expand(len(x), -1)


def test_stream_size_counts_training_samples_without_revealing_boundaries():
    sc = blob_scenario(n_exp=3, per_class=20)  # 40 training samples per experience
    assert sc.info_for(0.1).stream_size == 3 * (40 - 4)
    assert sc.info_for(0.1).num_experiences == 3
    ta = as_task_agnostic(sc, repeats=2)
    info = ta.info_for(0.1)
    assert info.stream_size == 2 * 120 and info.num_experiences is None  # no hold-out, T hidden


@pytest.mark.parametrize("agnostic", [False, True])
def test_end_stream_comes_once_after_the_last_step(tmp_path, agnostic):
    sc = blob_scenario(n_exp=3, per_class=20)
    sc = as_task_agnostic(sc) if agnostic else sc
    s = Bias(info=sc.info_for(0.1))
    protocol.run(sc, s, settings=settings(tmp_path))
    assert s.calls.count("end_stream") == 1 and s.calls[-1] == "end_stream"


@dataclass
class CountingConfig(AddonConfig):
    scale: float = 0.5


@register_addon("_counting")
class Counting(Addon):
    """Counts hooks; at the end of the stream scales the strategy's bias (a real change)."""

    config_class = CountingConfig

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.steps, self.ends, self.streams = 0, 0, 0

    def after_step(self, batch, stats) -> None:
        self.steps += 1

    def end_experience(self) -> None:
        self.ends += 1

    def end_stream(self) -> None:
        self.streams += 1
        with torch.no_grad():
            self.strategy.bias.mul_(self.config.scale)
            _ = torch.ones(64, 64) @ torch.ones(64, 64)  # compute to count

    def metrics(self) -> dict:
        return {"steps_seen": self.steps}


def test_addon_hooks_compute_and_row_label(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20)
    s = Bias(info=sc.info_for(0.1))
    addon = Counting(CountingConfig(name="_counting", scale=0.0), sc.info_for(0.1))
    record, path = protocol.run(sc, s, settings=settings(tmp_path, count_flops=True), addon=addon)
    assert addon.steps == s.steps > 0 and addon.ends == 3 and addon.streams == 1
    assert torch.count_nonzero(s.bias) == 0  # the add-on changed the live learner before the final row
    assert record.strategy["name"] == "_bias+_counting" and "+_counting" in str(path)
    assert record.extra["aux"][-1]["_counting.steps_seen"] == s.steps
    phases = record.timing["phases"][-1]
    assert "addon:_counting" in phases and "end_stream" in phases
    assert record.compute["flops_phases"][-1]["addon:_counting"] == 2 * 64 ** 3
    assert record.compute["train_flops"] >= 2 * 64 ** 3
    assert any("_counting.scale=0.0" in d for d in record.deviations)


def test_addon_composes_from_the_command_line(tmp_path):
    from clbench.config import compose

    cfg = compose(["strategy=er", "addon=_counting", "addon.scale=0.25", f"results_dir={tmp_path}"])
    assert cfg.addon.name == "_counting" and cfg.addon.scale == 0.25
    assert compose([f"results_dir={tmp_path}"]).addon.name == "none"


class Router(Bias):
    """Tags each training step with a route (= 5 + the experience whose samples it
    trains on, read from the synthetic id pixel), and at test returns a route per
    sample that is right for exactly the samples with an even id."""

    def observe(self, batch):
        stats = super().observe(batch)
        exp = int(batch.y[0]) // 2
        return StepStats(stats.loss, stats.n, route=5 + exp)

    def predict(self, x, task=None):
        exp = (x[:, 0, 0, 1]).round().long()  # the true experience, written by the test below
        ids = x[:, 0, 0, 0].round().long()
        route = torch.where(ids % 2 == 0, 5 + exp, torch.full_like(exp, 99))
        return Prediction(self.bias.expand(len(x), -1), route)


def test_routing_accuracy_is_computed_by_the_protocol(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20, test_per_class=10)
    for e in sc.experiences:  # mark each test sample with its experience (pixel 1)
        e.test.x[:, 0, 0, 1] = float(e.index)
    s = Router(info=sc.info_for(0.1))
    record, _ = protocol.run(sc, s, settings=settings(tmp_path))
    routing = record.extra["routing"][-1]
    assert routing["route_of_experience"] == {0: 5, 1: 6, 2: 7}
    assert routing["accuracy"] == pytest.approx(0.5)
    assert record.metrics["routing_accuracy"] == pytest.approx(0.5)


def test_loss_curve_is_recorded_every_n_steps(tmp_path):
    sc = blob_scenario(n_exp=2, per_class=20)
    s = Bias(info=sc.info_for(0.1))
    record, _ = protocol.run(sc, s, settings=settings(tmp_path, log_every=3))
    steps = [p[0] for p in record.extra["loss_curve"]]
    assert steps == sorted(steps) and steps[-1] == s.steps and all(v > 0 for _, v in record.extra["loss_curve"])
    assert steps[0] == 3


class Diverging(Bias):
    def observe(self, batch):
        stats = super().observe(batch)
        return StepStats(torch.tensor(float("nan")) if self.steps >= 12 else stats.loss, stats.n)


def test_non_finite_loss_fails_the_run_and_keeps_the_rows(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20)
    s = Diverging(info=sc.info_for(0.1))
    with pytest.raises(protocol.NonFiniteError, match="step 12 .*experience 2"):
        protocol.run(sc, s, settings=settings(tmp_path, log_every=4))
    from clbench.results import records

    (path,) = (tmp_path / "runs").rglob("*.json")
    rec = records.load(path)
    assert rec.status == "failed" and rec.experiences_done == 1 and len(rec.matrix) == 2  # 10 steps per experience
    assert "non-finite" in rec.error


class Killed(Bias):
    def observe(self, batch):
        if self.steps == 15:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().observe(batch)


def test_sigterm_ends_the_run_as_interrupted_with_rows_kept(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20)
    s = Killed(info=sc.info_for(0.1))
    with pytest.raises(protocol.Interrupted):
        protocol.run(sc, s, settings=settings(tmp_path))
    from clbench.results import records

    (path,) = (tmp_path / "runs").rglob("*.json")
    rec = records.load(path)
    assert rec.status == "interrupted" and rec.experiences_done == 1 and len(rec.matrix) == 2
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


# -- buffers -----------------------------------------------------------------------------
def test_reservoir_is_uniform_over_the_stream():
    from scipy.stats import chisquare

    n, capacity, trials = 300, 30, 400
    counts = torch.zeros(n)
    g = torch.Generator().manual_seed(0)
    for _ in range(trials):
        buf = ReservoirBuffer(capacity, g)
        for start in range(0, n, 16):
            ids = torch.arange(start, min(n, start + 16))
            buf.add(Batch(x=ids.float().view(-1, 1), y=ids))
        assert len(buf) == capacity and buf.seen == n
        counts[buf.y[:capacity]] += 1
    assert counts.sum() == capacity * trials
    assert chisquare(counts.numpy()).pvalue > 1e-3
    early, late = counts[:100].mean(), counts[-100:].mean()
    assert abs(early - late) < 0.15 * counts.mean()  # no bias towards recent (or old) samples


def test_buffers_keep_extra_fields_with_their_samples():
    g = torch.Generator().manual_seed(0)
    buf = ReservoirBuffer(10, g)
    x = torch.arange(40).float().view(-1, 1)
    buf.add(Batch(x=x, y=torch.arange(40)), logits=x.repeat(1, 3) * 2, expert=torch.tensor(4))
    batch, extra = buf.sample_with(5)
    assert torch.equal(extra["logits"][:, 0], batch.x[:, 0] * 2) and torch.all(extra["expert"] == 4)
    cb = ClassBalancedBuffer(12, g)
    for k in range(10):
        y = torch.full((20,), k % 4) if k < 8 else torch.full((20,), 3)
        cb.add(Batch(x=torch.randn(20, 2), y=y), expert=torch.tensor(k))
    counts = cb.class_counts()
    assert len(cb) == 12 and max(counts.values()) - min(counts.values()) <= 1


def test_augmentation_contract(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    out = crop_flip(x, g)
    assert out.shape == x.shape and not torch.equal(out, x)
    sc = blob_scenario(n_exp=2, per_class=10)
    sc.augmentation = "flip"
    seen = []

    class Keep(Bias):
        def observe(self, batch):
            seen.append((batch.x.clone(), batch.raw.clone()))
            return super().observe(batch)

    s = Keep(info=sc.info_for(0.1))
    assert s.info.augmentation == "flip"
    protocol.run(sc, s, settings=settings(tmp_path))
    assert any(not torch.equal(a, r) for a, r in seen)  # augmented inputs, raw kept beside them
    assert all(torch.equal(torch.sort(a.flatten(1), 1).values, torch.sort(r.flatten(1), 1).values) for a, r in seen)
    assert not torch.equal(s.augment(torch.arange(64.).view(4, 1, 4, 4).repeat(8, 1, 1, 1)),
                           torch.arange(64.).view(4, 1, 4, 4).repeat(8, 1, 1, 1))


class WantsViT(Bias):
    @classmethod
    def preferred_backbone(cls, info):
        return "vit_small"


def test_preferred_backbone_unless_the_user_names_one(tmp_path, monkeypatch):
    from clbench.cli import launch
    from clbench.config import compose

    captured = {}

    def fake_run(scenario, strategy, **kw):
        captured["backbone"] = strategy.backbone_config.name
        raise SystemExit

    monkeypatch.setattr(protocol, "run", fake_run)
    from clbench.api.strategy import STRATEGIES

    monkeypatch.setitem(STRATEGIES._items, "naive", type("WantsViTNaive", (STRATEGIES.get("naive"),),
                                                          {"preferred_backbone": classmethod(lambda c, i: "vit_small")}))
    base = ["strategy=naive", "scenario=split_digits", "logger=none", f"results_dir={tmp_path}"]
    for extra, expected in (([], "vit_small"), (["backbone=cnn28"], "cnn28")):
        with pytest.raises(SystemExit):
            launch.run_from_config(compose(base + extra))
        assert captured["backbone"] == expected
