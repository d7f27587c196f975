"""CLR's defining invariants: identity at init, placement conv -> R -> BN, per-task
increment on ResNet-18, frozen trunk, zero forgetting, selection on validation only."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from clbench.api.auxdata import aux_for
from torch import nn

from clbench import protocol
from clbench.models.backbones import BackboneConfig, create_backbone
from clbench.config import compose
from clbench.protocol import IncompatibleError, RunSettings
from clbench.api.scenario import Scenario, build_scenario
from clbench.types import TASK_INCREMENTAL, VISIBILITY_BY_KIND, Experience, ExperienceInfo, ScenarioInfo
from scenarios.class_incremental import ClassIncrementalConfig
from strategies.clr import CLR, CLRConfig, CLRFull, ConvSlot, NormSlot, ReprogrammedNet

TI = VISIBILITY_BY_KIND[TASK_INCREMENTAL]


def info(shape=(3, 32, 32), classes=10) -> ScenarioInfo:
    return ScenarioInfo("t", TASK_INCREMENTAL, shape, classes, TI)


def randomised_resnet18() -> nn.Module:
    bb = create_backbone(BackboneConfig(name="resnet18"), (3, 32, 32))
    g = torch.Generator().manual_seed(1)
    for m in bb.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return bb.eval()


@pytest.mark.parametrize("wrap_1x1", [False, True])
def test_identity_at_init_equals_the_unwrapped_network(wrap_1x1):
    plain = randomised_resnet18()
    net = ReprogrammedNet(copy.deepcopy(plain), wrap_1x1)
    state = net.new_state([0, 1], torch.Generator()).eval()
    net.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = plain(x)
        net._router.state = state
        got = net.backbone(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    # a non-identity R must change the output (so the comparison above can fail)
    with torch.no_grad():
        next(iter(state.reprogram.values())).weight.mul_(1.5)
        changed = net.backbone(x)
    net._router.state = None
    assert not torch.allclose(changed, want, atol=1e-3)


@pytest.mark.parametrize("wrap_1x1,n_conv", [(False, 17), (True, 20)])
def test_every_reprogrammed_conv_feeds_its_own_batchnorm(wrap_1x1, n_conv):
    net = ReprogrammedNet(randomised_resnet18(), wrap_1x1)
    state = net.new_state([0], torch.Generator())
    calls: list[nn.Module] = []
    for m in net.backbone.modules():
        if isinstance(m, (ConvSlot, NormSlot)):
            m.register_forward_hook(lambda mod, i, o: calls.append(mod))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32), state.eval())
    convs = [i for i, m in enumerate(calls) if isinstance(m, ConvSlot)]
    assert len(convs) == n_conv and len(calls) == n_conv + 20  # ResNet-18 has 20 BatchNorms
    for i in convs:  # conv -> R -> BN: the next slot to run is a BatchNorm
        assert isinstance(calls[i + 1], NormSlot)
    kernels = {tuple(calls[i].conv.kernel_size) for i in convs}
    assert ((1, 1) in kernels) == wrap_1x1 and (7, 7) in kernels and (3, 3) in kernels


@pytest.mark.parametrize("cls,r_weights,with_bn", [(CLR, 35_136, 54_336), (CLRFull, 43_200, 62_400)])
def test_per_task_increment_on_resnet18(cls, r_weights, with_bn):
    s = cls(CLRConfig(trunk="random"), info(), BackboneConfig(name="resnet18"))
    inc = s.increment()
    assert inc["reprogram"] == r_weights and inc["excluding_head"] == with_bn
    assert inc["bn_affine"] == 9_600 and inc["bn_stats"] == 9_600 and inc["with_bn_affine"] == r_weights + 9_600
    before = {k: sum(t.numel() for t in getattr(s, k)()) for k in ("parameters", "buffers")}
    s.begin_experience(ExperienceInfo(0, (3, 7), 0))
    after = {k: sum(t.numel() for t in getattr(s, k)()) for k in ("parameters", "buffers")}
    assert after["parameters"] - before["parameters"] == r_weights + 9_600 + (512 * 2 + 2)
    assert after["buffers"] - before["buffers"] == 9_600 + 20  # + one num_batches_tracked per BN
    d = s.describe()
    assert d["trunk_params"] == 11_176_512
    assert d["increment_fraction_of_trunk"]["excluding_head"] == pytest.approx(with_bn / 11_176_512)


def test_trunk_choice_refuses_a_silent_random_init():
    with pytest.raises(ValueError, match="backbone.weights=IMAGENET1K_V1"):
        CLR(CLRConfig(), info(), BackboneConfig(name="resnet18"))
    with pytest.raises(ValueError, match="valid choices"):
        CLR(CLRConfig(trunk="imagenet"), info(), BackboneConfig(name="resnet18"))
    with pytest.raises(ValueError, match="backbone.weights"):
        CLR(CLRConfig(trunk="digits"), info(), BackboneConfig(name="cnn28", weights="/x.pt"))
    with pytest.raises(IncompatibleError, match="does not support class_incremental"):
        protocol.check_compatible(CLR, "class_incremental", "split_fmnist")


def test_predict_routes_mixed_task_ids_and_state_round_trips():
    s = CLR(CLRConfig(trunk="random"), info((1, 28, 28), 6), BackboneConfig(name="cnn28"))
    for t, cls in enumerate([(4, 1), (0, 5)]):
        s.begin_experience(ExperienceInfo(t, cls, t))
        for st in s.tasks.values():  # make the two tasks differ
            st.head.bias.data.add_(torch.randn(2))
        optimised = {id(p) for g in s.optimizer.param_groups for p in g["params"]}
        assert optimised == {id(p) for p in s.tasks[str(t)].parameters()}  # a fresh optimizer over this task only
    s.eval()
    x = torch.rand(6, 1, 28, 28)
    task = torch.tensor([0, 1, 0, 2, 1, 1])  # task 2 is not learnt yet
    with torch.no_grad():
        mixed = s.predict(x, task)
        alone = {t: s.predict(x[task == t], task[task == t]) for t in (0, 1)}
    for t in (0, 1):
        assert torch.allclose(mixed[task == t], alone[t])
    assert torch.isinf(mixed[0, [0, 2, 3, 5]]).all()
    with torch.no_grad():  # head output k scores the task's k-th class
        assert torch.allclose(mixed[0, [4, 1]], s.network(x[:1], s.tasks["0"])[0])
    assert torch.equal(mixed[3], torch.zeros(6))
    fresh = CLR(CLRConfig(trunk="random"), info((1, 28, 28), 6), BackboneConfig(name="cnn28"))
    fresh.load_state_dict(s.state_dict())
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh.predict(x, task), mixed)
    assert fresh.tasks["1"].classes == [0, 5]


def small_ti(poison_test: bool = False) -> Scenario:
    cfg = ClassIncrementalConfig(name="split_fmnist_ti", kind=TASK_INCREMENTAL, train_per_class=40, test_per_class=20)
    sc = build_scenario(cfg, data_root=None, seed=0)
    if poison_test:  # swap the two labels of every task's test set
        exps = []
        for e in sc.experiences:
            a, b = e.classes
            y = e.test.y.clone()
            y[e.test.y == a], y[e.test.y == b] = b, a
            test = type(e.test)(e.test.x, y, fingerprint=e.test.fingerprint + "/poison")
            exps.append(Experience(e.index, e.train, test, e.classes, e.task_id))
        sc = dataclasses.replace(sc, experiences=exps)
    return sc


def run_small(tmp_path, cache, scenario: Scenario) -> tuple[CLR, object, dict]:
    """A 5-task run on 40 images per class; returns the strategy, its record and the
    trunk's tensors as they were before the first task."""
    config = CLRConfig(epochs=3, patience=0, pretrain_epochs=2, cache_dir=str(cache))
    s = CLR(config, scenario.info, BackboneConfig(name="cnn28"), seed=0)
    s.prepare(aux_for(s))
    trunk = {k: v.clone() for k, v in s.network.backbone.state_dict().items()}
    record, _ = protocol.run(scenario, s, settings=RunSettings(results_dir=str(tmp_path), progress=False, device="cpu"))
    return s, record, trunk


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("clr-cache")


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, weights_cache, fmnist_available):
    return run_small(tmp_path_factory.mktemp("clean"), weights_cache, small_ti())


@pytest.mark.slow
def test_real_run_frozen_trunk_zero_forgetting_and_record(clean_run, weights_cache):
    s, record, trunk = clean_run
    after = s.network.backbone.state_dict()
    assert trunk.keys() == after.keys() and all(torch.equal(trunk[k], after[k]) for k in trunk)
    T, m = len(record.matrix[0]), record.matrix
    assert all(m[T][j] == m[j + 1][j] for j in range(T))  # R[T][j] == R[j][j], exactly
    assert record.metrics["FGT"] == 0.0 and record.metrics["BWT"] == 0.0
    assert all(m[j + 1][j] != m[j][j] for j in range(T)) and sum(m[T]) / T > 0.6  # it learnt every task
    # per task: R (32+64+128)*9, BN affine 2*224, head 128*2+2; buffers: BN stats 2*224 + 3 counters
    assert all(a["total"] == 2016 + 448 + 258 and a["buffers"] == 448 + 3 for a in record.params["added"])
    details, weights = record.strategy["details"], record.params["backbone"]["weights_source"]
    assert "sklearn digits" in weights and "sha256" in weights and details["pretraining"]["epochs"] == 2
    assert any("trunk pretrained on sklearn digits" in d for d in record.deviations)
    assert any(d.startswith("epochs=3 (paper: 60)") for d in record.deviations)
    for h in details["per_task"].values():  # best = first argmax of validation accuracy
        accs = h["val_accuracy"]
        assert h["best_epoch"] == 1 + accs.index(max(accs))
        assert h["epochs_run"] == 3 or h["epochs_run"] - h["best_epoch"] == 1  # patience 0
    # the weights file is cached: a second strategy does not pretrain again
    again = CLR(s.config, s.info, BackboneConfig(name="cnn28"), seed=0)
    again.prepare(aux_for(again))
    assert again.pretraining["cached"] and again.network.backbone.weights_source == s.network.backbone.weights_source


@pytest.mark.slow
def test_early_stopping_never_looks_at_the_test_split(tmp_path, clean_run, weights_cache):
    clean_s, clean, _ = clean_run
    poisoned_s, poisoned, _ = run_small(tmp_path, weights_cache, small_ti(poison_test=True))
    T = len(clean.matrix[0])
    assert clean.matrix[T] != poisoned.matrix[T]  # the poison shows in the test accuracy ...
    assert clean.strategy["details"]["per_task"] == poisoned.strategy["details"]["per_task"]
    a, b = clean_s.tasks.state_dict(), poisoned_s.tasks.state_dict()  # ... never in what was kept
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def test_cli_defaults_compose_offline_with_cnn28_and_digits_trunk():
    cfg = compose(["strategy=clr", "scenario=split_fmnist_ti", "logger=none"])
    assert cfg.backbone.name == "cnn28" and cfg.strategy.epochs == 60 and cfg.strategy.lr == 1e-3
    built = CLR(CLRConfig(**{k: v for k, v in cfg.strategy.items()}), info(), BackboneConfig(**cfg.backbone))
    assert built.trunk_kind == "digits"
    full = compose(["strategy=clr_full", "scenario=split_fmnist_ti", "strategy.patience=5"])
    assert full.strategy.name == "clr_full" and full.strategy.patience == 5


@pytest.mark.slow
def test_split53_fixture_routes_global_class_ranges_and_task_ids(tmp_path):
    """Tasks 10, 11 and 53 of split53 (a generated miniature): task ids 9, 10, 52,
    global class ranges, zero forgetting, per-task increment with a task-sized head."""
    from clbench.cli.launch import run_from_config
    from fixtures.split53_layout import write_split53_fixture

    root = write_split53_fixture(tmp_path / "data", tasks=[10, 11, 53], per_class_train=10, per_class_test=4)
    cfg = compose([
        "logger=none", "progress=false", f"results_dir={tmp_path}", "device=cpu", f"data_root={root}",
        "strategy=clr", "scenario=split53", "scenario.tasks='10,11,53'", "scenario.image_size=16",
        "backbone=cnn28", "backbone.width=8", "strategy.trunk=random", "strategy.epochs=2",
    ])
    record, _ = run_from_config(cfg)
    m, T = record.matrix, 3
    assert all(m[T][j] == m[j + 1][j] for j in range(T))
    details = record.strategy["details"]
    assert sorted(details["per_task"]) == ["10", "52", "9"]
    assert details["heads"] == {"9": 33 * 7, "10": 33 * 3, "52": 33 * 9}  # (4*width + 1) x classes
    r, affine = (8 + 16 + 32) * 9, 2 * (8 + 16 + 32)
    assert [a["total"] for a in record.params["added"]] == [r + affine + 33 * c for c in (7, 3, 9)]
    assert any("trunk: random init" in d for d in record.deviations)


def test_an_interrupted_clr_run_resumes_its_grown_task_states_to_the_same_record(tmp_path, monkeypatch,
                                                                                 fmnist_available):
    """CLR grows a task state per task: structure() names them, build_structure() grows them
    back before the checkpoint's tensors load, so a run stopped after row 2 and resumed ends
    with the uninterrupted run's matrix and per-task epoch selection, and without the
    "cannot be resumed" warning."""
    from clbench.cli import main as cli_main
    from clbench.results.records import load
    from probes import interrupt_after_row

    args = ["run", "strategy=clr", "scenario=split_fmnist_ti", "strategy.trunk=random", "strategy.epochs=2",
            "scenario.train_per_class=30", "scenario.test_per_class=10", "logger=none", "progress=false",
            "device=cpu"]
    assert cli_main([*args, f"results_dir={tmp_path / 'full'}"]) == 0
    interrupt_after_row(monkeypatch, 2)
    assert cli_main([*args, f"results_dir={tmp_path / 'cut'}"]) == 143
    monkeypatch.undo()
    assert cli_main([*args, f"results_dir={tmp_path / 'cut'}", "resume=auto"]) == 0
    (full,), (cut,) = ((load(p) for p in (tmp_path / d).glob("runs/*/*/*.json")) for d in ("full", "cut"))
    assert cut.status == "complete" and cut.extra["resumed"][0]["from_step"] == 2
    assert cut.matrix == full.matrix
    assert cut.strategy["details"]["per_task"] == full.strategy["details"]["per_task"]
    assert len(full.strategy["details"]["per_task"]) == 5
    assert not any("grew modules" in w for rec in (full, cut) for w in rec.extra.get("warnings", []))
