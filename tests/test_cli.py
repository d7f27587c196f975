"""The CLI refuses bad input before training, naming the bad value and the choices."""
import subprocess
import sys

import pytest

from clbench.cli import main
from clbench.api.strategy import StrategyConfig, register_strategy

from probes import Probe


@register_strategy("_needs_task_ids")
class NeedsTaskIds(Probe):
    config_class = StrategyConfig
    needs = frozenset({"task_id_train", "task_id_test"})


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


def test_unknown_command(capsys):
    assert main(["runn"]) == 2
    assert "valid choices: run, list, show" in capsys.readouterr().err


def test_list_shows_needs_and_visibility(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "split_fmnist_ti" in out and "task_incremental" in out and "class_incremental" in out
    assert "_needs_task_ids" not in out  # test doubles are hidden


def test_console_script_exit_code(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clbench", "run", "strategy=nope"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown strategy 'nope'" in out.stderr
