"""Compute-matched mode (clbench.protocol.budget): training stops at budget.steps exactly,
per experience, for a strategy's own loop; budget.flops stops once the counted training
FLOPs are spent; the record says the budget and each experience's and phase's use."""
from __future__ import annotations

import pytest
from probes import Probe
from synthetic import blob_scenario

from clbench import protocol
from clbench.models.backbones import BackboneConfig
from clbench.protocol.budget import BudgetSettingError
from clbench.settings import BudgetSettings
from strategies.baselines import ERConfig, ExperienceReplay, FinetuneConfig, Naive

CNN = BackboneConfig(name="cnn28", width=4)


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


def test_steps_budget_stops_each_experience_exactly(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=40)  # 72 training samples per experience, batch 16: 5 steps x 2 epochs
    probe = Probe(info=sc.info)
    probe.config.epochs = 2
    record, _ = protocol.run(sc, probe, settings=settings(tmp_path, budget=BudgetSettings(steps=7)))
    assert probe.calls.count("observe") == 3 * 7 and probe.calls.count("end") == 3  # end_experience still runs
    used = record.compute["budget"]
    assert used["steps"] == 7 and [e["steps"] for e in used["per_experience"]] == [7, 7, 7]
    assert all(e["stopped"] for e in used["per_experience"])
    assert record.status == "complete" and len(record.matrix) == 4


def test_budget_above_the_epochs_changes_nothing(tmp_path):
    sc = blob_scenario(n_exp=2, per_class=20)
    runs = []
    for budget in (BudgetSettings(), BudgetSettings(steps=1000)):
        protocol.seed_everything(0)  # as `clbench run` does: the backbone's init draws from the global generator
        s = Naive(FinetuneConfig(name="naive", epochs=1, batch_size=16), sc.info, CNN, seed=0)
        runs.append(protocol.run(sc, s, settings=settings(tmp_path / str(budget.steps), budget=budget))[0])
    assert runs[0].matrix == runs[1].matrix  # not stopped: the same run
    assert "budget" not in runs[0].compute and not any(e["stopped"] for e in runs[1].compute["budget"]["per_experience"])


def test_stream_budget_counts_each_stretch(tmp_path):
    sc = blob_scenario(kind="task_agnostic", n_exp=3, per_class=40)
    probe = Probe(info=sc.info)
    record, _ = protocol.run(sc, probe, settings=settings(tmp_path, budget=BudgetSettings(steps=2)))
    assert [e["steps"] for e in record.compute["budget"]["per_experience"]] == [2, 2, 2]
    assert probe.calls.count("observe") == 6


def test_flops_budget_stops_once_spent_and_books_phases(tmp_path):
    sc = blob_scenario(n_exp=2, per_class=40)
    free = Naive(FinetuneConfig(name="naive", epochs=1, batch_size=16), sc.info, CNN, seed=0)
    whole, _ = protocol.run(sc, free, settings=settings(tmp_path / "free", count_flops=True))
    # 80 samples, 10% held out: 72 = 4 batches of 16 and one of 8; per_step (their mean) is under a full batch's
    per_step = whole.timing["flops"][0] / 5
    s = Naive(FinetuneConfig(name="naive", epochs=1, batch_size=16), sc.info, CNN, seed=0)
    budget = 2.5 * per_step
    record, _ = protocol.run(sc, s, settings=settings(tmp_path / "cut", budget=BudgetSettings(flops=budget)))
    used = record.compute["budget"]["per_experience"]
    assert [e["steps"] for e in used] == [3, 3]  # steps start while under the budget: the 3rd crosses it
    assert all(budget <= e["flops"] < budget + 1.2 * per_step for e in used)  # less than one step over
    assert all(e["phases"]["train"] == e["flops"] for e in used)
    assert record.timing["flops"] == [e["flops"] for e in used]


def test_out_of_range_budget_is_refused_by_name(tmp_path):
    sc = blob_scenario(n_exp=2, per_class=10)
    with pytest.raises(BudgetSettingError, match=r"budget\.steps=0 is out of range: must be an integer >= 1"):
        protocol.run(sc, Probe(info=sc.info), settings=settings(tmp_path, budget=BudgetSettings(steps=0)))


def test_memory_budget_is_enforced_after_the_rows_are_saved(tmp_path):
    from clbench.protocol.memory import MemoryBudgetError

    sc = blob_scenario(n_exp=3, per_class=40)
    s = ExperienceReplay(ERConfig(name="er", epochs=1, batch_size=16, buffer_size=100), sc.info, CNN, seed=0)
    free, _ = protocol.run(sc, s, settings=settings(tmp_path / "free"))
    mem = free.compute["memory"]
    assert mem[0]["stored"] == 0 and mem[1]["stored"] > 0  # the buffer fills in experience 1
    limit = mem[0]["total"] + 1  # the model fits, the first experience's buffer does not
    s = ExperienceReplay(ERConfig(name="er", epochs=1, batch_size=16, buffer_size=100), sc.info, CNN, seed=0)
    with pytest.raises(MemoryBudgetError, match=r"budget\.memory_bytes=\d+ exceeded after experience 1"):
        protocol.run(sc, s, settings=settings(tmp_path / "cap", budget=BudgetSettings(memory_bytes=limit)))
    from clbench.results import records

    (saved,) = [records.load(p) for p in (tmp_path / "cap" / "runs").rglob("*.json")]
    assert saved.experiences_done == 1 and saved.status == "failed"
