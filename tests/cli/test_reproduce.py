"""``clbench reproduce``: refusals, the dry run that lists runs and missing files, nothing run
without data, and a fake small run (a reference config cut by debug=fast, a fake target) through
the whole path: the up-front check, Hydra's multirun, the target table within/outside."""
from __future__ import annotations


import pytest

from clbench.cli import reproduce
from clbench.cli.main import main
from clbench.results import records
from clbench.results.targets import Target, verdict


def needs_target_field() -> None:
    """Fail with the fix, not with OmegaConf's ConfigKeyError, where the run config has no ``target``."""
    import clbench.config.store as store

    if "target" not in store.RunConfig.__dataclass_fields__:
        pytest.fail("RunConfig (clbench/config/store.py) needs the field `target: Optional[Any] = None` (harness) "
                    "for the paper configs' targets: see the HPAPER report")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["reproduce", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_unknown_method_is_refused_with_the_valid_choices(capsys):
    code, _, err = run(capsys, "nosuch")
    assert code == 2 and "no paper configs for method 'nosuch'; valid choices: clr, dkvb, kfpf, multilane, tame" in err


def test_an_override_that_changes_the_paper_setting_is_refused(capsys, tmp_path):
    code, out, err = run(capsys, "tame", "strategy.window=35", "seed=0,1", f"results_dir={tmp_path}")
    assert code == 2 and "strategy.window=35 would change the paper setting" in err and "--allow-changes" in err
    assert "seed=0,1" not in err  # harness keys are free
    assert out == "" and not list(tmp_path.iterdir())


def test_harness_overrides_and_launchers_do_not_change_the_setting():
    assert reproduce.changing_overrides(["seed=0,1,2", "data_root=/d", "hydra/launcher=slurm", "device=cuda",
                                         "hydra.launcher.partition=gpu", "logger=wandb"]) == []
    assert reproduce.changing_overrides(["scenario.repeats=1", "debug=fast", "val_fraction=0.1"]) == [
        "scenario.repeats=1", "debug=fast", "val_fraction=0.1"]


@pytest.mark.parametrize("dry", [True, False])
def test_without_data_it_says_what_to_fetch_and_runs_nothing(capsys, tmp_path, dry):
    needs_target_field()
    empty = tmp_path / "data"
    empty.mkdir()
    code, out, err = run(capsys, "tame", *(["--dry-run"] if dry else []), f"data_root={empty}",
                         f"results_dir={tmp_path / 'results'}")
    assert code == (0 if dry else 2)
    assert "experiment=paper/tame_split_mnist: strategy=tame scenario=stream backbone=lenet5" in out
    assert "target ACC 98.63 ±1.0" in out
    assert "missing data: MNIST not found" in out and str(empty / "MNIST" / "raw") in out
    assert "nothing was run" in err
    assert not (tmp_path / "results").exists()


def test_a_fake_small_run_is_judged_within_or_outside_its_target(capsys, tmp_path, monkeypatch, fmnist_available):
    """The whole path on a reduced reference config (so --allow-changes) with a fake target."""
    needs_target_field()
    monkeypatch.setattr(reproduce, "paper_configs", lambda method=None: ["reference/split_fmnist_naive"])
    fake = "target={metric: ACC, value: 99.0, tol: 0.5, source: fake}"
    code, out, _ = run(capsys, "tame", "--allow-changes", "debug=fast", fake, "seed=0,1", f"results_dir={tmp_path}",
                       "device=cpu")
    assert code == 0, out
    assert "experiment=reference/split_fmnist_naive: strategy=naive" in out and "missing" not in out
    table = out[out.index("| config | metric |"):]
    assert "| naive on split_fmnist (seed 0) | ACC | 99.00 | ±0.50 |" in table
    assert "| naive on split_fmnist (seed 1) |" in table and "(mean of 2)" in table
    assert "outside tolerance" in table and "within tolerance" not in table
    paths = records.find(tmp_path)
    assert len(paths) == 2
    record = records.load(paths[0])
    assert record.config["target"] == {"metric": "ACC", "value": 99.0, "tol": 0.5, "source": "fake"}
    ours = verdict(record).ours
    assert verdict(record).within is False
    assert verdict(record, Target("ACC", round(ours, 1), 0.5)).within is True  # a near target: within

    code, out, _ = run(capsys, "tame", "--results", str(tmp_path))  # the table again, from the records
    assert code == 0 and "| naive on split_fmnist (mean of 2) | ACC | 99.00 |" in out


def test_results_without_targets_say_so(capsys, tmp_path):
    code, out, _ = run(capsys, "tame", "--results", str(tmp_path))
    assert code == 1 and f"no complete record with a paper target under {tmp_path}" in out
