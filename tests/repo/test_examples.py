"""Every script under examples/ runs, on small data, and does what its docstring says
(in-process: each example's ``main(argv)``; a new example needs a test here)."""
from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TESTED = {"run_a_method.py", "build_a_leaderboard.py", "avalanche_experiment.py", "write_a_strategy.py"}

pytestmark = pytest.mark.filterwarnings("ignore")


def example(name: str):
    """The example's ``main`` (its module is loaded, not run as __main__)."""
    return runpy.run_path(str(EXAMPLES / name), run_name=f"example_{Path(name).stem}")["main"]


def test_every_example_has_a_test():
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


@pytest.mark.usefixtures("fmnist_available")
def test_run_a_method(tmp_path, capsys):
    assert example("run_a_method.py")(["--strategy", "er", "--train-per-class", "20", "--test-per-class", "10",
                                       "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    record = json.loads(next((tmp_path / "runs" / "split_fmnist" / "er").glob("*.json")).read_text())
    assert record["status"] == "complete" and len(record["matrix"]) == 6
    assert f"ACC {record['metrics']['ACC']:.4f}" in out and "accuracy matrix" in out
    assert (Path(out.split("csv logs: ")[1].strip()) / "accuracy_matrix.csv").is_file()


def test_build_a_leaderboard_from_the_reference_records(tmp_path, capsys):
    assert example("build_a_leaderboard.py")(["--scenario", "split_fmnist", "--top", "3",
                                              "--out", str(tmp_path / "board")]) == 0
    out = capsys.readouterr().out
    assert "split_fmnist (class_incremental, 5 experiences), ranked by ACC:" in out
    assert out.count(" ACC ") == 3 and "seeds [0, 1, 2]" in out
    assert "split_fmnist" in (tmp_path / "board.md").read_text()
    assert "<table" in (tmp_path / "board.html").read_text()


@pytest.mark.usefixtures("fmnist_available")
def test_avalanche_experiment(tmp_path, capsys):
    assert example("avalanche_experiment.py")(["--train-per-class", "20", "--test-per-class", "10",
                                               "--csv", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Epoch 0 ended." in out and "Loss_Epoch/train_phase/train_stream/Task000" in out  # InteractiveLogger
    assert "final accuracy on the test stream:" in out
    with open(tmp_path / "training_results.csv") as f:
        assert [int(r["training_exp"]) for r in csv.DictReader(f)] == [0, 1, 2, 3, 4]  # one line per epoch


@pytest.mark.usefixtures("fmnist_available")
def test_write_a_strategy(tmp_path, capsys):
    from clbench.api.strategy import STRATEGIES

    code = example("write_a_strategy.py")(["--train-per-class", "20", "--test-per-class", "10",
                                           "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "linear_replay" in STRATEGIES
    assert "linear_replay on split_fmnist: ACC" in out
    assert next((tmp_path / "runs" / "split_fmnist" / "linear_replay").glob("*.json"))
    assert "clbench check: linear_replay" in out and "trains" in out
    assert code == 0, out  # every contract check passes
