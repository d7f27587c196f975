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


def forgetting_matrix_schedule(R: Matrix, first_step: Sequence[int]) -> list[list[Optional[float]]]:
    """F over a schedule: S+1 rows (steps), one column per experience, ``first_step[j]``
    = the step (1-based) at which column j was first trained. F[i][j] = max_{l in
    first_j..i-1} R[l][j] - R[i][j] for i > first_j; S x J list, None elsewhere. Equal
    to :func:`forgetting_matrix` when ``first_step`` is 1..T."""
    a = np.asarray(R, dtype=float)
    S, J = a.shape[0] - 1, a.shape[1]
    F: list[list[Optional[float]]] = [[None] * J for _ in range(S)]
    for i in range(1, S + 1):
        for j in range(J):
            f = first_step[j]
            if i > f:
                F[i - 1][j] = float(a[f:i, j].max() - a[i, j])
    return F


def summarize_schedule(R: Matrix, union_accuracy: Sequence[Optional[float]], kind: str,
                       first_step: Sequence[int]) -> dict[str, Optional[float]]:
    """:func:`summarize` for a matrix whose rows are steps of a schedule that may revisit
    experiences (columns = distinct experiences, ``first_step[j]`` 1-based). ACC = mean
    of the last row; FGT / BWT over the columns first trained before the last step;
    FWT = mean over j first trained at step s_j >= 2 of R[s_j - 1][j] - R[0][j]. With
    ``first_step`` = 1..T these are exactly PROTOCOL.md's definitions."""
    a = np.asarray(R, dtype=float)
    S = a.shape[0] - 1
    if S < 1 or a.shape[1] == 0:
        return {"ACC": None, "AIA": None, "FGT": None, "BWT": None, "FWT": None}
    old = [j for j in range(a.shape[1]) if first_step[j] < S]
    F = forgetting_matrix_schedule(a, first_step)
    union = [u for u in union_accuracy if u is not None]
    later = [j for j in range(a.shape[1]) if first_step[j] >= 2]
    return {
        "ACC": float(a[S].mean()),
        "AIA": float(np.mean(union)) if union else None,
        "FGT": float(np.mean([F[S - 1][j] for j in old])) if old else None,
        "BWT": float(np.mean([a[S, j] - a[first_step[j], j] for j in old])) if old else None,
        "FWT": None if kind in NO_FWT_KINDS or not later else
        float(np.mean([a[first_step[j] - 1, j] - a[0, j] for j in later])),
    }


# -- evaluation inside experiences (``eval_every``; PROTOCOL.md, "Online evaluation") ----------

def _seen_mean(accs: Sequence[Optional[float]]) -> Optional[float]:
    vals = [a for a in accs if a is not None]
    return float(np.mean(vals)) if vals else None


def online_metrics(steps: Sequence[int], accs: Sequence[Sequence[Optional[float]]],
                   end_steps: Sequence[Optional[int]]) -> dict[str, Optional[float]]:
    """Metrics of an accuracy curve measured every few steps: ``steps[t]`` the run's step
    of point t, ``accs[t][j]`` the accuracy on experience j's test set there (None: not
    evaluated, e.g. not seen yet), ``end_steps[j]`` the step at which experience j's
    training ended (None: not yet). Returns

    - ``online_ACC``: mean over points of the mean accuracy over the evaluated experiences;
    - ``AUC_ACC``: the area under that mean-accuracy curve over steps (trapezoids), divided
      by the steps it spans (the value itself for one point);
    - ``min_ACC``: De Lange et al.'s min-ACC, the mean over experiences j whose training
      ended before the last point of the least accuracy on j at the points after that end
      (the stability gap's depth; None where no experience qualifies)."""
    means = [_seen_mean(a) for a in accs]
    pts = [(s, m) for s, m in zip(steps, means) if m is not None]
    out: dict[str, Optional[float]] = {"online_ACC": None, "AUC_ACC": None, "min_ACC": None}
    if not pts:
        return out
    out["online_ACC"] = float(np.mean([m for _, m in pts]))
    xs, ys = [float(s) for s, _ in pts], [m for _, m in pts]
    span = xs[-1] - xs[0]
    out["AUC_ACC"] = ys[0] if span == 0 else float(np.trapezoid(ys, xs) / span) if hasattr(np, "trapezoid") \
        else float(np.trapz(ys, xs) / span)
    last = steps[-1]
    mins = []
    for j, end in enumerate(end_steps):
        if end is None or end >= last:
            continue
        after = [a[j] for s, a in zip(steps, accs) if s > end and j < len(a) and a[j] is not None]
        if after:
            mins.append(min(after))
    out["min_ACC"] = float(np.mean(mins)) if mins else None
    return out
