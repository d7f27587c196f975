"""Refused up front, naming the key (issue 25): a boolean setting given a number
(channels_last=2), NaN and negative values where ranges are declared, a results_dir
where nothing can be written (checked by a real write)."""
from __future__ import annotations

import pytest

from clbench.cli import main as cli_main
from clbench.config.validate import check_overrides
from clbench.results import records


@pytest.mark.parametrize("override, words", [
    ("channels_last=2", "channels_last=2 is not a boolean"),
    ("progress=0", "progress=0 is not a boolean"),
    ("log_every=0", "log_every=0 is out of range"),
    ("log_every=-3", "log_every=-3 is out of range"),
])
def test_bad_values_are_refused_naming_the_key(override, words):
    problems = check_overrides([override])
    assert len(problems) == 1 and words in problems[0], problems


def test_booleans_nan_and_negative_sizes_refused_by_the_command(capsys):
    assert cli_main(["run", "strategy.momentum=nan"]) == 2
    assert "strategy.momentum=nan is out of range" in capsys.readouterr().err
    assert cli_main(["run", "strategy=er", "strategy.replay_batch_size=-1"]) == 2
    assert "strategy.replay_batch_size=-1 is out of range" in capsys.readouterr().err
    assert cli_main(["run", "channels_last=2"]) == 2
    assert "channels_last=2 is not a boolean: must be true or false" in capsys.readouterr().err
    assert check_overrides(["channels_last=true", "progress=false"]) == []


def test_a_results_dir_under_proc_is_refused_by_a_real_write():
    with pytest.raises(records.RecordWriteError, match="/proc/x"):
        records.check_writable("/proc/x")
    assert check_overrides(["results_dir=/proc/x/y"])
