"""Seed statistics (clbench.results.stats): t-intervals and paired tests on hand-made values,
and the leaderboard's bold only where the paired difference over shared seeds is significant."""
from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from clbench.results import metrics
from clbench.results.stats import compare, paired_test, t_interval, welch_test


def test_t_interval_of_three_values():
    lo, hi = t_interval([0.5, 0.6, 0.7])
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
    assert (lo, hi) == pytest.approx((0.6 - half, 0.6 + half))
    assert t_interval([0.5]) is None


# two rows' final matrices per seed (2 experiences): A beats B by 2-4 points on every seed
A = {0: [[0, 0], [0.9, 0], [0.50, 0.90]], 1: [[0, 0], [0.9, 0], [0.40, 0.92]], 2: [[0, 0], [0.9, 0], [0.60, 0.88]]}
B = {0: [[0, 0], [0.9, 0], [0.47, 0.90]], 1: [[0, 0], [0.9, 0], [0.38, 0.91]], 2: [[0, 0], [0.9, 0], [0.56, 0.88]]}


def test_paired_test_on_two_fixed_matrices():
    acc_a = {s: metrics.final_accuracy(m) for s, m in A.items()}
    acc_b = {s: metrics.final_accuracy(m) for s, m in B.items()}
    test = paired_test(acc_a, acc_b)
    diffs = [acc_a[s] - acc_b[s] for s in (0, 1, 2)]  # 0.015, 0.015, 0.02
    t = (sum(diffs) / 3) / (sps.tstd(diffs) / math.sqrt(3))
    assert test.n == 3 and test.t == pytest.approx(t) and test.p == pytest.approx(2 * sps.t.sf(t, 2))
    assert test.significant  # the per-seed order effect cancels: p ~ 0.01
    unpaired = welch_test(list(acc_a.values()), list(acc_b.values()))
    assert not unpaired.significant  # the same numbers unpaired: the seeds' spread hides the lead


def test_fallbacks_and_constant_differences():
    assert paired_test({0: 0.5}, {0: 0.4}) is None and compare({0: 0.5}, {1: 0.4}) is None
    same = paired_test({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})
    assert same.p == 0.0 and same.significant  # the same lead on every seed
    assert not paired_test({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6}).significant
    assert compare({0: 0.5, 1: 0.6}, {2: 0.1, 3: 0.12}).test == "Welch's t-test"


def test_leaderboard_bolds_only_a_significant_paired_lead(tmp_path):
    from handmade_records import make_record

    from clbench.results import records
    from clbench.results.leaderboard.aggregate import build_tables, column
    from clbench.results.leaderboard.collect import group_runs, load_records

    def table_of(folder, a_rows):
        for s in (0, 1, 2):
            records.save(make_record("a", s, matrix=a_rows[s]), folder)
            records.save(make_record("b", s, matrix=B[s]), folder)
        (table,) = build_tables(group_runs(load_records(folder)[0])[0])
        return table

    table = table_of(tmp_path / "paired", A)
    assert [r.strategy for r in table.rows] == ["a", "b"] and table.best(column("ACC")) == {0}
    lo, hi = table.rows[0].interval("ACC")
    assert lo < table.rows[0].stats["ACC"].mean < hi
    # a larger mean lead, but it flips sign on one seed: not significant, no bold
    flip = {s: [[0, 0], [0.9, 0], [last, 0.9]] for s, last in ((0, 0.60), (1, 0.30), (2, 0.80))}
    assert table_of(tmp_path / "flip", flip).best(column("ACC")) == set()


def test_csv_carries_the_interval_of_the_ranked_metric(tmp_path, capsys):
    import csv
    import io

    from clbench.results import records
    from handmade_records import board_md, make_record

    for s in (0, 1, 2):
        records.save(make_record("a", s, matrix=A[s]), tmp_path)
    _, out, _ = board_md(capsys, tmp_path, "--format", "csv")
    (row,) = csv.DictReader(io.StringIO(out))
    lo, hi = t_interval([metrics.final_accuracy(A[s]) for s in (0, 1, 2)])
    assert float(row["ci95_lo"]) == pytest.approx(lo) and float(row["ci95_hi"]) == pytest.approx(hi)
