"""`clbench show` (clbench.results.console, through clbench.cli.main): one line for a folder,
a symlink loop or a typo, and a record with odd values still printed."""
from __future__ import annotations

from clbench.cli import main
from clbench.results import records

from handmade_records import make_record


def test_show_on_a_folder_a_loop_or_a_typo_says_one_line(tmp_path, capsys):
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    for target, words in ((tmp_path, "is a folder"), (loop, "cannot read"), (tmp_path / "typo.jsn", "no such record")):
        assert main(["show", str(target)]) == 2
        err = capsys.readouterr().err
        assert words in err and str(target) in err and len(err.strip().splitlines()) == 1
    assert main(["show"]) == 2 and "usage" in capsys.readouterr().err


def test_show_survives_odd_values(tmp_path, capsys):
    rec = make_record(status="failed", error="boom")
    rec.matrix = [[0.1, None, "x"], [float("nan"), 0.2, 0.3]]
    rec.timing = {"train_s": ["abc", 1.0]}
    path = records.save(rec, tmp_path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "status: failed" in out and "boom" in out
