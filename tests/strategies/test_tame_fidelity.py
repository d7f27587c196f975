"""TAME fidelity (issue 26): detection defaults and their recorded paper values, the
window seed on a straddling batch and on the first batch, the short-task warning the
protocol gives from TAME's declared need, the answer of an expert after a missed shift,
and the official "Total accuracy" beside ours in the detection report."""
from __future__ import annotations

import math

import pytest
import torch

from clbench import protocol
from clbench.api.scenario import Scenario
from clbench.models.backbones import BackboneConfig
from clbench.types import Batch
from scenarios.task_agnostic import as_task_agnostic
from strategies.tame import TAME, TAMEConfig, detection_report
from synthetic import lenet_blob_scenario as blobs

LENET = BackboneConfig(name="lenet5", normalize="half")


def config(**kw) -> TAMEConfig:
    base = dict(name="tame", batch_size=16, buffer_size=120, selector_epochs=3, selector_finetune_epochs=1,
                expert_prune=0.0)
    return TAMEConfig(**{**base, **kw})


def samples_of(scenario: Scenario, e: int, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    data = scenario.experiences[e].train
    g = torch.Generator().manual_seed(seed)
    rows = torch.cat([torch.randperm(len(data), generator=g) for _ in range(-(-n // len(data)))])[:n]
    return data.x[rows], data.y[rows]


def stream(scenario: Scenario, lengths: list[int], bs: int = 16) -> list[Batch]:
    """Experiences 0, 1, ... back to back, ``lengths[i]`` samples each, cut into batches of ``bs``
    as one sequence (so a batch straddles a boundary that is not a multiple of ``bs``)."""
    parts = [samples_of(scenario, e, n, seed=e) for e, n in enumerate(lengths)]
    x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return [Batch(x=x[i:i + bs], y=y[i:i + bs]) for i in range(0, len(y), bs)]


# -- defaults that detect, and the paper's values on record -----------------------------------------

def test_detection_defaults_are_the_official_codes_and_the_papers_values_are_recorded():
    c = TAMEConfig()
    assert (c.window, c.std_floor, c.nesterov) == (35, 0.005, False)  # utils_.py: WINDOW_SIZE, max(sd, 0.005), SGD
    s = TAME(config(), blobs().info, LENET, seed=0)
    text = "\n".join(s.deviations())
    assert "window=35 (paper: 100" in text and "std_floor=0.005 (paper: none" in text
    assert "nesterov=False (paper: Nesterov" in text
    paper = TAME(config(window=100, std_floor=0.0, nesterov=True), blobs().info, LENET, seed=0)
    text = "\n".join(paper.deviations())
    assert "window=" not in text and "std_floor=" not in text and "nesterov=" not in text  # the paper's own values


def test_pruning_buffer_and_when_experts_are_pruned_are_recorded():
    assert TAMEConfig().prune_buffer_size == 6000  # the paper's per-task pruning buffer
    text = "\n".join(TAME(config(expert_prune=0.98, prune_buffer_size=500), blobs().info, LENET).deviations())
    assert "prune_buffer_size=500 (paper: 6000" in text
    assert "pruned when it stops being active" in text and "never prunes" in text  # the official code's gap
    assert "never prunes" not in "\n".join(TAME(config(expert_prune=0.0), blobs().info, LENET).deviations())


# -- the window's seed ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_the_first_batch_never_spawns_an_expert_even_without_a_std_floor(seed):
    scenario = blobs(seed=seed)
    s = TAME(config(std_floor=0.0), scenario.info, LENET, seed=seed)  # the paper: no floor, tau = ln 2 exactly
    x, y = samples_of(scenario, 0, 16, seed=seed)
    s.observe(Batch(x=x, y=y))
    assert len(s.experts) == 1 and not s.events


def test_a_new_expert_born_on_a_straddling_batch_is_seeded_with_the_usual_classes_per_task():
    scenario = blobs(per_class=40)
    s = TAME(config(window=35, std_floor=0.005), scenario.info, LENET, seed=0)
    batches = stream(scenario, [16 * 90 + 8, 16 * 60])  # batch 90 holds 8 samples of each task
    assert len(set(batches[90].y.tolist())) == 4
    for b in batches:
        s.observe(b)
        if len(s.experts) == 2:
            break
    (switch,) = s.events
    assert switch["created"] and 90 <= switch["batch"] <= 92  # caught at the straddling batch or just after
    assert s.stats[1]["window"][0] == pytest.approx(math.log(2))  # seeded: two classes per task, not ln 4


# -- short tasks: the protocol says so, from what TAME declares -------------------------------------

def test_tame_declares_the_batches_a_task_needs_from_its_window():
    assert TAME(config(window=35), blobs().info, LENET).min_batches_per_task() == 70
    assert TAME(config(window=100), blobs().info, LENET).min_batches_per_task() == 200


def test_a_stream_with_tasks_shorter_than_tame_needs_is_flagged_in_the_record(tmp_path, capsys):
    scenario = as_task_agnostic(blobs(per_class=40), repeats=2)  # 160 samples per task: 10 batches of 16
    s = TAME(config(window=35, std_floor=0.005), scenario.info, LENET, seed=0)
    with pytest.warns(RuntimeWarning, match="tasks shorter than"):
        record, _ = protocol.run(scenario, s, settings=protocol.RunSettings(results_dir=str(tmp_path), progress=False,
                                                                            device="cpu"))
    (warning,) = [w for w in record.extra["warnings"] if "tasks shorter than" in w]
    assert "tame" in warning and "70 batches" in warning and "10 batches" in warning
    report = detection_report(record)
    assert report["short_tasks"] and report["short_tasks"][0] == warning


# -- the answer of an expert after a missed shift -----------------------------------------------------

def test_an_expert_that_missed_a_shift_answers_with_the_classes_it_now_learns():
    """Detection off (n_std huge): one expert learns task 0, then task 1. Like the official
    expert (whose 2 outputs take the new task's within-task labels), it must answer the
    task it is learning now, not the classes it learnt first for every sample."""
    scenario = blobs(per_class=40)
    s = TAME(config(n_std=1e6, std_floor=0.005), scenario.info, LENET, seed=0)
    for b in stream(scenario, [16 * 150, 16 * 150]):
        s.observe(b)
    assert len(s.experts) == 1
    test = scenario.experiences[1].test
    pred = s.predict(test.x).scores.argmax(1)
    assert (pred == test.y).float().mean() > 0.8, torch.bincount(pred, minlength=6)
