"""TAME (strategies/tame.py): its invariants on synthetic streams, the
detection rule, memories, pruning, state, the detection report and one real
Fashion-MNIST run of the recurring stream."""
from __future__ import annotations

import io

import pytest
import torch

from clbench import protocol
from clbench.models.backbones import BackboneConfig
from clbench.protocol import IncompatibleError, check_compatible
from clbench.api.scenario import Scenario
from clbench.api.strategy import Strategy
from clbench.types import Batch, StepStats
from scenarios.task_agnostic import as_task_agnostic
from strategies.tame import (TAME, ExpertNet, TAMEConfig, detection_report,
                             masked_step, sigmoid_cross_entropy)

from conftest import small_run_overrides
from synthetic import lenet_blob_scenario as blobs

LENET = BackboneConfig(name="lenet5", normalize="half")  # the preset


#: the official code's window and std floor: detection settles within ~80 batches of a blob task
#: (the paper's window of 100 needs ~150 batches per task here)
OFFICIAL = dict(window=35, std_floor=0.005)


def config(**kw) -> TAMEConfig:
    """Small and fast; expert pruning off unless asked (it is on in the paper's recipe)."""
    base = dict(name="tame", batch_size=16, buffer_size=120, selector_epochs=3, selector_finetune_epochs=1,
                expert_prune=0.0, expert_prune_epochs=2, prune_buffer_size=40)
    return TAMEConfig(**{**base, **kw})


def batches_of(scenario: Scenario, e: int, n: int, bs: int = 16, seed: int = 0) -> list[Batch]:
    data = scenario.experiences[e].train
    g = torch.Generator().manual_seed(seed)
    rows = torch.cat([torch.randperm(len(data), generator=g) for _ in range(-(-n * bs // len(data)))])
    return [Batch(x=data.x[rows[i * bs:(i + 1) * bs]], y=data.y[rows[i * bs:(i + 1) * bs]]) for i in range(n)]


def expert_state(s: TAME) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in s.experts]


class Watched(TAME):
    """TAME that notes, for every batch, which experts' tensors changed and which expert
    it trained."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.changes: list[tuple[set[int], int, bool]] = []

    def observe(self, batch: Batch) -> StepStats:
        before, switches = expert_state(self), len(self.events)
        stats = super().observe(batch)
        after = expert_state(self)
        changed = {e for e, old in enumerate(before) if any(not torch.equal(old[k], after[e][k]) for k in old)}
        self.changes.append((changed, stats.route, len(self.events) > switches))
        return stats


@pytest.fixture(scope="module")
def recurring_run(tmp_path_factory):
    """Tasks 1 2 3 2 of the blobs as one task-agnostic stream (20 passes each, as the
    paper repeats each task: 100 batches), under the protocol."""
    scenario = as_task_agnostic(blobs(), repeats=20)
    scenario.schedule = [0, 1, 2, 1]
    strategy = Watched(config(**OFFICIAL, selector_epochs=10, selector_batch_size=16), scenario.info, LENET, seed=0)
    record, _ = protocol.run(scenario, strategy, settings=protocol.RunSettings(
        results_dir=str(tmp_path_factory.mktemp("tame")), progress=False, device="cpu"))
    return record, strategy


def test_needs_nothing_and_is_accepted_where_nothing_is_visible():
    assert TAME.needs == frozenset()
    check_compatible(TAME, "task_agnostic", "split_fmnist_stream")
    check_compatible(TAME, "class_incremental", "split_fmnist")
    with pytest.raises(IncompatibleError, match="does not support multilabel"):
        check_compatible(TAME, "multilabel", "mlfmnist")
    for hook in ("begin_experience", "end_experience", "train_experience"):  # boundaries are never used
        assert getattr(TAME, hook) is getattr(Strategy, hook)


def test_recurring_task_reactivates_its_expert(recurring_run):
    record, strategy = recurring_run
    report = detection_report(record)
    assert report["experts_created"] == 3 == len(strategy.experts)  # three distinct tasks, no fourth expert
    assert report["missed"] == 0 and report["false_switches"] == 0
    assert [b["created"] for b in report["boundaries"]] == [True, True, False]
    assert all(0 <= b["delay"] <= 2 for b in report["boundaries"])
    (back,) = report["recurrences"]
    assert back["experience"] == 1 and back["returned"] and back["expert"] == report["stretch_expert"][1] == 1
    assert record.metrics["routing_accuracy"] > 0.45  # the protocol's, from the selector's routes (chance: 1/3)


def test_an_inactive_expert_is_bit_for_bit_unchanged_by_a_batch(recurring_run):
    _, strategy = recurring_run
    assert len(strategy.changes) == 400 and len(strategy.experts) == 3
    for changed, trained, _ in strategy.changes:
        assert changed <= {trained}  # only the expert trained on the batch may move
    moved = sum(trained in changed for changed, trained, _ in strategy.changes)
    assert moved > 0.9 * 400  # (a converged expert's step can be below float32 resolution)


def test_with_expert_pruning_only_the_expert_left_behind_also_changes():
    scenario = blobs()
    s = Watched(config(**OFFICIAL, expert_prune=0.9), scenario.info, LENET, seed=0)
    for e in (0, 1):
        for b in batches_of(scenario, e, 100, seed=e):
            s.observe(b)
    switch = [i for i, (_, _, switched) in enumerate(s.changes) if switched]
    assert switch == [100] and s.events[0]["from"] == 0 and s.events[0]["created"]
    for i, (changed, trained, _) in enumerate(s.changes):
        assert changed <= ({0, trained} if i == 100 else {trained})
    assert 0 in s.changes[100][0]  # pruned and fine-tuned as it was left (expert 1 was born in that batch)
    assert s.experts[0].pruned and not s.experts[1].pruned
    assert s.prunings[0]["expert"] == 0 and s.prunings[0]["samples"] > 0


def update_first_observe(self: TAME, batch: Batch) -> StepStats:
    """The poisoned order: the active expert learns the batch, THEN detection looks at it."""
    a = self.active
    self.seed_window(a, batch.y)
    loss = self.train_active(batch, 0.0)
    losses = self.detection_losses(batch)
    self.last_losses = list(losses)
    self.detect(losses)
    return StepStats(loss=loss, n=len(batch), route=a)


class UpdateFirst(TAME):
    observe = update_first_observe


def assert_detection_sees_the_batch_before_the_update(cls: type[TAME]) -> None:
    scenario = blobs()
    s = cls(config(), scenario.info, LENET, seed=0)
    for b in batches_of(scenario, 0, 3):
        s.observe(b)
    batch = batches_of(scenario, 0, 1, seed=1)[0]
    with torch.no_grad():
        expected = [float(sigmoid_cross_entropy(net.eval()(batch.x), batch.y, s.own_outputs(e, batch.y)))
                    for e, net in enumerate(s.experts)]
    s.observe(batch)
    assert s.last_losses == expected


def test_shift_detection_sees_the_batch_before_the_update():
    assert_detection_sees_the_batch_before_the_update(TAME)
    with pytest.raises(AssertionError):  # the check catches an update made before detection
        assert_detection_sees_the_batch_before_the_update(UpdateFirst)


# -- the detection rule -------------------------------------------------------------------------

def stats(window, smoothed_active, tau, smoothed_all=None):
    return {"window": list(window), "smoothed_all": smoothed_all, "smoothed_active": smoothed_active, "tau": tau,
            "counts": {0: 10, 1: 10}, "created_batch": 0, "created_sample": 0, "active_batches": len(window)}


def test_threshold_is_mean_plus_three_std_refreshed_only_while_active_and_the_first_fit_wins():
    s = TAME(config(std_floor=0.01), blobs().info, LENET, seed=0)
    s._add_expert(), s._add_expert()
    window = [0.30, 0.32, 0.31, 0.29]
    w = torch.tensor(window, dtype=torch.float64)
    tau2 = float(w.mean() + 3 * w.std(unbiased=False))  # std 0.011 > the floor

    def fresh(smoothed_all_2: float) -> list[dict]:
        return [stats([0.3] * 5, 0.30, 0.33, 0.30), stats([0.5, 0.6], 0.50, 0.60, 0.9),
                stats(window, 0.30, 99.0, smoothed_all_2)]

    s.stats, s.active = fresh(0.30), 2
    assert s.detect([1.0, 1.0, 0.31]) == (2, False, False)  # 0.2 * 0.31 + 0.8 * 0.30 < tau: no shift
    assert s.stats[2]["tau"] == pytest.approx(tau2)  # the active expert's tau is refreshed...
    assert [st["tau"] for st in s.stats[:2]] == [0.33, 0.60]  # ...the others' stay frozen
    assert s.stats[1]["smoothed_all"] == pytest.approx(0.2 * 1.0 + 0.8 * 0.9)  # every expert smooths every batch
    # a shift (0.2 * 0.31 + 0.8 * 0.6 > tau): expert 0 does not fit (0.2 * 0.5 + 0.8 * 0.30 = 0.34 >= 0.33),
    # expert 1 fits (0.42 < 0.60) and wins, although expert 2 fits better (0.302 < 0.339): first fit, in order
    s.stats, s.active = fresh(0.6), 2
    assert s.detect([0.5, 0.1, 0.31]) == (1, False, True)
    s.stats, s.active = fresh(0.30), 2
    assert s.detect([0.5, 1.1, 1.2]) == (3, True, True)  # nobody fits: a new expert
    s.stats[2]["window"] = [0.4] * 3
    assert s.threshold(2) == pytest.approx(0.4 + 3 * 0.01)  # std floored (the official code's option)


def test_the_first_expert_window_is_seeded_with_ln_k_of_its_first_batch():
    scenario = blobs()
    s = TAME(config(), scenario.info, LENET, seed=0)
    s.observe(batches_of(scenario, 0, 1)[0])
    assert s.stats[0]["window"][0] == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert len(s.stats[0]["window"]) == 2 and s.own_labels(0) == [0, 1]


# -- memories, pruning, state ---------------------------------------------------------------------


def test_selector_memory_is_class_balanced_and_takes_each_sample_once():
    scenario = blobs(per_class=40)
    s = TAME(config(buffer_size=60), scenario.info, LENET, seed=0)  # 10 per class
    data = scenario.experiences[0].train
    for _ in range(3):  # the same 80 samples three times: offered once each
        for start in range(0, 80, 16):
            s.observe(Batch(x=data.x[start:start + 16], y=data.y[start:start + 16]))
    assert s.buffer.offered == 80 and len(s.seen) == 80
    kept = s.buffer.all()
    assert sorted(torch.bincount(kept["y"]).tolist()) == [10, 10] and (kept["expert"] == 0).all()
    assert len({tuple(v.flatten().tolist()) for v in kept["x"]}) == 20  # no duplicates


def test_global_l1_pruning_zeroes_the_smallest_weights_and_keeps_them_zero():
    torch.manual_seed(0)
    net = ExpertNet(LENET, (1, 12, 12), 4)
    original = torch.cat([w.detach().abs().flatten() for w in net.prunable()])
    net.prune_l1(0.9)
    mask = torch.cat([m.flatten() for m in net.masks()])
    assert int((~mask).sum()) == round(0.9 * len(original))
    assert original[~mask].max() <= original[mask].min()  # global: the least magnitudes, over all layers
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 4, (8,))
    for _ in range(3):
        masked_step(net, opt, x, y)
    weights = torch.cat([w.detach().flatten() for w in net.prunable()])
    assert (weights[~mask] == 0).all() and (weights[mask] != 0).any()
    before = [m.clone() for m in net.masks()]
    net.prune_l1(0.9)
    assert all(torch.equal(a, b) for a, b in zip(before, net.masks()))
    assert net.nonzero() == sum(int(torch.count_nonzero(p)) for p in net.parameters())


def test_state_round_trips_through_torch_save_with_grown_pruned_experts_and_selector():
    scenario = blobs()
    s = TAME(config(expert_prune=0.5), scenario.info, LENET, seed=0)
    for e in (0, 1):
        for b in batches_of(scenario, e, 10):
            s.observe(b)
        if e == 0:
            s._switch(s._add_expert(), True)  # grow (and prune expert 0) without waiting for a detection
    assert len(s.experts) == 2 and s.experts[0].pruned and s.stats[1]["window"]
    s.before_eval()
    assert s.selector is not None and s.selector.pruned
    blob = io.BytesIO()
    torch.save(s.state_dict(), blob)
    blob.seek(0)
    fresh = TAME(config(expert_prune=0.5), scenario.info, LENET, seed=0)
    fresh.load_state_dict(torch.load(blob, weights_only=True))
    x = torch.cat([e.test.x for e in scenario.experiences])
    a, b = s.predict(x), fresh.predict(x)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.route, b.route)
    nxt = batches_of(scenario, 2, 2)
    for batch in nxt:
        assert torch.equal(s.observe(batch).loss, fresh.observe(batch).loss)
    assert s.stats == fresh.stats and s.events == fresh.events and s.metrics() == fresh.metrics()


def test_metrics_count_non_zero_parameters():
    scenario = blobs()
    s = TAME(config(), scenario.info, LENET, seed=0)
    m = s.metrics()
    assert m["experts"] == 1 and m["nonzero_params"] == s.experts[0].nonzero() == m["dense_params"]
    s.experts[0].prune_l1(0.5)
    assert s.metrics()["nonzero_params"] < m["dense_params"]


def test_bad_settings_are_refused_with_the_valid_range():
    info = blobs().info
    for bad, pattern in [({"window": 0}, r"window=0 .*must be an integer >= 1"),
                         ({"alpha": 1.5}, r"alpha=1.5 .*must be a number in \(0, 1\]"),
                         ({"expert_prune": 1.0}, r"expert_prune=1.0 .*must be a number in \[0, 1\)"),
                         ({"buffer_size": 3}, r"buffer_size=3 .*6 classes; valid: 0 .* or >= 6")]:
        with pytest.raises(ValueError, match=pattern):
            TAME(config(**bad), info, LENET)


# -- the detection report -----------------------------------------------------------------------

def test_detection_report_scores_switches_against_the_true_boundaries():
    record = {
        "scenario": {"kind": "task_agnostic", "visibility": {"boundaries": False}, "train_sizes": [100, 100, 100],
                     "schedule": [0, 1, 2, 1], "repeats": 1},
        "extra": {"first_steps": [0, 10, 20, 30]},  # where the protocol's stream put each stretch's first batch
        "strategy": {"config": {"batch_size": 10}, "details": {"experts_created": 4, "batches_seen": 40, "switches": [
            {"batch": 3, "from": 0, "to": 1, "created": True},   # before the first boundary's segment: false
            {"batch": 4, "from": 1, "to": 0, "created": False},  # false
            {"batch": 11, "from": 0, "to": 1, "created": False},  # boundary at batch 10: delay 1
            {"batch": 19, "from": 1, "to": 2, "created": True},  # boundary at 20, early (a blurry boundary): -1
            {"batch": 22, "from": 2, "to": 3, "created": True},  # second in that segment: false
        ]}},  # boundary at 30: nothing, missed
    }
    r = detection_report(record)
    found = [(b["batch"], b["delay"], b["expert"]) for b in r["boundaries"]]
    assert found == [(10, 1, 1), (20, -1, 2), (30, None, None)]
    assert r["missed"] == 1 and r["false_switches"] == 3 and r["mean_delay_batches"] == 0.0
    assert r["stretch_expert"] == [0, 1, 3, 3] and r["tasks"] == 3 and r["experts_created"] == 4
    assert r["recurrences"] == [{"step": 4, "experience": 1, "expert": 3, "first_visit_expert": 1, "returned": False}]
    with pytest.raises(ValueError, match="no TAME switch events"):
        detection_report({"scenario": record["scenario"], "strategy": {"config": {}, "details": {}}})
    with pytest.raises(ValueError, match="extra.first_steps"):
        detection_report({**record, "extra": {}})


# -- real data ------------------------------------------------------------------------------------

@pytest.mark.usefixtures("fmnist_available")
def test_runs_on_the_recurring_fashion_mnist_stream(tmp_path):
    from clbench.config import compose
    from clbench.cli.launch import run_from_config

    record, _ = run_from_config(compose(small_run_overrides(
        tmp_path, "strategy=tame", "scenario=split_fmnist_recurring", "strategy.selector_epochs=2",
        "strategy.selector_finetune_epochs=1", "strategy.expert_prune_epochs=1", "strategy.buffer_size=100",
        train_per_class=30, test_per_class=10)))
    assert record.status == "complete" and record.scenario["schedule"] == [0, 1, 2, 1, 3, 4, 2]
    assert len(record.matrix) == 8 and all(len(row) == 5 for row in record.matrix)
    assert record.strategy["backbone"]["name"] == "lenet5"  # the paper's MNIST network
    aux = set(record.extra["aux"][-1])
    assert {"experts", "nonzero_params", "selector_accuracy_on_buffer", "buffer_samples"} <= aux
    assert record.metrics.get("routing_accuracy") is not None
    details = record.strategy["details"]
    assert details["buffer"]["selector_capacity_samples"] == 100 and "switches" in details
    assert any("every evaluation point" in d for d in record.deviations)
    report = detection_report(record)
    assert len(report["boundaries"]) == 6 and len(report["recurrences"]) == 2
