"""Summary metrics of an accuracy matrix, exactly as PROTOCOL.md defines them.

``R`` is the (T+1) x T accuracy matrix: row 0 before any training, row i after
training experience i; columns are experiences 1..T (0-based here: column j-1).
Pure functions over nested lists or arrays; no torch. Undefined values are None.

Names differ between tools (PROTOCOL.md): FGT here is Chaudhry et al.'s forgetting,
max over rows j..i-1 only, which is neither Avalanche's (= -BWT) nor PyCIL/Mammoth's
(whose max includes the final row).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

Matrix = Sequence[Sequence[float]]


def _as_array(R: Matrix) -> np.ndarray:
    a = np.asarray(R, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] + 1:
        raise ValueError(f"accuracy matrix must be (T+1) x T, got shape {a.shape}")
    return a


def final_accuracy(R: Matrix) -> float:
    """ACC = (1/T) sum_j R[T][j]."""
    a = _as_array(R)
    return float(a[-1].mean())


def average_incremental_accuracy(union_accuracy: Sequence[float]) -> Optional[float]:
    """AIA = mean over steps i = 1..T of the accuracy on the union of seen test sets."""
    return float(np.mean(union_accuracy)) if len(union_accuracy) else None


def forgetting_matrix(R: Matrix) -> list[list[Optional[float]]]:
    """F[i][j] = max_{l in j..i-1} R[l][j] - R[i][j] for i > j (rows/cols 1-based);
    returned as a T x T list (row i-1, column j-1), None where i <= j."""
    a = _as_array(R)
    T = a.shape[1]
    F: list[list[Optional[float]]] = [[None] * T for _ in range(T)]
    for i in range(1, T + 1):
        for j in range(1, i):
            F[i - 1][j - 1] = float(a[j:i, j - 1].max() - a[i, j - 1])
    return F


def forgetting(R: Matrix) -> Optional[float]:
    """FGT = (1/(T-1)) sum_{j<T} F[T][j] (Chaudhry et al. 2018); None when T = 1."""
    a = _as_array(R)
    T = a.shape[1]
    if T < 2:
        return None
    last = forgetting_matrix(a)[T - 1][: T - 1]
    return float(np.mean(last))


def backward_transfer(R: Matrix) -> Optional[float]:
    """BWT = (1/(T-1)) sum_{j<T} (R[T][j] - R[j][j]); None when T = 1."""
    a = _as_array(R)
    T = a.shape[1]
    if T < 2:
        return None
    return float(np.mean([a[T, j - 1] - a[j, j - 1] for j in range(1, T)]))


def forward_transfer(R: Matrix) -> Optional[float]:
    """FWT = (1/(T-1)) sum_{j>=2} (R[j-1][j] - R[0][j]); None when T = 1."""
    a = _as_array(R)
    T = a.shape[1]
    if T < 2:
        return None
    return float(np.mean([a[j - 1, j - 1] - a[0, j - 1] for j in range(2, T + 1)]))


#: Families where R[i][j] for j > i is 0 by construction, so FWT says nothing.
NO_FWT_KINDS = ("class_incremental", "task_agnostic", "multilabel")


def summarize(R: Matrix, union_accuracy: Sequence[float], kind: str) -> dict[str, Optional[float]]:
    """The record's ``metrics``: ACC, AIA, FGT, BWT, FWT (None where undefined)."""
    return {
        "ACC": final_accuracy(R),
        "AIA": average_incremental_accuracy(union_accuracy),
        "FGT": forgetting(R),
        "BWT": backward_transfer(R),
        "FWT": None if kind in NO_FWT_KINDS else forward_transfer(R),
    }
