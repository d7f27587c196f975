"""What every run logger shows, read from the run record: the values of each new matrix
row, the (partial) accuracy and forgetting matrices, the summary (metrics, parameters,
timing) and where a run's log files go. W&B, TensorBoard and CSV show the same content."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Union

from clbench.results.records import RunRecord


def number(v: Any) -> Optional[float]:
    """``v`` as a float where it is a finite number (not a bool), else None."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def matrix_rows(matrix: Any, width: int) -> list[list[Optional[float]]]:
    """The rows of a (possibly partial) matrix, each exactly ``width`` cells (None-padded)."""
    out = []
    for row in matrix if isinstance(matrix, list) else []:
        cells = [number(v) for v in (row if isinstance(row, list) else [])][:width]
        out.append(cells + [None] * (width - len(cells)))
    return out


def partial_forgetting(R: list[list[Optional[float]]], T: int) -> list[list[Optional[float]]]:
    """F[i][j] = max_{l in j..i-1} R[l][j] - R[i][j] for the rows i = 1..done (PROTOCOL.md;
    the full-matrix definition of clbench.results.metrics), None where undefined or a value is missing."""
    F = []
    for i in range(1, len(R)):
        row: list[Optional[float]] = [None] * T
        for j in range(1, min(i, T + 1)):
            before = [R[lv][j - 1] for lv in range(j, i)]
            if R[i][j - 1] is not None and before and None not in before:
                row[j - 1] = max(before) - R[i][j - 1]  # type: ignore[type-var]
        F.append(row)
    return F


def experiences(record: RunRecord) -> int:
    """T: the scenario's number of experiences (or the widest matrix row)."""
    T = record.scenario.get("num_experiences")
    if isinstance(T, int) and not isinstance(T, bool) and T > 0:
        return T
    return max((len(r) for r in record.matrix if isinstance(r, list)), default=0)


def matrices(record: RunRecord) -> tuple[int, list[list[Optional[float]]], list[list[Optional[float]]]]:
    """``(T, R, F)``: the accuracy matrix rows done so far and their forgetting matrix."""
    T = experiences(record)
    R = matrix_rows(record.matrix, T) if T else []
    return T, R, partial_forgetting(R, T) if R else []


def matrix_table(R: list[list[Optional[float]]], first_row: int = 0) -> tuple[list[str], list[list[Any]]]:
    """Columns (``after``, ``exp_1`` ...) and rows (the row's step first) of a matrix table."""
    T = max((len(r) for r in R), default=0)
    return ["after"] + [f"exp_{j}" for j in range(1, T + 1)], [[first_row + i] + r for i, r in enumerate(R)]


def row_values(step: int, row: list, record: RunRecord) -> dict[str, Optional[float]]:
    """Row ``step`` as named values: ``acc/exp_j``, ``acc/seen_union``, ``acc/seen_mean`` and
    the running metrics (``running/<name>``) of the record so far."""
    data: dict[str, Optional[float]] = {f"acc/exp_{j + 1}": number(v) for j, v in enumerate(row)}
    if len(record.union_accuracy) >= step >= 1:
        data["acc/seen_union"] = number(record.union_accuracy[step - 1])
    seen = [number(v) for v in row[:step]]
    if seen and None not in seen:
        data["acc/seen_mean"] = sum(seen) / step  # type: ignore[arg-type]
    data.update({f"running/{k}": number(v) for k, v in record.metrics.items() if number(v) is not None})
    return data


def summary_values(record: RunRecord) -> dict:
    """Status, metrics, parameter counts and timing for a run's summary (numbers only)."""
    out: dict[str, Any] = {"status": record.status, "experiences_done": record.experiences_done}
    if record.error:
        out["error"] = str(record.error)[:1000]
    for k, v in (record.metrics or {}).items():
        if number(v) is not None:
            out[k] = v
    params = record.params if isinstance(record.params, dict) else {}
    initial = params.get("initial") if isinstance(params.get("initial"), dict) else {}
    after = [a for a in params.get("after", []) if isinstance(a, dict)] if isinstance(params.get("after"), list) else []
    for k, v in (after[-1] if after else initial).items():
        if number(v) is not None:
            out[f"params/{k}"] = v
    added = [a.get("total") for a in params.get("added", []) if isinstance(a, dict)] \
        if isinstance(params.get("added"), list) else []
    if added and all(number(a) is not None for a in added):
        out["params/added_total"] = sum(added)
    timing = record.timing if isinstance(record.timing, dict) else {}
    for k, v in timing.items():
        if number(v) is not None:
            out[f"timing/{k}"] = v
        elif isinstance(v, list) and v and all(number(x) is not None for x in v):
            out[f"timing/{k}_total"] = float(sum(v))
    for k, v in (record.compute or {}).items():
        if number(v) is not None:
            out[f"compute/{k}"] = v
    return out


def run_folder(root: Union[str, Path], kind: str, record: RunRecord) -> Path:
    """``<root>/<kind>/<scenario>/<strategy>/<run_id>``: a run's log folder, laid out like
    ``runs/`` (a resumed run keeps its folder)."""
    def safe(v: Any) -> str:
        return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in str(v)) or "_"

    scenario, strategy = safe(record.scenario.get("name")), safe(record.strategy.get("name"))
    return Path(root) / kind / scenario / strategy / safe(record.run_id)


def heatmaps(record: RunRecord, R: list, F: list) -> dict[str, Any]:
    """The accuracy and forgetting heatmaps (matplotlib figures; the caller closes them)."""
    from clbench.results.plots import accuracy_heatmap, forgetting_heatmap

    figs = {"accuracy_heatmap": accuracy_heatmap(R, kind=record.scenario.get("kind"))} if R else {}
    if F:
        figs["forgetting_heatmap"] = forgetting_heatmap(F)
    return figs
