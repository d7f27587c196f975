"""Refusals before anything runs (clbench.config.validate, with the messages of
clbench.config.explain and clbench.protocol.compat): out-of-range settings, an unwritable
results_dir, the composed config checked wherever a value came from; unknown names, keys,
types and devices, and a strategy whose needs the scenario hides, each named with the
choices; a refusal is instant and imports no torch."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from clbench.cli import main

from probes import NeedsTaskIds  # noqa: F401  (registered as _needs_task_ids)


@pytest.mark.parametrize("override, words", [
    ("strategy.epochs=0", ["strategy.epochs=0", ">= 1"]),
    ("strategy.epochs=-1", ["strategy.epochs=-1", ">= 1"]),
    ("strategy.batch_size=-4", ["strategy.batch_size=-4", ">= 1"]),
    ("strategy.batch_size=0", ["strategy.batch_size=0", ">= 1"]),
    ("strategy.lr=nan", ["strategy.lr=nan", "a number > 0"]),
    ("strategy.lr=0", ["strategy.lr=0", "> 0"]),
    ("strategy=er strategy.buffer_size=-1", ["strategy.buffer_size=-1", ">= 0"]),
    ("scenario.train_per_class=0", ["scenario.train_per_class=0", ">= 1"]),
    ("scenario.test_per_class=-5", ["scenario.test_per_class=-5", ">= 1"]),
    ("scenario=split_fmnist_stream scenario.repeats=0", ["scenario.repeats=0", ">= 1"]),
    ("scenario=split_fmnist_blurry scenario.blurry=0.7", ["scenario.blurry=0.7", "[0, 0.5]"]),
    ("val_fraction=1.5", ["val_fraction=1.5", "[0, 1)"]),
    ("eval_batch_size=0", ["eval_batch_size=0", ">= 1"]),
    ("num_workers=-1", ["num_workers=-1", ">= 0"]),
    ("seed=-3", ["seed=-3", ">= 0"]),
    ("-m seed=0,1,-2", ["seed=-2", ">= 0"]),  # each value of a sweep
])
def test_out_of_range_settings_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch, override, words):
    from clbench.cli import launch

    def must_not_run(cfg):
        raise AssertionError(f"{override} was not refused: a run was built")

    monkeypatch.setattr(launch, "run_from_config", must_not_run)
    args = ["run", *override.split(), "logger=none", f"results_dir={tmp_path}", "progress=false"]
    assert main(args) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, err
    assert not list(tmp_path.rglob("*.json"))


def test_an_unwritable_results_dir_is_refused_first(tmp_path, capsys, monkeypatch):
    from clbench.cli import launch

    monkeypatch.setattr(launch, "run_from_config", lambda cfg: pytest.fail("results_dir was not refused"))
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0")
    assert main(["run", f"results_dir={a_file}", "logger=none"]) == 2
    err = capsys.readouterr().err
    assert str(a_file) in err and "not a folder" in err


def test_the_composed_config_is_checked_wherever_a_value_came_from(tmp_path, capsys, monkeypatch):
    from clbench.cli import launch
    from clbench.config.validate import check_config

    from clbench.config import compose

    a_file = tmp_path / "f"
    a_file.write_text("")
    cfg = compose(["strategy=naive", "scenario=split_fmnist", "logger=none"])  # typed, as every composed config
    cfg.val_fraction, cfg.results_dir = 1.0, str(a_file)
    cfg.strategy.epochs, cfg.strategy.lr, cfg.strategy.batch_size = 0, float("inf"), 8
    cfg.scenario.train_per_class, cfg.scenario.test_per_class = None, 0
    problems = check_config(cfg)
    text = "\n".join(problems)
    assert len(problems) == 5, text
    for w in ("val_fraction=1.0", "strategy.epochs=0", "strategy.lr=inf", "scenario.test_per_class=0", str(a_file)):
        assert w in text
    called = []
    monkeypatch.setattr(launch, "run_from_config", lambda cfg: called.append(cfg))
    cfg = compose(["strategy=naive", "logger=none", f"results_dir={tmp_path}"])
    cfg.strategy.epochs = 0  # e.g. from an experiment file
    assert launch.execute(cfg) == 2 and not called
    assert "strategy.epochs=0" in capsys.readouterr().err


def test_a_refusal_is_instant_and_imports_no_torch(tmp_path):
    code = ("import sys, time; t = time.perf_counter(); from clbench.cli import main; "
            "rc = main(['run', 'strategy=naive', 'scenario=split_fmnist', 'strategy.epochs=0']); "
            "print(rc, 'torch' in sys.modules, 'hydra.core.config_store' in sys.modules, time.perf_counter() - t)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    wall = time.perf_counter() - t0
    rc, torch_loaded, _, _ = out.stdout.split()
    assert rc == "2" and torch_loaded == "False", out.stderr
    assert "strategy.epochs=0" in out.stderr
    assert wall < 5, f"refusal took {wall:.1f} s"  # about 0.3 s; generous for a loaded CI machine


@pytest.mark.parametrize("override, expected", [
    ("strategy=nope", ["unknown strategy 'nope'", "naive", "er", "joint"]),
    ("scenario=split_fmnistt", ["unknown scenario 'split_fmnistt'", "split_fmnist_ti"]),
    ("strategy.lrr=0.1", ["unknown key 'lrr' in strategy", "lr", "momentum"]),
    ("strategy.lr=fast", ["strategy.lr", "'fast'", "Float"]),
    ("seed=one", ["seed", "'one'", "Integer"]),
    ("device=tpu", ["device 'tpu'", "'auto', 'cpu', 'cuda'"]),
    ("strategy=_needs_task_ids", ["needs ['task_id_train', 'task_id_test']", "split_fmnist", "task_incremental"]),
])
def test_refusals(tmp_path, capsys, override, expected):
    code = main(["run", override, "logger=none", f"results_dir={tmp_path}", "progress=false"])
    err = capsys.readouterr().err
    assert code == 2, err
    for text in expected:
        assert text in err
    assert not list(tmp_path.rglob("*.json")), "refused before any run record was written"
