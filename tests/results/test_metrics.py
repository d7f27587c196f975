"""Metric formulas of PROTOCOL.md, pinned on hand-computed matrices."""
import math

import pytest

from clbench.results import metrics

# Rows: before training, after exp 1, 2, 3. Built so that Chaudhry's forgetting (0.05),
# Avalanche's (-BWT = 0.025) and PyCIL/Mammoth's (max including the final row, 0.075) differ.
R = [
    [0.10, 0.10, 0.10],
    [0.90, 0.30, 0.00],
    [0.95, 0.80, 0.10],
    [0.80, 0.85, 0.90],
]


def test_final_accuracy():
    assert metrics.final_accuracy(R) == pytest.approx((0.80 + 0.85 + 0.90) / 3)


def test_forgetting_matrix_by_hand():
    F = metrics.forgetting_matrix(R)
    assert F[0] == [None, None, None]
    assert F[1][0] == pytest.approx(0.90 - 0.95)  # step 2 on exp 1: max(R11) - R21
    assert F[1][1:] == [None, None]
    assert F[2][0] == pytest.approx(0.95 - 0.80)  # max(R11, R21) - R31
    assert F[2][1] == pytest.approx(0.80 - 0.85)  # max(R22) - R32, negative allowed
    assert F[2][2] is None


def test_forgetting_differs_from_bwt_and_pycil():
    fgt = metrics.forgetting(R)
    bwt = metrics.backward_transfer(R)
    assert fgt == pytest.approx(((0.95 - 0.80) + (0.80 - 0.85)) / 2)  # 0.05
    assert bwt == pytest.approx(((0.80 - 0.90) + (0.85 - 0.80)) / 2)  # -0.025
    pycil = ((0.95 - 0.80) + (max(0.80, 0.85) - 0.85)) / 2  # 0.075
    assert len({round(fgt, 6), round(-bwt, 6), round(pycil, 6)}) == 3


def test_forward_transfer():
    assert metrics.forward_transfer(R) == pytest.approx(((0.30 - 0.10) + (0.10 - 0.10)) / 2)


def test_aia_is_mean_of_union_accuracies():
    assert metrics.average_incremental_accuracy([0.9, 0.8, 0.7]) == pytest.approx(0.8)


def test_summarize_nulls_fwt_for_class_incremental():
    m = metrics.summarize(R, [0.9, 0.8, 0.7], "class_incremental")
    assert m["FWT"] is None and m["ACC"] == pytest.approx(0.85)
    assert metrics.summarize(R, [0.9, 0.8, 0.7], "task_incremental")["FWT"] == pytest.approx(0.1)
    assert set(m) == {"ACC", "AIA", "FGT", "BWT", "FWT"}


def test_single_experience_has_null_forgetting_family():
    m = metrics.summarize([[0.1], [0.7]], [0.7], "task_incremental")
    assert m["ACC"] == pytest.approx(0.7)
    assert m["FGT"] is None and m["BWT"] is None and m["FWT"] is None
    assert metrics.forgetting_matrix([[0.1], [0.7]]) == [[None]]


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(T\+1\) x T"):
        metrics.final_accuracy([[0.1, 0.2], [0.3, 0.4]])
    assert not math.isnan(metrics.final_accuracy([[0.0], [1.0]]))
