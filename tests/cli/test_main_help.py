"""Help per strategy (clbench.cli.main): `clbench run ... --help` and `clbench list NAME` show
every key with its value, default, valid range and description, and what the config costs
(optimisation steps of the stream; measured time per step on this machine)."""
from __future__ import annotations

import re

from clbench.cli import main


def test_list_a_strategy_shows_every_key_and_the_recipes_steps(fmnist_available, capsys):
    assert main(["list", "dkvb", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "strategy dkvb: Discrete key-value bottleneck" in out
    for key, default, valid, words in (("strategy.key_init_steps", "1960", "an integer >= 1", "EMA k-means steps"),
                                       ("strategy.momentum", "0.0", "a number in [0, 1)", "SGD momentum"),
                                       ("strategy.encoder", "backbone", "one of 'backbone', 'identity'", "frozen")):
        row = next(ln for ln in out.splitlines() if f" {key} " in ln)
        assert default in row and valid in row and words in row, row
    assert "scenario.source" not in out  # only the strategy's keys
    # 5 experiences of 10,800 training samples, batch 256, 2000 epochs: 43 batches x 2000 x 5
    assert "cost of the paper recipe (dkvb on split_fmnist)" in out and "about 430,000 optimisation steps" in out


def test_list_a_strategy_that_needs_task_ids_is_measured_on_a_task_incremental_scenario(fmnist_available, capsys):
    assert main(["list", "clr", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "(clr on split_fmnist_ti)" in out and "strategy.patience" in out


def test_run_help_describes_the_composed_config_and_times_it(fmnist_available, capsys):
    assert main(["run", "strategy=er", "strategy.buffer_size=100", "--help"]) == 0
    out = capsys.readouterr().out
    assert "debug: fast, overfit, profile" in out  # the groups' options
    row = next(ln for ln in out.splitlines() if " strategy.buffer_size " in ln)
    assert "100 (default 500)" in row and "an integer >= 0" in row and "reservoir buffer" in row
    for key in (" seed ", " val_fraction ", " scenario.train_per_class ", " backbone.width "):
        assert key in out, key
    assert "cost of this config (er on split_fmnist)" in out
    assert re.search(r"estimated time on this machine \(cpu.*\), measured on .*: [\d,.]+ ms per step "
                     r"x [\d,]+ steps = about \d", out), out
    assert "an estimate" in out


def test_list_a_scenario_and_an_unknown_name(fmnist_available, capsys):
    assert main(["list", "split_fmnist_stream", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "scenario split_fmnist_stream (task_agnostic)" in out and "scenario.blurry" in out
    assert "(naive on split_fmnist_stream)" in out
    assert main(["list", "dkbv"]) == 2
    assert "did you mean dkvb" in capsys.readouterr().err


def test_the_cost_adds_the_experience_hooks_and_the_frozen_encoders_pass():
    from clbench.cli.debug import Estimate

    found = Estimate("ranpac", "split_fmnist", steps=425, epochs=1, batch_size=128, samples=54_000, experiences=5,
                     per_step=0.5, per_experience=30.0, grows=True, encode_per_sample=0.002, encoded=70_000)
    assert abs(found.total() - (0.5 * 425 + 30 * 5 + 0.002 * 70_000)) < 1e-6
    text = " ".join(found.lines())
    assert "at least 30 s per experience (its end hook) x 5" in text and "frozen encoder 2.00 ms per sample" in text
    assert "about 8 min or more" in text  # 212.5 + 150 + 140 s


def test_a_training_free_strategy_is_timed_with_its_encoder_and_its_end_hook(fmnist_available):
    from clbench.cli.debug import estimate
    from clbench.config import compose

    ncm = estimate(compose(["strategy=ncm", "device=cpu"]))
    assert ncm.encoded == 70_000 and ncm.encode_per_sample > 0 and not ncm.grows  # 60,000 train + 10,000 test
    assert ncm.total() > ncm.per_step * ncm.steps
    ranpac = estimate(compose(["strategy=ranpac", "device=cpu", "strategy.projection_dim=256"]))
    assert ranpac.grows and ranpac.per_experience > 0 and ranpac.encoded == 70_000
    naive = estimate(compose(["strategy=naive", "device=cpu"]), timing=False)
    assert naive.encoded == 0 and not naive.grows and naive.total() == 0  # not timed: nothing to add
