"""TensorBoard logging (offline event files, ``torch.utils.tensorboard``): the same content
as the W&B logger, in ``<dir>/tensorboard/<scenario>/<strategy>/<run_id>/``
(``tensorboard --logdir <dir>/tensorboard`` shows every run):

- scalars ``acc/exp_j``, ``acc/seen_union``, ``acc/seen_mean``, ``running/<metric>`` at
  each matrix row (step = experience), ``train/loss`` at optimisation steps;
- at the end: the accuracy and forgetting matrices as text tables and heatmap images,
  the summary (status, metrics, parameters, timing) as a text table and ``summary/<key>``
  scalars; the run's config as text at the start.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from clbench.loggers.content import heatmaps, matrices, matrix_table, row_values, run_folder, summary_values
from clbench.results.records import RunRecord


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (TensorBoard's text plugin renders it)."""
    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


class TensorBoardLogger:
    """Writes a run's rows, loss curve, matrices, heatmaps and summary as TensorBoard events."""

    def __init__(self, dir: str = "results") -> None:
        self.dir = dir
        self.writer: Any = None
        self.where: Optional[str] = None

    def start(self, record: RunRecord) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = run_folder(self.dir, "tensorboard", record)
        folder.mkdir(parents=True, exist_ok=True)
        self.where = str(folder)
        self.writer = SummaryWriter(log_dir=self.where)
        config = json.dumps({"run": record.config, "deviations": record.deviations}, indent=2, default=str)
        self.writer.add_text("config", f"```\n{config}\n```")

    def log_steps(self, step: int, values: dict) -> None:
        """Points of the training curves (``{"train/loss": 0.43}`` at optimisation step ``step``)."""
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(k if "/" in k else f"train/{k}", float(v), global_step=step)

    def log_row(self, step: int, row: list, record: RunRecord) -> None:
        if self.writer is None:  # start failed (and said so)
            return
        for k, v in row_values(step, row, record).items():
            if v is not None:
                self.writer.add_scalar(k, v, global_step=step)
        self.writer.flush()

    def finish(self, record: RunRecord) -> Optional[str]:
        """The matrices, heatmaps and summary of what the record holds; returns the log folder."""
        if self.writer is None:
            return None
        import matplotlib.pyplot as plt

        writer, self.writer = self.writer, None
        try:
            T, R, F = matrices(record)
            done = max(0, len(R) - 1)
            for name, matrix, first in (("accuracy_matrix", R, 0), ("forgetting_matrix", F, 1)):
                if matrix:
                    writer.add_text(name, markdown_table(*matrix_table(matrix, first_row=first)), global_step=done)
            for name, fig in heatmaps(record, R, F).items():
                writer.add_figure(name, fig, global_step=done, close=True)
                plt.close(fig)
            summary = summary_values(record)
            writer.add_text("summary", markdown_table(["key", "value"], [[k, v] for k, v in summary.items()]),
                            global_step=done)
            for k, v in summary.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    writer.add_scalar(f"summary/{k}", v, global_step=done)
        finally:
            writer.close()
        return self.where
