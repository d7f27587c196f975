"""CSV logging (offline, plain files): the same content as the W&B logger, in
``<dir>/csv/<scenario>/<strategy>/<run_id>/``:

- ``rows.csv``: one line per matrix row as it comes (``experience``, ``acc/exp_j``,
  ``acc/seen_union``, ``acc/seen_mean``); ``running_metrics.csv``: the running metrics
  after each row (``experience,metric,value``);
- ``loss.csv``: the training loss curve (``step,metric,value``);
- at the end: ``accuracy_matrix.csv``, ``forgetting_matrix.csv``, their heatmaps
  (``*_heatmap.png`` and ``.svg``) and ``summary.csv`` (``key,value``: status, metrics,
  parameters, timing).

A resumed run appends to its folder. Line files are appended and flushed as they come;
the end-of-run files are written atomically.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Optional

from clbench.loggers.content import (experiences, heatmaps, matrices, matrix_table, row_values, run_folder,
                                     summary_values)
from clbench.results.records import RunRecord, atomic_file


class CSVLogger:
    """Writes a run's rows, loss curve, matrices, heatmaps and summary as CSV and images."""

    def __init__(self, dir: str = "results") -> None:
        self.dir = dir
        self.folder: Optional[Path] = None
        self.T = 0

    def start(self, record: RunRecord) -> None:
        self.folder = run_folder(self.dir, "csv", record)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.T = experiences(record)
        resumed = bool(record.extra.get("resumed"))
        header = ["experience"] + [f"acc/exp_{j}" for j in range(1, self.T + 1)] + ["acc/seen_union", "acc/seen_mean"]
        for name, columns in (("rows.csv", header), ("running_metrics.csv", ["experience", "metric", "value"]),
                              ("loss.csv", ["step", "metric", "value"])):
            if not (resumed and (self.folder / name).is_file()):
                self._write(name, [columns], mode="w")

    def _write(self, name: str, lines: list[list[Any]], mode: str = "a") -> None:
        assert self.folder is not None
        with open(self.folder / name, mode, newline="") as f:
            csv.writer(f).writerows(lines)
            f.flush()

    def log_steps(self, step: int, values: dict) -> None:
        """Points of the training curves (``{"train/loss": 0.43}`` at optimisation step ``step``)."""
        if self.folder is None:
            return
        self._write("loss.csv", [[step, k if "/" in k else f"train/{k}", float(v)] for k, v in values.items()])

    def log_row(self, step: int, row: list, record: RunRecord) -> None:
        if self.folder is None:  # start failed (and said so)
            return
        data = row_values(step, row, record)
        line = [step] + [data.get(f"acc/exp_{j}") for j in range(1, self.T + 1)]
        self._write("rows.csv", [line + [data.get("acc/seen_union"), data.get("acc/seen_mean")]])
        self._write("running_metrics.csv", [[step, k, v] for k, v in data.items() if k.startswith("running/")])

    def finish(self, record: RunRecord) -> Optional[str]:
        """The matrices, heatmaps and summary of what the record holds; returns the folder."""
        if self.folder is None:
            return None
        import matplotlib.pyplot as plt

        from clbench.results.plots import save_figure

        folder, self.folder = self.folder, None
        T, R, F = matrices(record)
        for name, matrix, first in (("accuracy_matrix", R, 0), ("forgetting_matrix", F, 1)):
            if matrix:
                columns, rows = matrix_table(matrix, first_row=first)
                with atomic_file(folder / f"{name}.csv", "w") as f:
                    csv.writer(f).writerows([columns] + rows)
        for name, fig in heatmaps(record, R, F).items():
            try:
                save_figure(fig, folder / name, close=False)
            finally:
                plt.close(fig)
        with atomic_file(folder / "summary.csv", "w") as f:
            csv.writer(f).writerows([["key", "value"]] + [[k, v] for k, v in summary_values(record).items()])
        return str(folder)
