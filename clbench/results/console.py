"""Readable terminal output of a run: the accuracy matrix and the summary metrics.

Prints whatever a record holds (``None`` as "—", an unexpected value as its text):
``clbench show`` must never die on one odd record. Long lines (paths, deviations) are
printed without wrapping (``soft_wrap``), so a path is never broken in two. Text from the
record reaches the terminal with its control characters as escapes (:func:`_text`): an
``\x1b`` in an error message never drives the terminal.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clbench.results.leaderboard.formats import printable
from clbench.results.records import RunRecord, status_text


def _text(value: Any) -> str:
    """Record text for the terminal: control characters as escapes, rich markup escaped."""
    return escape(printable(value))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _pct(v: Any) -> str:
    if v is None:
        return "—"
    if not _is_number(v):
        return _text(v)
    return f"{100 * v:.2f}" if math.isfinite(v) else str(v)


def _secs(v: Any) -> str:
    return f"{v:.1f}" if _is_number(v) else _text(v)


def _rows(value: Any) -> list:
    return [r for r in value if isinstance(r, list)] if isinstance(value, list) else []


def matrix_table(record: RunRecord) -> Table:
    rows = _rows(record.matrix)
    T = max((len(r) for r in rows), default=0)
    table = Table(title=_text(f"accuracy matrix (%) — {record.strategy.get('name')} on {record.scenario.get('name')}, "
                              f"seed {record.seed}"))
    table.add_column("after", justify="right")
    for j in range(1, T + 1):
        table.add_column(f"exp {j}", justify="right")
    table.add_column("seen", justify="right")
    union = record.union_accuracy if isinstance(record.union_accuracy, list) else []
    for i, row in enumerate(rows):
        seen = union[i - 1] if 0 < i <= len(union) else None
        cells = [_pct(v) for v in row] + [""] * (T - len(row))
        table.add_row("init" if i == 0 else str(i), *cells, _pct(seen))
    return table


def metrics_table(record: RunRecord) -> Table:
    table = Table(title="summary")
    metrics = record.metrics if isinstance(record.metrics, dict) else {}
    for key in metrics:
        table.add_column(_text(key), justify="right")
    table.add_row(*[_pct(v) for v in metrics.values()])
    return table


def print_record(record: RunRecord, console: Optional[Console] = None) -> None:
    """Print the matrix, the metrics and the run's status and deviations."""
    console = console or Console()
    console.print(matrix_table(record))
    console.print(metrics_table(record))
    params = record.params if isinstance(record.params, dict) else {}
    added = [a.get("total") for a in params.get("added", []) if isinstance(a, dict)] \
        if isinstance(params.get("added"), list) else []
    if added:
        console.print(f"parameters added per experience: {added}", soft_wrap=True)
    timing = record.timing if isinstance(record.timing, dict) else {}
    if isinstance(timing.get("train_s"), list) and timing["train_s"]:
        console.print("train s per experience: " + ", ".join(_secs(t) for t in timing["train_s"]), soft_wrap=True)
    if isinstance(record.deviations, list) and record.deviations:
        console.print("deviations from the paper protocol: " + _text("; ".join(map(str, record.deviations))),
                      soft_wrap=True)
    if record.nonfinite:
        console.print("[yellow]non-finite values (saved as null):[/] " + _text(", ".join(map(str, record.nonfinite))),
                      soft_wrap=True)
    if record.status != "complete":
        done = f"{record.experiences_done}/{record.scenario.get('num_experiences', '?')} experiences done"
        console.print(f"[bold red]status: {_text(status_text(record))}[/] ({_text(done)}) {_text(record.error or '')}",
                      soft_wrap=True)
