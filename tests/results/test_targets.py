"""Paper targets (clbench.results.targets): parsing, the within/outside verdict of runs and
leaderboard rows, the target table, and the leaderboard's target notes. Hand-made records."""
from __future__ import annotations

import pytest

from clbench.results import records
from clbench.results.targets import (Target, TargetError, judge, parse_target, render_table, row_verdict, target_of,
                                     verdict)
from handmade_records import M3, board_md, make_record  # ACC of M3: 53.33 %


def with_target(seed: int = 0, matrix=None, **target) -> records.RunRecord:
    record = make_record("tame", seed, matrix)
    record.config["target"] = {"metric": "ACC", "tol": 1.0, "source": "Table 1", **target}
    return record


def test_parse_target_reads_a_config_mapping_and_refuses_bad_ones():
    assert parse_target(None) is None
    assert parse_target({"metric": "mAP", "value": 74, "tol": 1}) == Target("mAP", 74.0, 1.0, "")
    assert parse_target({"metric": "mAP", "value": 74, "tol": 1}).key == "last_mAP"
    assert parse_target({"metric": "ACC", "value": None, "tol": 1}).value is None
    with pytest.raises(TargetError, match=r"target.tol=-1 is out of range"):
        parse_target({"metric": "ACC", "value": 1, "tol": -1})
    with pytest.raises(TargetError, match=r"unknown keys \['tolerance'\]; valid keys: metric, value, tol, source"):
        parse_target({"metric": "ACC", "value": 1, "tolerance": 1})
    with pytest.raises(TargetError, match=r"target.value='98%' is not a finite number"):
        parse_target({"metric": "ACC", "value": "98%"})
    with pytest.raises(TargetError, match="not a metric name"):
        parse_target({"value": 1.0})


def test_judge_is_within_up_to_the_tolerance_and_outside_beyond():
    t = Target("ACC", 98.63, 1.0)
    assert judge(t, 97.63).within and judge(t, 99.63).within
    assert judge(t, 97.62).within is False and judge(t, 99.7).within is False
    assert judge(t, 97.9).text() == "ACC: paper 98.63, ours 97.90, within tolerance (±1.00)"
    assert judge(t, 90.0).text() == "ACC: paper 98.63, ours 90.00, outside tolerance (±1.00)"
    assert judge(t, None).within is None and judge(t, None).status == "no result"
    none = judge(Target("ACC", None, 1.0, "Table 2"), 50.0)
    assert none.within is None and none.status == "no paper number" and "Table 2" in none.text()


def test_a_record_is_judged_in_percent_by_the_target_in_its_config():
    assert target_of(make_record()) is None and verdict(make_record()) is None
    near, far = with_target(value=53.0), with_target(value=60.0)
    assert target_of(near) == Target("ACC", 53.0, 1.0, "Table 1")
    assert verdict(near).ours == pytest.approx(53.333, abs=1e-3) and verdict(near).within is True
    assert verdict(far).within is False
    assert verdict(far, Target("ACC", 53.5, 0.5)).within is True  # an explicit target wins over the config's


def test_a_row_is_judged_by_its_mean_over_seeds():
    low = [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.1, 0.2, 0.9]]  # ACC 40.00
    found = row_verdict([with_target(0, value=47.0, tol=0.5), with_target(1, low, value=47.0, tol=0.5)])
    assert found.ours == pytest.approx((53.3333 + 40.0) / 2, abs=1e-3) and found.within is True
    assert row_verdict([make_record()]) is None


def test_the_target_table_renders_each_row_with_its_verdict():
    text = render_table([("tame on stream (seed 0)", Target("ACC", 98.63, 1.0, "tame.md"), 97.9),
                         ("tame on stream (seed 1)", Target("ACC", 98.63, 1.0, "tame.md"), 90.0),
                         ("clr on split53 (seed 0)", Target("ACC", None, 1.0, "paper Table 2"), 85.0),
                         ("x | y", Target("ACC", 1.0, 1.0), None)])
    lines = text.splitlines()
    assert lines[0] == "| config | metric | paper | tol | ours | verdict | source |"
    assert lines[2] == "| tame on stream (seed 0) | ACC | 98.63 | ±1.00 | 97.90 | within tolerance | tame.md |"
    assert "| 90.00 | outside tolerance |" in lines[3]
    assert "| — | ±1.00 | 85.00 | no paper number | paper Table 2 |" in lines[4]
    assert lines[5].startswith("| x \\| y |") and "| no result |" in lines[5]


def test_the_leaderboard_shows_the_target_next_to_the_result(tmp_path, capsys):
    for seed in (0, 1):
        records.save(with_target(seed, M3, value=53.0, tol=1.0), tmp_path)
    records.save(make_record("naive", 0), tmp_path)
    code, out, _ = board_md(capsys, tmp_path)
    assert code == 0
    assert "Paper targets" in out
    line = next(l for l in out.splitlines() if l.startswith("- `") and "paper 53.00" in l)
    assert "tame (n=2): ACC: paper 53.00, ours 53.33, within tolerance (±1.00)" in line
    assert "naive (n=" not in out.split("Paper targets")[1].split("##")[0]  # no target, no note


def test_the_html_leaderboard_shows_the_target_too(tmp_path, capsys):
    records.save(with_target(0, M3, value=60.0, tol=1.0), tmp_path)
    code, out, _ = board_md(capsys, tmp_path, "--format", "html")
    assert code == 0
    assert "Paper targets" in out and "tame (n=1): ACC: paper 60.00, ours 53.33, outside tolerance (±1.00)" in out


def test_a_malformed_target_is_named_and_the_leaderboard_goes_on(tmp_path, capsys):
    bad = with_target(0, M3, value=53.0)
    bad.config["target"]["tol"] = -2
    records.save(bad, tmp_path)
    code, out, _ = board_md(capsys, tmp_path)
    assert code == 0 and "tame: target unreadable (target.tol=-2 is out of range: must be a number >= 0" in out
