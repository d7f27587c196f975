"""Readable terminal output of a run: the accuracy matrix and the summary metrics."""
from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table

from clbench.records import RunRecord


def _pct(v: Optional[float]) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def matrix_table(record: RunRecord) -> Table:
    T = len(record.matrix[0]) if record.matrix else 0
    table = Table(title=f"accuracy matrix (%) — {record.strategy['name']} on {record.scenario['name']}, seed {record.seed}")
    table.add_column("after", justify="right")
    for j in range(1, T + 1):
        table.add_column(f"exp {j}", justify="right")
    table.add_column("seen", justify="right")
    for i, row in enumerate(record.matrix):
        union = record.union_accuracy[i - 1] if 0 < i <= len(record.union_accuracy) else None
        table.add_row("init" if i == 0 else str(i), *[_pct(v) for v in row], _pct(union))
    return table


def metrics_table(record: RunRecord) -> Table:
    table = Table(title="summary")
    for key in record.metrics:
        table.add_column(key, justify="right")
    table.add_row(*[_pct(v) for v in record.metrics.values()])
    return table


def print_record(record: RunRecord, console: Optional[Console] = None) -> None:
    """Print the matrix, the metrics and the run's status and deviations."""
    console = console or Console()
    console.print(matrix_table(record))
    console.print(metrics_table(record))
    added = [a.get("total") for a in record.params.get("added", [])]
    if added:
        console.print(f"parameters added per experience: {added}")
    if record.timing.get("train_s"):
        console.print("train s per experience: " + ", ".join(f"{t:.1f}" for t in record.timing["train_s"]))
    if record.deviations:
        console.print("deviations from the paper protocol: " + "; ".join(record.deviations))
    if record.status != "complete":
        console.print(f"[bold red]status: {record.status}[/] {record.error or ''}")
