"""What enters a leaderboard (clbench.results.leaderboard.collect): metrics outside their
range make a record skipped (never superseding a valid one); records made with
eval_rows=final are ranked on their final row; a pruned method's non-zero parameters get
a column of their own beside the dense count."""
from __future__ import annotations

import csv
import io
import json

import pytest

from clbench.results import records
from clbench.results.leaderboard import build_leaderboard

from handmade_records import M3, board_md, make_record


def _skipped(md: str) -> str:
    return md.split("## Skipped records")[1]


@pytest.mark.parametrize("mutate, reason", [
    (lambda r: r.metrics.update(ACC=2.0), "metrics.ACC = 2 outside [0, 1]"),
    (lambda r: r.metrics.update(AIA=-0.1), "metrics.AIA = -0.1 outside [0, 1]"),
    (lambda r: r.metrics.update(FGT=1.5), "metrics.FGT = 1.5 outside [-1, 1]"),
    (lambda r: r.metrics.update(routing_accuracy=3), "metrics.routing_accuracy = 3 outside [0, 1]"),
    (lambda r: r.matrix[3].__setitem__(1, 1.2), "matrix[3][1] = 1.2 outside [0, 1]"),
    (lambda r: r.union_accuracy.__setitem__(0, -0.5), "union_accuracy[0] = -0.5 outside [0, 1]"),
    (lambda r: r.timing.update(train_s=[1.0, -2.0, 1.0]), "timing.train_s[1] = -2 is negative"),
    (lambda r: r.timing.update(prepare_s=-1), "timing.prepare_s = -1 is negative"),
    (lambda r: r.params["after"][-1].update(total=-5), "params.after[2].total = -5 is negative"),
    (lambda r: r.compute.update(train_flops=-1e9), "compute.train_flops = -1e+09 is negative"),
    (lambda r: r.metrics.update(ACC="0.9"), "ACC"),
    (lambda r: r.metrics.update(ACC=True), "ACC"),
])
def test_out_of_range_metrics_are_skipped_and_never_supersede_a_valid_record(tmp_path, capsys, mutate, reason):
    good = make_record("er", 0, run_id="good")
    records.save(good, tmp_path)
    bad = make_record("er", 0, run_id="zz-bad")
    bad.created = "2027-01-01T00:00:00+00:00"  # newer: it would supersede the good one
    bad.matrix = [row[:] for row in bad.matrix]  # make_record shares M3
    mutate(bad)
    records.save(bad, tmp_path)
    code, md, err = board_md(capsys, tmp_path)
    assert code == 0, err
    skipped = _skipped(md)
    line = next(ln for ln in skipped.splitlines() if "zz-bad" in ln)
    assert reason in line, line
    assert "superseded" not in skipped  # the good record stays
    row = next(ln for ln in md.splitlines() if ln.startswith("| 1 "))
    assert "53.33" in row  # the good record's ACC (M3), not 200.00
    board = build_leaderboard(tmp_path)
    assert [r.run_id for r in board.tables[0].rows[0].records] == ["good"]


def test_values_within_float_rounding_of_the_bounds_are_fine(tmp_path, capsys):
    rec = make_record("er", 0)
    rec.metrics["ACC"] = 1.0 + 1e-12
    rec.metrics["FGT"] = -1e-13
    records.save(rec, tmp_path)
    _, md, _ = board_md(capsys, tmp_path)
    assert "None." in _skipped(md)


def _final_only(strategy: str, seed: int, last, **kw):
    """A record as ``eval_rows=final`` writes it: rows 1..T-1 null, metrics ACC only."""
    rec = make_record(strategy, seed, **kw)
    T = len(rec.matrix[0])
    rec.matrix = [[0.0] * T] + [[None] * T for _ in range(T - 1)] + [list(last)]
    rec.union_accuracy = [None] * (T - 1) + [sum(last) / T]
    rec.metrics = {"ACC": sum(last) / T}
    rec.config["eval_rows"] = "final"
    rec.extra = {"rows": [{}] + [{"skipped": "eval_rows=final"}] * (T - 1) + [{}]}
    return rec


def test_eval_rows_final_records_are_ranked_on_their_final_row(tmp_path, capsys):
    for seed in (0, 1):
        records.save(_final_only("tame", seed, [0.9, 0.9, 0.9 - 0.3 * seed]), tmp_path)  # ACC 0.9, 0.8
        records.save(make_record("naive", seed), tmp_path)  # ACC 0.5333
    code, md, err = board_md(capsys, tmp_path)
    assert code == 0, err
    assert "None." in _skipped(md), _skipped(md)
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "`" in ln]
    assert rows[0].startswith("| 1 | tame") and "85.00 ± 7.07" in rows[0] and "| 2 |" in rows[0]
    assert "eval_rows=final" in rows[0]
    head = next(ln for ln in md.splitlines() if ln.startswith("| #")).split(" | ")
    cells = rows[0].split(" | ")
    assert cells[head.index("FGT ↓")] == "—" and cells[head.index("AIA ↑")] == "—"  # undefined, not 0
    assert "final row" in md.split("## toy")[1].split("| #")[0]  # the intro says how those rows are ranked
    for fmt in ("csv", "latex", "html"):
        code, out, err = board_md(capsys, tmp_path, "--format", fmt)
        assert code == 0 and "tame" in out, err
    board = build_leaderboard(tmp_path)
    tame = board.tables[0].rows[0]
    assert tame.mean_matrix()[1] == [None, None, None] and tame.mean_matrix()[3][2] == pytest.approx(0.75)
    assert all(v is None for row in tame.mean_forgetting() for v in row)


def test_eval_rows_final_ranked_against_joint_has_no_intransigence(tmp_path, capsys):
    records.save(_final_only("tame", 0, [0.9, 0.9, 0.9]), tmp_path)
    records.save(make_record("joint", 0, matrix=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]), tmp_path)
    code, out, err = board_md(capsys, tmp_path, "--format", "csv")
    assert code == 0, err
    rows = {r["strategy"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["tame"].get("INT_mean", "") == "" and rows["tame"]["ACC_mean"] == "0.9"


def test_a_matrix_with_a_null_in_a_full_row_is_still_skipped(tmp_path, capsys):
    rec = make_record("er", 0)
    rec.matrix = [row[:] for row in M3]
    rec.matrix[2][0] = None  # not the eval_rows=final shape: one hole in an evaluated row
    records.save(rec, tmp_path)
    _, md, _ = board_md(capsys, tmp_path)
    assert "non-numeric" in _skipped(md)


def test_nonzero_parameters_of_pruned_methods_get_their_own_column(tmp_path, capsys):
    for seed in (0, 1):
        rec = make_record("tame", seed)
        rec.params["after"][-1]["total"] = 308_530
        rec.extra["aux"] = [{"nonzero_params": 50_000}, {"nonzero_params": 37_020 + seed}]  # the last step counts
        records.save(rec, tmp_path)
    records.save(make_record("naive", 0), tmp_path)
    _, md, _ = board_md(capsys, tmp_path)
    head = next(ln for ln in md.splitlines() if ln.startswith("| #")).split(" | ")
    assert "Non-zero params ↓" in head and head.index("Non-zero params ↓") == head.index("Params ↓") + 1
    row = next(ln for ln in md.splitlines() if ln.startswith("| ") and "tame" in ln).split(" | ")
    assert row[head.index("Non-zero params ↓")] == "37K ± 1" and row[head.index("Params ↓")] == "309K ± 0"
    naive = next(ln for ln in md.splitlines() if ln.startswith("| ") and "naive" in ln).split(" | ")
    assert naive[head.index("Non-zero params ↓")] == "—"
    intro = md.split("## toy")[0]
    assert "Non-zero params = " in intro and "extra.aux.nonzero_params" in intro
    _, out, _ = board_md(capsys, tmp_path, "--format", "csv")
    tame = next(r for r in csv.DictReader(io.StringIO(out)) if r["strategy"] == "tame")
    assert float(tame["nonzero_params_mean"]) == 37_020.5
    _, tex, _ = board_md(capsys, tmp_path, "--format", "latex")  # compact: Params shows the non-zero count, marked
    assert r"37K$\pm$1\textsuperscript{nz}" in tex and "nz: the non-zero parameters" in tex
    plain = tmp_path / "plain"
    records.save(make_record("naive", 0), plain)
    _, md, _ = board_md(capsys, plain)
    assert "Non-zero params ↓" not in md  # no pruned method, no column
    json.dumps(build_leaderboard(tmp_path).tables[0].rows[0].stats["nonzero_params"].mean)
