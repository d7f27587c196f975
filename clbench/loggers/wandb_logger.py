"""W&B logging through the wandb API (Avalanche's WandBLogger is broken with current wandb)."""
from __future__ import annotations

import os
from typing import Optional

from clbench import metrics
from clbench.records import RunRecord


class WandbLogger:
    """Logs each new matrix row with running metrics; at the end the accuracy and
    forgetting matrices as tables and heatmaps, and the summary metrics.
    Offline by default (no account needed) unless WANDB_MODE or ``mode`` says otherwise."""

    def __init__(self, project: str = "clbench", entity: Optional[str] = None, mode: Optional[str] = None,
                 dir: str = "results") -> None:
        self.project, self.entity, self.dir = project, entity, dir
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self.run = None

    def start(self, record: RunRecord) -> None:
        import wandb

        os.makedirs(self.dir, exist_ok=True)
        self.run = wandb.init(
            project=self.project, entity=self.entity, mode=self.mode, dir=self.dir,
            name=f"{record.strategy['name']}-{record.scenario['name']}-s{record.seed}", id=record.run_id,
            config={"run": record.config, "strategy": record.strategy, "scenario": record.scenario["name"],
                    "seed": record.seed, "deviations": record.deviations},
            settings=wandb.Settings(silent=True, console="off"),
            reinit="finish_previous",
        )

    def log_row(self, step: int, row: list, record: RunRecord) -> None:
        if self.run is None:  # start failed (and said so); nothing to log to
            return
        data = {f"acc/exp_{j + 1}": v for j, v in enumerate(row)}
        data["acc/seen_union"] = record.union_accuracy[step - 1]
        data["acc/seen_mean"] = sum(row[:step]) / step
        data.update({f"running/{k}": v for k, v in record.metrics.items() if v is not None})
        self.run.log(data, step=step)

    def finish(self, record: RunRecord) -> Optional[str]:
        if self.run is None:
            return None
        import matplotlib.pyplot as plt
        import wandb

        from clbench.plots import accuracy_heatmap, forgetting_heatmap

        T = len(record.matrix[0]) if record.matrix else 0
        cols = ["after"] + [f"exp_{j}" for j in range(1, T + 1)]
        acc = wandb.Table(columns=cols, data=[[i] + list(r) for i, r in enumerate(record.matrix)])
        F = metrics.forgetting_matrix(record.matrix) if len(record.matrix) == T + 1 and T else record.forgetting_matrix
        fgt = wandb.Table(columns=cols, data=[[i + 1] + list(r) for i, r in enumerate(F)])
        payload = {"accuracy_matrix": acc, "forgetting_matrix": fgt}
        figs = []
        if record.matrix:
            figs.append(accuracy_heatmap(record.matrix))
            payload["accuracy_heatmap"] = wandb.Image(figs[-1])
        if F:
            figs.append(forgetting_heatmap(F))
            payload["forgetting_heatmap"] = wandb.Image(figs[-1])
        self.run.log(payload)
        for k, v in record.metrics.items():
            self.run.summary[k] = v
        self.run.summary["status"] = record.status
        where = self.run.dir
        self.run.finish(exit_code=0 if record.status == "complete" else 1)
        for fig in figs:
            plt.close(fig)
        self.run = None
        return os.path.dirname(where)
