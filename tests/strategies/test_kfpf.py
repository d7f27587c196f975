"""FPF (add-on), k-FPF and k-FPF-KD: the invariants of strategies/kfpf.py.

- an FPF phase changes ONLY the chosen modules (every other tensor bit for bit, BatchNorm
  running statistics included), on cnn28 and ResNet-18, for every preset;
- k-FPF's triggers fire at exactly the planned steps, the same on streams that differ only
  in where the boundaries fall;
- its buffer is a uniform reservoir over the stream (chi-square test);
- k-FPF never replays between triggers (replayed and forwarded samples counted);
- k-FPF-KD stores the training logits and matches them in the FPF loss.
"""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import strategies  # noqa: F401  (registers kfpf, kfpf_kd and the fpf add-on)
import strategies.kfpf as kfpf_module
from clbench import protocol
from clbench.models.backbones import BackboneConfig
from clbench.api.buffers import ReservoirBuffer
from clbench.api.scenario import Scenario
from clbench.types import TASK_AGNOSTIC, VISIBILITY_BY_KIND, Batch, ScenarioInfo
from scenarios.task_agnostic import as_task_agnostic
from strategies.baselines import ERConfig, ExperienceReplay, FinetuneConfig, Naive
from strategies.kfpf import (FPF, KFPF, KFPFKD, FPFAddon, FPFAddonConfig, KFPFConfig, KFPFKDConfig, Sensitivity,
                             last_stage_names, planned_steps, preset_names)

from conftest import small_run_overrides
from synthetic import blob_scenario, resplit

CNN = BackboneConfig(name="cnn28")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second thread buys nothing and, on a busy machine, costs
    a lot of waiting. Restored afterwards for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def info(kind: str = "class_incremental", shape=(1, 8, 8), classes: int = 4, stream_size: int = 400) -> ScenarioInfo:
    return ScenarioInfo("toy", kind, shape, classes, VISIBILITY_BY_KIND[kind], stream_size=stream_size)


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def trained_naive(backbone=CNN, shape=(1, 8, 8), steps: int = 3, seed: int = 0):
    """A naive learner after a few SGD steps, and a full buffer of the data it saw."""
    g = torch.Generator().manual_seed(seed)
    s = Naive(FinetuneConfig(name="naive", lr=0.05), info(shape=shape), backbone, seed=seed)
    buffer = ReservoirBuffer(64, torch.Generator().manual_seed(1))
    s.train()
    for _ in range(steps):
        batch = Batch(x=torch.rand(16, *shape, generator=g), y=torch.randint(0, 4, (16,), generator=g))
        s.observe(batch)
        buffer.add(batch)
    return s, buffer


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("_extra_state")}


def inside(name: str, modules: list[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in modules)


# -- module presets -----------------------------------------------------------------------
def test_presets_resolve_on_cnn28():
    s, _ = trained_naive(steps=0)
    # SmallCNN: conv(0) bn(1) relu pool conv(4) bn(5) relu pool conv(8) bn(9) relu avgpool flatten linear(13)
    assert preset_names(s, "bn_fc") == ["backbone.trunk.1", "backbone.trunk.5", "backbone.trunk.9", "head"]
    assert preset_names(s, "bn_fc_last_stage") == ["backbone.trunk.1", "backbone.trunk.5", "backbone.trunk.8",
                                                   "backbone.trunk.9", "head"]
    assert preset_names(s, "fc") == ["head"]
    with pytest.raises(ValueError, match=r"modules='bn'.*valid choices: \['bn_fc', 'bn_fc_last_stage', 'fc', 'auto'\]"):
        preset_names(s, "bn")


def test_presets_resolve_on_resnet18_and_describe_counts_parameters():
    s = Naive(FinetuneConfig(name="naive"), info(shape=(3, 16, 16)), BackboneConfig(name="resnet18"))
    bn_fc = preset_names(s, "bn_fc")
    assert bn_fc[0] == "backbone.trunk.bn1" and bn_fc[-1] == "head"
    assert len(bn_fc) == 20 + 1  # the 20 BatchNorms of ResNet-18 and the head
    last = preset_names(s, "bn_fc_last_stage")
    assert "backbone.trunk.layer4" in last and not any(n.startswith("backbone.trunk.layer4.") for n in last)
    fpf = FPF(iters=1, batch_size=4, lr=0.1, momentum=0.0, modules="bn_fc", bn_stats="refresh", auto_budget=0.05,
              auto_window=5)
    facts = fpf.describe(s)
    assert facts["modules"] == bn_fc
    assert facts["modules_params"] == 2 * 4800 + (512 * 4 + 4)  # BN affine of ResNet-18 + the 4-class head
    assert 0 < facts["modules_params_fraction"] < 0.01


def test_models_a_preset_does_not_fit_are_refused_with_the_choices():
    class NoBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.backbone(x))

    with pytest.raises(ValueError, match=r"no trainable BatchNorm.*valid choices for this backbone: 'fc', 'auto'"):
        preset_names(NoBN(), "bn_fc")
    assert preset_names(NoBN(), "fc") == ["head"]
    with pytest.raises(ValueError, match=r"needs a `backbone.trunk`"):
        last_stage_names(NoBN())
    headless = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"classification head `head`.*naive, er"):
        preset_names(headless, "fc")


# -- an FPF phase changes only the chosen modules ------------------------------------------
@pytest.mark.parametrize("modules, bn_stats", [("bn_fc", "refresh"), ("bn_fc", "frozen"), ("fc", "refresh"),
                                               ("bn_fc_last_stage", "refresh"), ("auto", "refresh")])
def test_fpf_phase_changes_only_the_chosen_modules(modules, bn_stats):
    s, buffer = trained_naive()
    fpf = FPF(iters=4, batch_size=16, lr=0.5, momentum=0.9, modules=modules, bn_stats=bn_stats, auto_budget=0.05,
              auto_window=1)
    fpf.start(s)
    for _ in range(2):  # some movement for the sensitivity score
        s.observe(Batch(x=torch.rand(16, 1, 8, 8), y=torch.randint(0, 4, (16,))))
        fpf.after_step(s)
    s.train()
    before, grads_before = snapshot(s), {n: p.grad for n, p in s.named_parameters()}
    modes = {n: m.training for n, m in s.named_modules()}
    replayed = fpf.run(s, buffer, step=7)
    after = snapshot(s)
    chosen = fpf.phases[-1]["modules"]
    assert replayed == 4 * 16 and fpf.phases[-1]["step"] == 7
    frozen = [k for k in before if not inside(k, chosen)]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen), \
        [k for k in frozen if not torch.equal(before[k], after[k])]
    params = {n for n, _ in s.named_parameters()}
    moved = [k for k in before if inside(k, chosen) and k in params and not torch.equal(before[k], after[k])]
    assert moved and all(inside(k, chosen) for k in moved)
    stats = [k for k in before if k.endswith("running_mean")]
    changed_stats = [k for k in stats if not torch.equal(before[k], after[k])]
    if bn_stats == "frozen":
        assert changed_stats == []
    else:  # refreshed on buffer data: exactly the chosen BatchNorms
        assert changed_stats == [k for k in stats if inside(k, chosen)]
        assert changed_stats or modules in ("fc", "auto")
    if modules in ("bn_fc", "bn_fc_last_stage"):
        assert "head.weight" in moved and "backbone.trunk.1.weight" in moved
    if modules == "bn_fc_last_stage":
        assert "backbone.trunk.8.weight" in moved and "backbone.trunk.4.weight" in frozen
    assert {n: m.training for n, m in s.named_modules()} == modes  # modes restored
    assert all(p.grad is grads_before[n] for n, p in s.named_parameters())  # the learner's gradients untouched


def test_fpf_phase_on_resnet18_freezes_the_rest_bit_for_bit():
    torch.manual_seed(0)
    s, buffer = trained_naive(BackboneConfig(name="resnet18"), shape=(3, 16, 16), steps=1)
    for modules in ("fc", "bn_fc_last_stage"):
        fpf = FPF(iters=2, batch_size=8, lr=0.1, momentum=0.0, modules=modules, bn_stats="refresh", auto_budget=0.05,
                  auto_window=5)
        before = snapshot(s)
        fpf.run(s, buffer, step=1)
        after = snapshot(s)
        chosen = fpf.phases[-1]["modules"]
        assert all(torch.equal(before[k], after[k]) for k in before if not inside(k, chosen))
        assert not torch.equal(before["head.weight"], after["head.weight"])
        if modules == "bn_fc_last_stage":
            def same(key: str) -> bool:
                return torch.equal(before[f"backbone.trunk.{key}"], after[f"backbone.trunk.{key}"])

            assert not same("layer4.1.conv2.weight") and same("layer3.1.conv2.weight")
            assert not same("layer1.0.bn1.running_var")  # every BatchNorm is chosen and refreshed


# -- the sensitivity score ---------------------------------------------------------------
def test_sensitivity_ranks_by_displacement_per_parameter_and_respects_the_budget():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.big = nn.Linear(10, 10)  # 110 parameters
            self.head = nn.Linear(10, 2)  # 22 parameters
            self.small = nn.Linear(2, 2)  # 6 parameters

    m = Toy()
    sens = Sensitivity(window=2)
    sens.restart(m)
    for step in range(4):
        with torch.no_grad():
            m.big.weight += 0.01  # large total movement, small per parameter
            m.head.weight += 0.1 if step % 2 == 0 else 0.0
            if step == 0:
                m.small.weight.zero_()  # one jump
        sens.tick(m)
    scores = sens.scores(m)
    assert sens.windows == 2
    assert math.isclose(scores["big"], math.sqrt(2 * (100 * 0.02 ** 2) / (110 * 2)), rel_tol=1e-5)
    assert math.isclose(scores["head"], math.sqrt(2 * (20 * 0.1 ** 2) / (22 * 2)), rel_tol=1e-5)
    assert scores["head"] > scores["big"]
    total = 110 + 22 + 6
    ranked = sorted(scores, key=lambda n: -scores[n])
    assert sens.select(m, budget=25 / total) == ranked[:1]  # the top unit always, then what fits
    assert sens.select(m, budget=1.0) == ranked
    state = io.BytesIO()
    torch.save(sens.state_dict(), state)
    state.seek(0)
    again = Sensitivity(window=7)
    again.load_state_dict(torch.load(state, weights_only=True))
    assert again.scores(m) == scores and again.window == 2


# -- k-FPF: the trigger schedule ---------------------------------------------------------------
def test_planned_steps_formula():
    assert planned_steps(4500, 32, 2, boundaries=True) == 2 * 141
    assert planned_steps(4500, 32, 2, boundaries=False) == 141  # task-agnostic: repeats are in stream_size
    with pytest.raises(ValueError, match="stream_size, which is 0"):
        planned_steps(0, 32, 1, boundaries=True)


def run_kfpf(tmp_path, scenario: Scenario, **cfg) -> KFPF:
    settings_ = {"batch_size": 16, "k": 4, "fpf_iters": 1, "epochs": 2, "buffer_size": 40, **cfg}
    s = KFPF(KFPFConfig(name="kfpf", **settings_), scenario.info_for(0.0), CNN, seed=0)
    protocol.run(scenario, s, settings=settings(tmp_path, val_fraction=0.0, eval_rows="final"))
    return s


@pytest.mark.parametrize("kind", ["task_agnostic", "class_incremental"])
def test_kfpf_triggers_at_the_planned_steps_whatever_the_boundaries(tmp_path, kind):
    base = blob_scenario(n_exp=3, per_class=40)  # 240 samples, 80 per experience
    runs = []
    for sizes in ([80, 80, 80], [160, 80], [48, 96, 96]):
        sc = resplit(base, sizes, kind="class_incremental")
        runs.append(run_kfpf(tmp_path, as_task_agnostic(sc) if kind == TASK_AGNOSTIC else sc))
    epochs = 1 if kind == TASK_AGNOSTIC else 2
    n = epochs * 15  # ceil(240 / 16) steps per pass
    period = math.ceil(n / 4)
    expected = [period * i for i in range(1, 4)] + [n]  # every ceil(N/k) steps, plus once at the end
    for s in runs:
        assert s.planned_steps == n and s.period == period and s.steps == n
        assert s.fpf_steps == expected
    # class-incremental: boundaries at 10, 20, 30 steps of [80, 80, 80] (2 epochs); triggers ignore them
    if kind != TASK_AGNOSTIC:
        assert expected == [8, 16, 24, 30]


def test_kfpf_end_of_stream_phase_is_not_doubled_when_the_last_step_triggered(tmp_path):
    s = run_kfpf(tmp_path, as_task_agnostic(blob_scenario(n_exp=3, per_class=40)), k=5)  # N = 15, period 3
    assert s.fpf_steps == [3, 6, 9, 12, 15]


# -- k-FPF: the buffer and no replay between triggers --------------------------------------------------
SCALE = 4096.0  # stream positions / 4096 are exact in float32 and stay small inputs


def stream(n: int, batch: int, seed: int = 0):
    """Batches of a synthetic stream whose pixel 0 holds each sample's stream position."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        x = torch.rand(batch, 1, 4, 4, generator=g)
        x[:, 0, 0, 0] = torch.arange(start, start + batch, dtype=torch.float32) / SCALE
        yield Batch(x=x, y=torch.randint(0, 4, (batch,), generator=g))


def positions(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0] * SCALE).round().long().tolist()


def test_kfpf_buffer_is_a_uniform_reservoir_over_the_stream():
    n, capacity, bins = 2000, 200, 10
    s = KFPF(KFPFConfig(name="kfpf", batch_size=50, k=2, fpf_iters=1, buffer_size=capacity),
             info(TASK_AGNOSTIC, shape=(1, 4, 4), stream_size=n), CNN, seed=3)
    for batch in stream(n, 50):
        s.observe(batch)
    held = torch.tensor(positions(s.buffer.x))
    assert len(s.buffer) == capacity and len(set(held.tolist())) == capacity and s.buffer.seen == n
    counts = torch.bincount(held // (n // bins), minlength=bins).double()
    chi2 = float(((counts - capacity / bins) ** 2 / (capacity / bins)).sum())
    assert chi2 < 27.88, (chi2, counts.tolist())  # chi-square, 9 degrees of freedom, p = 0.001
    assert counts[0] > 0 and counts[-1] < capacity / 2  # neither the oldest kept only, nor the newest (FIFO)


@pytest.mark.parametrize("cls, cfg_cls", [(KFPF, KFPFConfig), (KFPFKD, KFPFKDConfig)])
def test_kfpf_never_replays_between_triggers(monkeypatch, cls, cfg_cls):
    n, batch_size, iters = 640, 32, 3
    s = cls(cfg_cls(name=cls.__name__, batch_size=batch_size, k=3, fpf_iters=iters, fpf_batch_size=8, buffer_size=50),
            info(TASK_AGNOSTIC, shape=(1, 4, 4), stream_size=n), CNN, seed=0)
    log = {"in_fpf": False, "drawn": [], "stream_forward": 0, "fpf_forward": 0, "mse": 0, "logits": {}}
    run, sample_with, forward = s.fpf.run, s.buffer.sample_with, s.forward

    def spy_run(*a, **kw):
        log["in_fpf"] = True
        try:
            return run(*a, **kw)
        finally:
            log["in_fpf"] = False

    def spy_sample(k):
        out = sample_with(k)
        log["drawn"].append((s.steps, log["in_fpf"], len(out[0])))
        return out

    def spy_forward(x):
        out = forward(x)
        if log["in_fpf"]:
            log["fpf_forward"] += len(x)
        else:
            log["stream_forward"] += len(x)
            log["logits"].update({i: o.detach().clone() for i, o in zip(positions(x), out)})
        return out

    mse = kfpf_module.F.mse_loss

    def spy_mse(a, b):
        assert log["in_fpf"]
        log["mse"] += 1
        return mse(a, b)

    monkeypatch.setattr(s.fpf, "run", spy_run)
    monkeypatch.setattr(s.buffer, "sample_with", spy_sample)
    monkeypatch.setattr(s, "forward", spy_forward)
    monkeypatch.setattr(kfpf_module.F, "mse_loss", spy_mse)
    for b in stream(n, batch_size):
        s.observe(b)
    s.end_stream()
    assert s.fpf_steps == [7, 14, 20]  # N = 20 steps, period ceil(20 / 3) = 7, and the end
    assert all(inside for _, inside, _ in log["drawn"])  # every draw from the buffer is inside an FPF phase
    assert [step for step, _, _ in log["drawn"]] == [7] * iters + [14] * iters + [20] * iters
    assert log["stream_forward"] == n  # the SGD steps saw each incoming sample once and nothing else
    assert log["fpf_forward"] == sum(k for _, _, k in log["drawn"]) == s.fpf.replayed == 3 * iters * 8
    assert s.describe()["replayed_samples"] == 3 * iters * 8
    if cls is KFPFKD:
        assert log["mse"] == 3 * iters
        stored = s.buffer.field("logits")[: len(s.buffer)]
        ids = positions(s.buffer.x[: len(s.buffer)])
        assert stored.shape == (50, 4)  # num_classes wide
        assert all(torch.equal(stored[j], log["logits"][i]) for j, i in enumerate(ids))  # the training logits
    else:
        assert log["mse"] == 0 and s.buffer.field("logits") is None


# -- state --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, cfg_cls", [(KFPF, KFPFConfig), (KFPFKD, KFPFKDConfig)])
def test_state_round_trip_mid_stream_continues_identically(cls, cfg_cls):
    def build():
        return cls(cfg_cls(name="k", batch_size=32, k=4, fpf_iters=2, buffer_size=40, modules="auto", auto_window=2),
                   info(TASK_AGNOSTIC, shape=(1, 4, 4), stream_size=640), CNN, seed=5)

    batches = list(stream(640, 32))
    a = build()
    for b in batches[:9]:
        a.observe(b)
    blob = io.BytesIO()
    torch.save(a.state_dict(), blob)
    blob.seek(0)
    b_ = build()
    b_.load_state_dict(torch.load(blob, weights_only=True))
    assert b_.steps == 9 and b_.fpf_steps == a.fpf_steps == [5]
    for batch in batches[9:]:
        a.observe(batch)
        b_.observe(batch)
    a.end_stream()
    b_.end_stream()
    assert a.fpf.phases == b_.fpf.phases
    assert all(torch.equal(x, y) for x, y in zip(snapshot(a).values(), snapshot(b_).values()))


# -- the add-on ---------------------------------------------------------------------------------
def test_addon_on_naive_keeps_its_own_buffer_and_on_er_uses_er_s(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20)
    naive = Naive(FinetuneConfig(name="naive", epochs=1, batch_size=16), sc.info_for(0.0), CNN)
    addon = FPFAddon(FPFAddonConfig(name="fpf", iters=3, batch_size=8, buffer_size=30), sc.info_for(0.0), seed=0)
    record, _ = protocol.run(sc, naive, settings=settings(tmp_path, val_fraction=0.0, count_flops=True), addon=addon)
    details = record.strategy["addon"]["details"]
    assert record.strategy["name"] == "naive+fpf"
    assert details["buffer"] == "own" and len(addon.buffer) == 30 and addon.buffer.seen == 120
    assert details["phase_steps"] == [9] and details["replayed_samples"] == 3 * 8  # once, after the last step
    assert details["modules"] == ["backbone.trunk.1", "backbone.trunk.5", "backbone.trunk.9", "head"]
    assert record.compute["flops_phases"][-1]["addon:fpf"] > 0
    assert "fpf.iters=3 (our default: 300)" in record.deviations

    er = ExperienceReplay(ERConfig(name="er", epochs=1, batch_size=16, buffer_size=25), sc.info_for(0.0), CNN)
    addon = FPFAddon(FPFAddonConfig(name="fpf", iters=2, batch_size=8, every_experience=True), sc.info_for(0.0))
    record, _ = protocol.run(sc, er, settings=settings(tmp_path, val_fraction=0.0), addon=addon)
    details = record.strategy["addon"]["details"]
    assert details["buffer"] == "strategy" and addon.own_buffer is None and details["buffer_size"] == 25
    assert details["phase_steps"] == [3, 6, 9]  # after each experience; the end of the stream is not doubled

    blob = io.BytesIO()
    torch.save(addon.state_dict(), blob)
    blob.seek(0)
    again = FPFAddon(FPFAddonConfig(name="fpf", iters=2, batch_size=8, every_experience=True), sc.info_for(0.0))
    again.load_state_dict(torch.load(blob, weights_only=True))
    assert again.steps == 9 and again.fpf.phases == addon.fpf.phases


def test_bad_settings_are_refused_with_the_valid_choices():
    toy = info(TASK_AGNOSTIC, shape=(1, 4, 4), stream_size=64)
    with pytest.raises(ValueError, match=r"modules='bn'.*valid choices"):
        KFPF(KFPFConfig(name="kfpf", modules="bn"), toy, CNN)
    with pytest.raises(ValueError, match=r"bn_stats='update'.*valid choices: \['refresh', 'frozen'\]"):
        KFPF(KFPFConfig(name="kfpf", bn_stats="update"), toy, CNN)
    with pytest.raises(ValueError, match=r"k=0 is out of range"):
        KFPF(KFPFConfig(name="kfpf", k=0), toy, CNN)
    with pytest.raises(ValueError, match=r"auto_budget=0.0"):
        KFPF(KFPFConfig(name="kfpf", auto_budget=0.0), toy, CNN)
    with pytest.raises(ValueError, match=r"stream_size, which is 0"):
        KFPF(KFPFConfig(name="kfpf"), info(TASK_AGNOSTIC, shape=(1, 4, 4), stream_size=0), CNN)
    with pytest.raises(ValueError, match=r"addon.buffer='mine'.*valid choices: \['auto', 'strategy', 'own'\]"):
        FPFAddon(FPFAddonConfig(name="fpf", buffer="mine"), toy)
    with pytest.raises(ValueError, match=r"addon.iters=-1"):
        FPFAddon(FPFAddonConfig(name="fpf", iters=-1), toy)
    naive = Naive(FinetuneConfig(name="naive"), toy, CNN)
    with pytest.raises(ValueError, match=r"addon.buffer='strategy' but strategy 'naive' keeps no replay buffer"):
        FPFAddon(FPFAddonConfig(name="fpf", buffer="strategy"), toy).attach(naive)


# -- end to end on real Fashion-MNIST ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_kfpf_kd_on_the_fmnist_stream_and_er_fpf_from_the_command_line(tmp_path):
    from clbench.config import compose
    from clbench.cli.launch import run_from_config

    cfg = compose(small_run_overrides(tmp_path, "strategy=kfpf_kd", "scenario=split_fmnist_stream", "strategy.k=3",
                                      "strategy.fpf_iters=5", "strategy.buffer_size=100", train_per_class=40,
                                      test_per_class=20))
    record, _ = run_from_config(cfg)
    details = record.strategy["details"]
    assert record.status == "complete" and record.strategy["name"] == "kfpf_kd"
    assert details["planned_steps"] == math.ceil(400 / 32) and details["phase_steps"] == [5, 10, 13]
    assert "backbone=cnn28 (paper: resnet18)" in record.deviations and "fpf_iters=5 (our default: 300)" in record.deviations

    cfg = compose(small_run_overrides(tmp_path, "strategy=er", "scenario=split_fmnist", "addon=fpf", "addon.iters=5",
                                      "count_flops=true", train_per_class=40, test_per_class=20))
    record, _ = run_from_config(cfg)
    assert record.strategy["name"] == "er+fpf" and record.strategy["addon"]["details"]["buffer"] == "strategy"
    assert record.compute["train_flops"] >= sum(p.get("addon:fpf", 0) for p in record.compute["flops_phases"]) > 0
    assert 0.0 <= record.metrics["ACC"] <= 1.0
