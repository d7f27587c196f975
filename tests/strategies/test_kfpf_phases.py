"""k-FPF's phase count and what "FC" means (strategies/kfpf.py, issue 21), and the k-FPF
reference rows read like for like:

- a run makes exactly k FPF phases, the last on the final model, also where partial
  batches make the real stream longer than the planned N steps (k + 1 before);
- ``trunk_fc`` adds the Linear that ends cnn28's trunk to the FC part of a preset (and is
  refused where the trunk ends otherwise);
- the reference rows: k's triggers fall inside tasks, not at their ends; the FPF add-on
  rows share kfpf's FPF phase but for iterations and lr, which kfpf's record labels; the
  matched ER rows take kfpf's optimiser, lr, batch and SGD steps, with replay batch =
  stream batch.
"""
from __future__ import annotations

import math

import pytest
import torch

import strategies  # noqa: F401  (registers kfpf, kfpf_kd and the fpf add-on)
from clbench import protocol
from clbench.models.backbones import BackboneConfig, count_parameters
from clbench.types import ScenarioInfo, VISIBILITY_BY_KIND
from scenarios.task_agnostic import as_task_agnostic
from strategies.baselines import FinetuneConfig, Naive
from strategies.kfpf import FPF, KFPF, KFPFKD, KFPFConfig, KFPFKDConfig, preset_names

from synthetic import blob_scenario, resplit

CNN = BackboneConfig(name="cnn28")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cls,cfg_cls", [(KFPF, KFPFConfig), (KFPFKD, KFPFKDConfig)])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_a_run_makes_exactly_k_phases_when_partial_batches_lengthen_the_stream(tmp_path, cls, cfg_cls, k):
    sc = resplit(blob_scenario(n_exp=3, per_class=40), [85, 75, 80])  # 6 + 5 + 5 batches of 16 per epoch
    s = cls(cfg_cls(name=cls.__name__.lower(), batch_size=16, k=k, fpf_iters=1, epochs=2, buffer_size=40),
            sc.info_for(0.0), CNN, seed=0)
    protocol.run(sc, s, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu",
                                                      val_fraction=0.0, eval_rows="final"))
    real = 2 * (6 + 5 + 5)
    assert s.planned_steps == 2 * math.ceil(240 / 16) == 30 < real == s.steps
    assert len(s.fpf_steps) == k, s.fpf_steps  # before: k + 1 (k periodic triggers, then the end of the stream)
    assert s.fpf_steps == [s.period * j for j in range(1, k)] + [real]  # the k-th on the final model
    assert s.describe()["phases"] == k


def test_exactly_k_phases_on_a_task_agnostic_stream_too(tmp_path):
    sc = as_task_agnostic(blob_scenario(n_exp=3, per_class=40))  # 240 samples: 15 batches of 16, N exact
    s = KFPF(KFPFConfig(name="kfpf", batch_size=16, k=4, fpf_iters=1, buffer_size=40), sc.info_for(0.0), CNN, seed=0)
    protocol.run(sc, s, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu",
                                                      val_fraction=0.0, eval_rows="final"))
    assert s.fpf_steps == [4, 8, 12, 15]


# -- what FC means: the Linear that ends cnn28's trunk --------------------------------------------
def naive(backbone: BackboneConfig = CNN, classes: int = 10, shape=(1, 28, 28)) -> Naive:
    inf = ScenarioInfo("toy", "class_incremental", shape, classes, VISIBILITY_BY_KIND["class_incremental"],
                       stream_size=64)
    return Naive(FinetuneConfig(name="naive", lr=0.05), inf, backbone, seed=0)


def test_trunk_fc_adds_cnn28_s_projection_and_nothing_else():
    s = naive()
    bn_fc = preset_names(s, "bn_fc")
    with_fc = preset_names(s, "bn_fc", trunk_fc=True)
    assert with_fc == bn_fc[:-1] + ["backbone.trunk.13", "head"]  # SmallCNN: ... flatten(12) linear(13)
    assert preset_names(s, "fc", trunk_fc=True) == ["backbone.trunk.13", "head"]
    modules = dict(s.named_modules())
    size = {n: sum(p.numel() for p in modules[n].parameters()) for n in with_fc}
    assert sum(size[n] for n in bn_fc) == 1_738  # BN affine 448 + head 1,290: what bn_fc finetunes on cnn28
    assert size["backbone.trunk.13"] == 128 * 9 * 128 + 128
    assert sum(size.values()) == 149_322 and count_parameters(s)["total"] == 241_770


def test_trunk_fc_phase_moves_the_projection_and_freezes_the_convolutions():
    s = naive()
    g = torch.Generator().manual_seed(0)
    from clbench.api.buffers import ReservoirBuffer
    from clbench.types import Batch

    buffer = ReservoirBuffer(32, torch.Generator().manual_seed(1))
    buffer.add(Batch(x=torch.rand(32, 1, 28, 28, generator=g), y=torch.randint(0, 10, (32,), generator=g)))
    before = {k: v.clone() for k, v in s.state_dict().items() if isinstance(v, torch.Tensor)}
    fpf = FPF(iters=2, batch_size=8, lr=0.1, momentum=0.0, modules="bn_fc", bn_stats="refresh", auto_budget=0.05,
              auto_window=5, trunk_fc=True)
    fpf.check(s)
    fpf.run(s, buffer, step=1)
    after = s.state_dict()
    assert not torch.equal(before["backbone.trunk.13.weight"], after["backbone.trunk.13.weight"])
    assert all(torch.equal(before[f"backbone.trunk.{i}.weight"], after[f"backbone.trunk.{i}.weight"]) for i in (0, 4, 8))
    assert fpf.describe(s)["modules_params"] == 149_322 and fpf.describe(s)["trunk_fc"] is True


def test_trunk_fc_is_refused_where_no_linear_ends_the_trunk():
    s = naive(BackboneConfig(name="resnet18", weights="none"), shape=(3, 32, 32))
    with pytest.raises(ValueError, match=r"trunk_fc=true: the ResNet trunk does not end in a trainable Linear.*"
                                         r"valid choices: trunk_fc=false"):
        preset_names(s, "bn_fc", trunk_fc=True)
    with pytest.raises(ValueError, match=r"modules='auto' picks its own units"):
        FPF(iters=1, batch_size=4, lr=0.1, momentum=0.0, modules="auto", bn_stats="refresh", auto_budget=0.05,
            auto_window=5, trunk_fc=True)


# -- the reference rows read like for like --------------------------------------------------------------
def compose_reference(name: str, tmp_path):
    from clbench.config import compose

    return compose([f"experiment=reference/{name}", f"results_dir={tmp_path}"])


KFPF_ROWS = {"split_fmnist": ["split_fmnist_kfpf", "split_fmnist_kfpf_kd"],
             "split_fmnist_stream": ["split_fmnist_stream_kfpf", "split_fmnist_stream_kfpf_kd"]}


@pytest.mark.usefixtures("fmnist_available")
@pytest.mark.parametrize("scenario", sorted(KFPF_ROWS))
def test_reference_k_triggers_fall_inside_tasks_not_at_their_ends(tmp_path, scenario):
    from omegaconf import OmegaConf

    from clbench.api.scenario import build_scenario
    from clbench.config import data_root

    for name in KFPF_ROWS[scenario]:
        cfg = compose_reference(name, tmp_path)
        sc = build_scenario(OmegaConf.to_object(cfg.scenario), data_root=data_root(cfg), seed=0)
        info = sc.info_for(cfg.val_fraction)
        s = KFPF(KFPFConfig(**{k: v for k, v in OmegaConf.to_container(cfg.strategy).items() if k != "kd_alpha"}),
                 info, CNN, seed=0)
        B, k = s.config.batch_size, s.config.k
        if sc.visibility.boundaries:  # the protocol holds out round(n * val_fraction) of each experience
            sizes = [len(e.train) - round(len(e.train) * cfg.val_fraction) for e in sc.experiences]
            per_task = [s.config.epochs * math.ceil(n / B) for n in sizes]
        else:  # one stream: each stretch is `repeats` passes over its experience
            per_task = [info.stream_size / len(sc.steps) / B] * len(sc.steps)
        ends = [sum(per_task[:i + 1]) for i in range(len(per_task))]
        triggers = [s.period * j for j in range(1, k)]
        assert k >= 3 and len(triggers) == k - 1
        task = min(per_task)
        gaps = [min(abs(t - e) for e in ends) for t in triggers]
        assert min(gaps) >= 0.15 * task, (name, triggers, ends)  # never at a task end (k=5 was: 1 step off)


FPF_PHASE = {"iters": "fpf_iters", "batch_size": "fpf_batch_size", "lr": "fpf_lr", "momentum": "fpf_momentum",
             "modules": "modules", "bn_stats": "bn_stats", "trunk_fc": "trunk_fc"}
#: what the add-on rows' FPF phase may differ in from kfpf's (kfpf's short phase drives an Adam-trained
#: naive to its level or below; measured in the rows' comments): each must be a deviation of the kfpf row
LABELLED = {"iters", "lr"}


@pytest.mark.parametrize("scenario", sorted(KFPF_ROWS))
def test_reference_fpf_addon_rows_share_kfpf_s_fpf_phase_or_label_the_difference(tmp_path, scenario):
    from omegaconf import OmegaConf

    from strategies.kfpf import FPFAddonConfig

    kfpf = compose_reference(f"{scenario}_kfpf", tmp_path).strategy
    s = KFPF(KFPFConfig(**OmegaConf.to_container(kfpf)), naive().info, CNN, seed=0)
    defaults = FPFAddonConfig(name="fpf")
    for base in ("er", "naive"):
        addon = compose_reference(f"{scenario}_{base}_fpf", tmp_path).addon
        differ = {a for a, b in FPF_PHASE.items() if addon[a] != kfpf[b]}
        assert differ <= LABELLED, (scenario, base, differ)  # batch, momentum, modules, BN, trunk_fc: the same
        for a in differ:  # the add-on row keeps the FPF default; kfpf's record names its own value as a deviation
            assert addon[a] == getattr(defaults, a), (scenario, base, a)
            assert f"{FPF_PHASE[a]}={kfpf[FPF_PHASE[a]]!r} (our default: {getattr(defaults, a)!r})" in s.deviations(), a


@pytest.mark.parametrize("scenario", sorted(KFPF_ROWS))
def test_reference_matched_er_rows_take_kfpf_s_sgd(tmp_path, scenario):
    kfpf = compose_reference(f"{scenario}_kfpf", tmp_path)
    er = compose_reference(f"{scenario}_er_sgd_matched", tmp_path)
    assert er.strategy.name == "er" and er.strategy.optimizer == kfpf.strategy.optimizer == "sgd"
    for key in ("lr", "momentum", "weight_decay", "batch_size", "epochs", "buffer_size"):
        assert er.strategy[key] == kfpf.strategy[key], key
    assert er.strategy.replay_batch_size == er.strategy.batch_size  # replay batch = stream batch
    assert plain(er.scenario) == plain(kfpf.scenario) and er.count_flops and er.device == kfpf.device
    assert er.seed == kfpf.seed and er.val_fraction == kfpf.val_fraction  # the same stream: the same SGD steps


def plain(node) -> dict:
    """A config node as a plain dict."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)
