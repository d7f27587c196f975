"""MULTI-LANE's defining invariants: the lane block as the official code computes it, old
lanes bit-for-bit unchanged, a frozen backbone, a frozen stream independent of the
lanes, the per-task parameter formula (ViT-B: 168,960 COCO, 84,480 VOC), no gradient
from unknown labels, the recorded lane-path FLOP fraction, recipes by data set with
overrides recorded, and a state round trip."""
from __future__ import annotations

import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F

from clbench import protocol
from clbench.models.backbones import BACKBONE_PRESETS, BackboneConfig, count_parameters
from clbench.protocol import RunSettings
from clbench.api.scenario import Scenario
from clbench.types import CLASS_INCREMENTAL, MULTILABEL, VISIBILITY_BY_KIND, Batch, ExperienceInfo, ScenarioInfo
from scenarios.multilabel import MultiLabelSource, multilabel_experiences
from strategies import multilane
from strategies.multilane import RECIPES, MultiLane, MultiLaneConfig, lane_block

C = 6  # classes of the synthetic streams: 3 experiences x 2


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is many times faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def info(kind: str = MULTILABEL, dataset: str = "synthetic", shape=(1, 8, 8), classes: int = C) -> ScenarioInfo:
    return ScenarioInfo("t", kind, shape, classes, VISIBILITY_BY_KIND[kind], num_experiences=3, dataset=dataset)


def small(inf: ScenarioInfo = None, **overrides) -> MultiLane:
    """A tiny MULTI-LANE: ViT width 12 (3 heads of 4), 8x8 inputs (4 tokens + CLS), random frozen trunk."""
    cfg = dict(trunk="random", epochs=2, batch_size=16, lr=0.05, selectors=3, prompt_length=2, prompt_layers=2,
               small_width=2, augment="scenario", test_crop=1.0)
    cfg.update(overrides)
    return MultiLane(MultiLaneConfig(**cfg), inf or info(), BACKBONE_PRESETS["vit_small"], seed=0)


def ml_scenario(n_train: int = 90, n_test: int = 60, seed: int = 0) -> Scenario:
    """Multi-label blobs: each class adds its own 8x8 pattern; 1-3 classes per image."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(C, 1, 8, 8, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.rand(n, C, generator=g) < 0.3
        labels[torch.arange(n), torch.randint(0, C, (n,), generator=g)] = True
        x = torch.einsum("nc,cihw->nihw", labels.float(), patterns) + 0.3 * torch.randn(n, 1, 8, 8, generator=g)
        return x.sigmoid(), labels

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    src = MultiLabelSource("blobs", xtr, ytr, xte, yte, [f"c{i}" for i in range(C)], (1, 8, 8), "synthetic")
    exps = multilabel_experiences(src, [[0, 1], [2, 3], [4, 5]], torch.arange(n_train), torch.arange(n_test))
    return Scenario("ml_blobs", MULTILABEL, exps, C, (1, 8, 8), list(range(C)), description={"dataset": "synthetic"})


def ml_batch(n: int = 12, classes=(0, 1), seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, C, generator=g) < 0.5).float()
    known = torch.zeros(n, C, dtype=torch.bool)
    known[:, list(classes)] = True
    return Batch(x=torch.rand(n, 1, 8, 8, generator=g), y=y * known, known=known)


def train_lane(s: MultiLane, index: int, classes, steps: int = 3) -> None:
    s.begin_experience(ExperienceInfo(index, tuple(classes), None))
    for k in range(steps):
        s.observe(ml_batch(classes=classes, seed=10 * index + k))
    s.end_experience()


# -- the lane block ----------------------------------------------------------------------
def official_lane_block(block, lane, stream_ln1, prompts):
    """The official formulation, literally: LN1 on the lane, selectors summarise the
    LN1 stream, the frozen qkv on [cls, summaries], prompts concatenated to keys and
    values, every query computed, then only the CLS output kept; the selectors take the
    residual with their LN1 output; the frozen MLP on every lane token."""
    B, K, T, D = lane.shape
    attn = block.attn
    H, hd = attn.num_heads, D // attn.num_heads
    u = block.norm1(lane)
    sel = u[:, :, 1:]
    w = (torch.einsum("bkmd,bnd->bkmn", sel, stream_ln1) / D ** 0.5).softmax(-1)
    z = torch.cat([u[:, :, :1], torch.einsum("bkmn,bnd->bkmd", w, stream_ln1)], 2)
    q, k, v = attn.qkv(z).reshape(B, K, T, 3, H, hd).permute(3, 0, 1, 4, 2, 5)  # (B, K, H, T, hd)
    if prompts is not None:
        pk = prompts[:, 0].permute(0, 2, 1, 3).unsqueeze(0).expand(B, -1, -1, -1, -1)
        pv = prompts[:, 1].permute(0, 2, 1, 3).unsqueeze(0).expand(B, -1, -1, -1, -1)
        k, v = torch.cat([pk, k], -2), torch.cat([pv, v], -2)
    a = (q @ k.transpose(-2, -1) * hd ** -0.5).softmax(-1)
    out = attn.proj((a @ v).transpose(2, 3).reshape(B, K, T, D))
    tokens = lane + torch.cat([out[:, :, :1], sel], 2)  # drop the summaries, keep LN1(selectors)
    return tokens + block.mlp(block.norm2(tokens))


@pytest.mark.parametrize("with_prompts", [True, False])
def test_lane_block_is_the_official_computation(with_prompts):
    s = small()
    block = s.backbone.vit.blocks[0]
    g = torch.Generator().manual_seed(3)
    lane = torch.randn(2, 3, 4, 12, generator=g)  # B=2, K=3 lanes, 1+M=4 tokens, D=12
    stream_ln1 = torch.randn(2, 5, 12, generator=g)
    prompts = torch.randn(3, 2, 2, 3, 4, generator=g) if with_prompts else None  # (K, 2, L_p, H, hd)
    with torch.no_grad():
        want = official_lane_block(block, lane, stream_ln1, prompts)
        got = lane_block(block, lane, stream_ln1, prompts)
        got_last = lane_block(block, lane, stream_ln1, prompts, last=True)
        other = lane_block(block, lane, stream_ln1 + 1.0, prompts)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got_last[:, :, 0], want[:, :, 0], atol=1e-5)  # the last block carries only the CLS
    assert not torch.allclose(other, want, atol=1e-3)  # the summaries do read the stream


# -- invariants over a stream ----------------------------------------------------------------
def test_old_lanes_and_backbone_bit_for_bit_unchanged_and_slot_t_starts_from_slot_t_minus_1():
    s = small()
    backbone = {k: v.clone() for k, v in s.backbone.state_dict().items()}
    train_lane(s, 0, (0, 1))
    first = {k: v.clone() for k, v in s.lanes[0].state_dict().items()}
    s.begin_experience(ExperienceInfo(1, (2, 3), None))
    assert torch.equal(s.lanes[1].selectors, s.lanes[0].selectors)
    assert torch.equal(s.lanes[1].prompts, s.lanes[0].prompts)
    assert not any(p.requires_grad for p in s.lanes[0].parameters())
    assert {id(p) for g in s.optimizer.param_groups for p in g["params"]} == {id(p) for p in s.lanes[1].parameters()}
    for k in range(3):
        s.observe(ml_batch(classes=(2, 3), seed=20 + k))
    s.end_experience()
    train_lane(s, 2, (4, 5))
    after = s.lanes[0].state_dict()
    assert all(torch.equal(first[k], after[k]) for k in first)  # selectors, prompts, head rows: bit for bit
    assert all(torch.equal(backbone[k], v) for k, v in s.backbone.state_dict().items())
    assert not torch.equal(s.lanes[1].selectors, s.lanes[0].selectors)  # ... while the new lane did learn
    assert not torch.equal(s.lanes[1].prompts, s.lanes[0].prompts)
    assert [lane.classes for lane in s.lanes] == [[0, 1], [2, 3], [4, 5]]


def test_a_new_adam_per_task_with_a_cosine_schedule_stepped_per_epoch(monkeypatch):
    s = small(epochs=3, lr=0.04)

    class TwoBatches:  # a LearnerView with two batches per epoch
        def batches(self, batch_size):
            return iter([ml_batch(classes=(0, 1), seed=1), ml_batch(classes=(0, 1), seed=2)])

    lrs: list[float] = []
    real = s.lane_loss

    def spy(batch, lane):
        lrs.append(s.optimizer.param_groups[0]["lr"])
        return real(batch, lane)

    monkeypatch.setattr(s, "lane_loss", spy)
    s.begin_experience(ExperienceInfo(0, (0, 1), None))
    first = s.optimizer
    s.train_experience(TwoBatches())
    assert lrs == pytest.approx([0.04, 0.04, 0.03, 0.03, 0.01, 0.01])  # lr (1 + cos(pi e / 3)) / 2, e = epoch
    s.end_experience()
    s.begin_experience(ExperienceInfo(1, (2, 3), None))
    assert s.optimizer is not first and not s.optimizer.state and s.optimizer.param_groups[0]["lr"] == 0.04
    assert all(g["weight_decay"] == 0.0 and g["betas"] == (0.9, 0.999) for g in s.optimizer.param_groups)


def test_frozen_stream_is_computed_once_and_independent_of_the_lanes(monkeypatch):
    s = small(prompt_layers=6)
    for i in range(5):
        s.begin_experience(ExperienceInfo(i, (i,), None))
        with torch.no_grad():
            noise = torch.randn(s.lanes[-1].selectors.shape, generator=torch.Generator().manual_seed(i))
            s.lanes[-1].selectors.add_(noise)
        s.end_experience()
    seen: list[torch.Tensor] = []
    real = multilane.lane_block

    def spy(block, lane, stream_ln1, prompts, last=False):
        seen.append(stream_ln1.clone())
        return real(block, lane, stream_ln1, prompts, last)

    monkeypatch.setattr(multilane, "lane_block", spy)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        one = s.lane_features(x, [s.lanes[0]])
        one_stream, seen[:] = list(seen), []
        five = s.lane_features(x, list(s.lanes))
        five_stream = list(seen)
        tokens = s.backbone.block_tokens(x)
        entering = [s.backbone.embed(x)] + tokens[:-1]
    assert len(one_stream) == len(five_stream) == s.depth  # one stream pass per forward, whatever the lanes
    assert all(torch.equal(a, b) for a, b in zip(one_stream, five_stream))
    vit = s.backbone.vit
    assert all(torch.allclose(a, blk.norm1(t), atol=1e-6) for a, blk, t in zip(one_stream, vit.blocks, entering))
    assert torch.allclose(one[:, 0], five[:, 0], atol=1e-6)  # lane 0 does not see the other lanes
    assert not torch.allclose(five[:, 0], five[:, 1], atol=1e-3)


@pytest.mark.parametrize("dataset,classes,per_lane", [("coco2014", 10, 168_960), ("voc2007", 4, 84_480)])
def test_parameters_added_per_task_vit_b16(dataset, classes, per_lane):
    inf = info(dataset=dataset, shape=(3, 224, 224), classes=80 if dataset == "coco2014" else 20)
    bb = BackboneConfig(name="vit_b16", weights="none", input_size=224, normalize="half")
    s = MultiLane(MultiLaneConfig(trunk="random"), inf, bb, seed=0)
    assert sum(s.lane_parameters().values()) == per_lane
    before = count_parameters(s)["total"]
    s.begin_experience(ExperienceInfo(0, tuple(range(classes)), None))
    s.end_experience()
    assert count_parameters(s)["total"] - before == per_lane + classes * (768 + 1)
    cost = s.inference_cost()  # ViT-B: the lane path is about (1 + M) / 197 of a frozen forward
    M = RECIPES[dataset].selectors
    assert cost["stream_tokens"] == 197 and cost["paper_estimate_per_lane"] == pytest.approx((1 + M) / 197)
    assert 0.5 < cost["lane_fraction_per_lane"] / cost["paper_estimate_per_lane"] < 1.5


def test_unknown_labels_contribute_no_gradient():
    s = small()
    s.begin_experience(ExperienceInfo(0, (2, 3), None))
    batch = ml_batch(classes=(2, 3))
    batch.known[0, 3] = False  # an unknown label inside the current task too

    def grads(b: Batch) -> list[torch.Tensor]:
        s.optimizer.zero_grad(set_to_none=True)
        s.lane_loss(b, s.lanes[-1]).backward()
        return [p.grad.clone() for p in s.lanes[-1].parameters()]

    flipped = dataclasses.replace(batch, y=torch.where(batch.known, batch.y, 1.0 - batch.y))
    assert not torch.equal(flipped.y, batch.y)
    assert all(torch.equal(a, b) for a, b in zip(grads(batch), grads(flipped)))
    known_flip = batch.y.clone()
    known_flip[1, 2] = 1.0 - known_flip[1, 2]
    assert not all(torch.equal(a, b) for a, b in zip(grads(batch), grads(dataclasses.replace(batch, y=known_flip))))


def test_single_label_loss_is_cross_entropy_over_the_current_task():
    s = small(info(kind=CLASS_INCREMENTAL))
    train_lane_ci = ExperienceInfo(0, (0, 1), None)
    s.begin_experience(train_lane_ci)
    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    lane = s.lanes[-1]
    logits = s.lane_logits(s.lane_features(x, [lane])[:, 0], lane)
    assert torch.allclose(s.lane_loss(Batch(x=x, y=y), lane), F.cross_entropy(logits, y), atol=1e-6)
    with pytest.raises(ValueError, match=r"labels \[4\] are not classes of the current task"):
        s.lane_loss(Batch(x=x, y=torch.tensor([0, 1, 4, 0, 1, 0])), lane)
    s.end_experience()
    s.eval()
    scores = s.predict(x)
    assert scores.shape == (6, C) and torch.all(scores[:, 2:] == 0) and not torch.all(scores[:, :2] == 0)


def test_protocol_run_records_params_flops_and_deviations(tmp_path):
    sc = ml_scenario()
    s = small(sc.info_for(0.1))
    record, _ = protocol.run(sc, s, settings=RunSettings(results_dir=str(tmp_path), progress=False, device="cpu"))
    lane = 3 * 12 + 2 * 2 * 12 * 2  # M x D + 2 x L_p x D x prompt layers
    assert [a["total"] for a in record.params["added"]] == [lane + 2 * 13] * 3
    cost = record.strategy["details"]["inference_cost"]
    by_k = cost["lane_fraction_by_lanes"]
    assert len(by_k) == 3 and cost["lane_fraction_per_lane"] == by_k[0] > 0
    assert by_k[2] == pytest.approx(3 * by_k[0], rel=1e-6)  # k lanes cost k times one lane
    assert cost["frozen_forward_flops"] > 0 and cost["stream_tokens"] == 5
    assert record.metrics["last_mAP"] is not None and [r["lanes"] for r in record.extra["aux"]] == [1, 2, 3]
    assert any("frozen ViT: random init" in d for d in record.deviations)
    assert any(d.startswith("epochs=2 (paper, coco2014 recipe: 30)") for d in record.deviations)
    assert record.strategy["config"]["selectors"] == 3  # the record holds the resolved values


# -- recipes, input checks, preferred backbones -----------------------------------------------
@pytest.mark.parametrize("kind,dataset,want", [
    (MULTILABEL, "coco2014", "coco2014"), (MULTILABEL, "voc2007", "voc2007"), (MULTILABEL, "fmnist", "coco2014"),
    (CLASS_INCREMENTAL, "cifar100", "cifar100"), (CLASS_INCREMENTAL, "fmnist", "cifar100"),
])
def test_recipe_selected_by_dataset(kind, dataset, want):
    s = small(info(kind=kind, dataset=dataset), epochs=None, batch_size=None, lr=None, selectors=None,
              prompt_length=None, prompt_layers=None)
    r = RECIPES[want]
    c = s.config
    assert (c.epochs, c.batch_size, c.lr, c.selectors, c.prompt_length, c.prompt_layers) == \
        (r.epochs, r.batch_size, r.lr, r.selectors, r.prompt_length, r.prompt_layers)
    recipe_devs = [d for d in s.deviations() if "recipe:" in d]
    assert recipe_devs == []
    assert any("is not in the paper" in d for d in s.deviations()) == (dataset == "fmnist")


def test_overrides_are_recorded_and_the_recipe_value_is_not():
    voc = info(dataset="voc2007")
    s = small(voc, lr=0.1, selectors=10, epochs=None, batch_size=None, prompt_length=None, prompt_layers=None)
    devs = s.deviations()
    assert "lr=0.1 (paper, voc2007 recipe: 0.05)" in devs
    assert not any(d.startswith(("selectors=", "epochs=", "batch_size=")) for d in devs)  # 10 is VOC's M
    assert "augment='scenario' (paper: 'paper')" in devs and "test_crop=1.0 (paper: 0.875)" in devs
    assert not any(d.startswith(("small_width", "trunk=")) for d in devs)  # harness fields are not the recipe


@pytest.mark.parametrize("field,value,match", [
    ("augment", "mixup", r"strategy.augment='mixup' is not a valid choice; valid choices: \['paper', 'scenario'\]"),
    ("trunk", "imagenet", r"strategy.trunk='imagenet' is not a valid choice; valid choices"),
    ("selectors", 0, r"strategy.selectors=0 is out of range: must be an integer >= 1"),
    ("test_crop", 1.5, r"strategy.test_crop=1.5 is out of range: must be a number in \(0, 1\]"),
    ("prompt_layers", 9, r"prompt_layers=9 exceeds the backbone's 6 blocks; valid: 0..6"),
    ("small_normalize", "zca", r"strategy.small_normalize='zca' is not a valid choice; valid choices"),
])
def test_bad_settings_are_refused_with_the_valid_choices(field, value, match):
    with pytest.raises(ValueError, match=match):
        small(**{field: value})


def test_a_vit_b16_without_weights_is_refused_unless_random_is_asked_for():
    inf = info(dataset="voc2007", shape=(3, 224, 224), classes=20)
    with pytest.raises(ValueError, match="backbone.weights=hub"):
        MultiLane(MultiLaneConfig(), inf, BackboneConfig(name="vit_b16", weights="none", input_size=224), seed=0)
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        MultiLane(MultiLaneConfig(trunk="random"), info(), BackboneConfig(name="cnn28"), seed=0)


def test_preferred_backbone_and_small_vit_settings():
    assert MultiLane.preferred_backbone(info(dataset="voc2007", shape=(3, 224, 224))) == "vit_b16"
    cifar = info(kind=CLASS_INCREMENTAL, dataset="cifar100", shape=(3, 32, 32))
    assert MultiLane.preferred_backbone(cifar) == "vit_b16"
    assert MultiLane.preferred_backbone(info(dataset="fmnist", shape=(1, 56, 56))) == "vit_small"
    s = small(info(dataset="fmnist", shape=(1, 56, 56)), small_width=16)
    assert (s.backbone_config.input_size, s.backbone_config.width, s.backbone_config.normalize) == (32, 16, "half")
    assert s.backbone.vit.patch_embed.num_patches == 64
    kept = MultiLane(MultiLaneConfig(trunk="random", small_width=2), info(shape=(1, 56, 56)),
                     BackboneConfig(name="vit_small", width=4, input_size=56), seed=0)
    assert (kept.backbone_config.width, kept.backbone_config.input_size) == (4, 56)  # the user's values stay


# -- transforms and state ---------------------------------------------------------------------
def test_train_and_test_transforms():
    x = torch.rand(5, 1, 20, 20)
    a = multilane.random_resized_crop_flip(x, 16, torch.Generator().manual_seed(0))
    b = multilane.random_resized_crop_flip(x, 16, torch.Generator().manual_seed(0))
    assert a.shape == (5, 1, 16, 16) and torch.equal(a, b)
    assert not torch.allclose(a, multilane.random_resized_crop_flip(x, 16, torch.Generator().manual_seed(1)))
    assert torch.equal(multilane.centre_crop(x, 1.0, 20), x)
    c = multilane.centre_crop(torch.arange(64.0).view(1, 1, 8, 8), 0.5, 4)
    assert torch.equal(c, torch.arange(64.0).view(8, 8)[2:6, 2:6].view(1, 1, 4, 4))


@pytest.mark.parametrize("mid_experience", [False, True])
def test_state_round_trip_gives_identical_predictions_and_training(mid_experience):
    s = small()
    train_lane(s, 0, (0, 1))
    if mid_experience:
        s.begin_experience(ExperienceInfo(1, (2, 3), None))
        s.observe(ml_batch(classes=(2, 3), seed=5))
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    buf.seek(0)
    fresh = small()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(4, 1, 8, 8)
    s.eval(), fresh.eval()
    assert torch.equal(s.predict(x), fresh.predict(x))
    if mid_experience:  # the optimiser's moments and the schedule came back too
        s.train(), fresh.train()
        s.observe(ml_batch(classes=(2, 3), seed=6))
        fresh.observe(ml_batch(classes=(2, 3), seed=6))
        assert all(torch.equal(a, b) for a, b in zip(s.lanes[1].parameters(), fresh.lanes[1].parameters()))
        assert s.scheduler.state_dict() == fresh.scheduler.state_dict()


# -- end to end on real Fashion-MNIST mosaics --------------------------------------------------
def test_mlfmnist_end_to_end_with_a_digits_pretrained_small_vit(tmp_path, fmnist_available):
    """``mlfmnist`` through the launcher: the small ViT (preferred for 56-px inputs) is
    pretrained on sklearn digits in ``prepare`` and cached; the record names the source,
    the per-task increment and the deviations."""
    from clbench.api.auxdata import aux_for
    from clbench.config import compose
    from clbench.cli.launch import run_from_config

    cfg = compose([
        "logger=none", "progress=false", f"results_dir={tmp_path}", "device=cpu", "strategy=multilane",
        "scenario=mlfmnist", "scenario.train_mosaics=250", "scenario.test_mosaics=100", "strategy.epochs=1",
        "strategy.batch_size=32", "strategy.lr=0.015", "strategy.pretrain_epochs=1", "strategy.pretrain_side=8",
        f"strategy.cache_dir={tmp_path / 'weights'}",
    ])
    record, _ = run_from_config(cfg)
    assert record.status == "complete" and record.strategy["backbone"]["name"] == "vit_small"
    assert (record.strategy["backbone"]["input_size"], record.strategy["backbone"]["width"]) == (32, 16)
    D = 96
    assert [a["total"] for a in record.params["added"]] == [20 * D + 2 * 20 * D * 5 + 2 * (D + 1)] * 5
    assert "sklearn digits" in record.params["backbone"]["weights_source"]
    assert record.strategy["aux_data"]["pretraining"]["name"] == "sklearn_digits"
    details = record.strategy["details"]
    assert details["pretraining"]["cached"] is False and details["recipe"] == "coco2014"
    assert details["inference_cost"]["stream_tokens"] == 65
    assert any("pretrained on sklearn digits (8 px, 1 epochs" in d for d in record.deviations)
    assert all(0.0 <= v <= 1.0 for v in record.matrix[-1]) and record.metrics["last_mAP"] > 0.25  # above chance
    again = MultiLane(dataclasses.replace(MultiLaneConfig(), **{k: v for k, v in record.strategy["config"].items()}),
                      _mlfmnist_info(), BACKBONE_PRESETS["vit_small"], seed=0)
    again.prepare(aux_for(again))
    assert again.pretraining["cached"] is True
    assert again.backbone.weights_source == record.params["backbone"]["weights_source"]


def _mlfmnist_info() -> ScenarioInfo:
    return ScenarioInfo("mlfmnist", MULTILABEL, (1, 56, 56), 10, VISIBILITY_BY_KIND[MULTILABEL], num_experiences=5,
                        dataset="fmnist")
