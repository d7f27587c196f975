"""The debug= variants (clbench/conf/debug/*.yaml with clbench.cli.debug): fast is a true
smoke run (a few hundred samples, one epoch, short setup loops, every phase, recorded as
a deviation and as its own config), overfit says whether the loss went down, profile
prints the time of every phase."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clbench.cli import main
from clbench.cli.debug import LOOPS, SIZES, VARIANTS, apply_debug, limit_samples
from clbench.config import CONF_DIR, compose


def _record(root: Path) -> dict:
    (path,) = (root / "runs").rglob("*.json")
    return json.loads(path.read_text())


def test_every_variant_has_its_yaml_and_says_what_it_is():
    for name in ("fast", "overfit", "profile"):
        text = (CONF_DIR / "debug" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_") and f"debug={name}" in text and "clbench.cli.debug" in text
        assert name in VARIANTS and VARIANTS[name].purpose


def test_fast_shortens_the_setup_loops_of_any_strategy_unless_the_command_line_sets_them():
    from clbench.api.synthetic import image_blob_scenario

    cfg = compose(["strategy=dkvb", "debug=fast", "strategy.key_init_epochs=3"])
    scenario = apply_debug(cfg, image_blob_scenario(per_class=100, test_per_class=50))
    assert cfg.strategy.epochs == 1 and cfg.logger.name == "none"  # the YAML's part
    assert cfg.strategy.key_init_steps == LOOPS["key_init_steps"] and cfg.strategy.key_init_limit == 64
    assert cfg.strategy.key_init_epochs == 3  # given on the command line: kept
    assert cfg.strategy.num_codebooks == 256  # the model keeps the recipe's sizes
    assert cfg.debug.variant == "fast" and cfg.debug.settings["strategy.key_init_steps"] == LOOPS["key_init_steps"]
    assert [len(e.train) for e in scenario.experiences] == [64] * 3
    assert [len(e.test) for e in scenario.experiences] == [32] * 3
    assert any("debug=fast: at most 64 training and 32 test samples" in d for d in scenario.description["deviations"])
    for strategy, key in (("tame", "selector_epochs"), ("clr", "pretrain_epochs"), ("kfpf", "fpf_iters"),
                          ("ranpac", "projection_dim")):
        scenario = ["scenario=split_fmnist_ti"] if strategy == "clr" else []
        cfg = compose([f"strategy={strategy}", "debug=fast", *scenario])
        apply_debug(cfg, image_blob_scenario())
        assert cfg.strategy[key] == {**LOOPS, **SIZES}[key], (strategy, key)
    cfg = compose(["strategy=ranpac", "debug=profile"])
    apply_debug(cfg, image_blob_scenario())
    assert cfg.strategy.projection_dim == 10000  # profile keeps the model's sizes: it measures them
    plain = compose(["strategy=dkvb"])
    apply_debug(plain, image_blob_scenario())
    assert plain.strategy.key_init_steps == 1960 and "debug" not in plain  # no variant: nothing changes


def test_the_limit_works_on_every_family():
    from clbench.api.synthetic import as_stream, image_blob_scenario, multilabel_blob_scenario

    for scenario in (image_blob_scenario("task_incremental", per_class=50), multilabel_blob_scenario(n_train=80),
                     as_stream(image_blob_scenario(per_class=50))):
        cut = limit_samples(scenario, 20, 5, seed=0, reason="debug=fast")
        assert all(len(e.train) == 20 and len(e.test) <= 5 for e in cut.experiences), scenario.kind
        assert cut.info_for(0.1).stream_size == cut.stream_size(0.1) <= 20 * len(cut.steps) * cut.repeats


def test_fast_is_a_smoke_run_through_every_phase(fmnist_available, tmp_path, capsys):
    assert main(["run", "strategy=er", "debug=fast", f"results_dir={tmp_path}", "device=cpu"]) == 0
    rec = _record(tmp_path)
    assert rec["status"] == "complete" and rec["config"]["debug"]["variant"] == "fast"
    assert max(rec["scenario"]["train_sizes"]) <= 64 and max(rec["scenario"]["test_sizes"]) <= 32
    assert sum(rec["scenario"]["train_sizes"]) <= 400  # a few hundred samples
    assert rec["config"]["strategy"]["epochs"] == 1
    assert any(d.startswith("debug=fast") for d in rec["deviations"])
    phases = {k for row in rec["timing"]["phases"] for k in row}
    assert {"prepare", "train", "end_stream", "eval", "before_eval"} <= phases


def test_overfit_says_the_loss_went_down(fmnist_available, tmp_path, capsys):
    assert main(["run", "strategy=naive", "debug=overfit", f"results_dir={tmp_path}", "device=cpu",
                 "scenario.classes_per_experience=5"]) == 0  # 2 experiences: the check reads the first
    out = capsys.readouterr().out
    assert "overfit: training loss on experience 1 went down" in out, out
    rec = _record(tmp_path)
    assert max(rec["scenario"]["train_sizes"]) <= 32 and rec["config"]["strategy"]["epochs"] == 30
    first = [v for s, v in rec["extra"]["loss_curve"] if s <= rec["extra"]["first_steps"][1]]
    assert first[-1] < 0.5 * first[0]


def test_profile_prints_the_time_and_flops_of_every_phase(fmnist_available, tmp_path, capsys):
    assert main(["run", "strategy=naive", "debug=profile", f"results_dir={tmp_path}", "device=cpu",
                 "progress=false", "scenario.classes_per_experience=5"]) == 0
    out = capsys.readouterr().out
    assert "profile: time per phase" in out and "GFLOPs" in out
    table = out.split("profile: time per phase")[1]
    for phase in ("train", "eval", "prepare"):
        assert f"\n  {phase} " in table, table
    rec = _record(tmp_path)
    assert rec["config"]["count_flops"] is True and rec["compute"]["flops_phases"]
    assert max(rec["scenario"]["train_sizes"]) <= 256


@pytest.mark.parametrize("bad", ["debug=fastest"])
def test_an_unknown_variant_is_refused_with_the_choices(bad, capsys):
    assert main(["run", bad]) == 2
    err = capsys.readouterr().err
    assert "fast" in err and "overfit" in err and "profile" in err
