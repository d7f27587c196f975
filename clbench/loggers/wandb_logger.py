"""W&B logging through the wandb API (Avalanche's WandBLogger is broken with current wandb).

Runs are grouped by scenario, strategy and configuration hash (the leaderboard's config
id, so the seeds of one leaderboard row form one W&B group) and tagged with the
scenario's family (and ``deviations`` when the run deviates from the paper's setup).
A run that fails or is interrupted still closes its W&B run, with the matrix rows done
so far and a non-zero exit code (W&B shows it as failed; ``summary.status`` says which).
"""
from __future__ import annotations

import os
from typing import Any, Optional

from clbench.loggers.content import heatmaps, matrices, matrix_table, row_values, summary_values
from clbench.loggers.content import partial_forgetting  # noqa: F401  (re-exported: it used to live here)
from clbench.results.records import RunRecord

#: Where the runs of this process went (offline runs need ``wandb sync``); see :func:`location_line`.
FINISHED: list[str] = []


def location_line(where: str) -> str:
    """One line naming a W&B run's folder; for an offline run, how to upload it."""
    if os.path.basename(os.path.normpath(where)).startswith("offline-run-"):
        return f"W&B (offline): {where}  (upload it with: wandb sync {where})"
    return f"W&B: {where}"


def config_group(record: RunRecord) -> str:
    """``<scenario>/<strategy>/<config id>``: the runs that differ only in their seed."""
    try:
        from clbench.results.leaderboard.collect import config_id, config_key

        cid = config_id(config_key(record))
    except Exception:  # noqa: BLE001 - a group is a convenience
        cid = "unknown"
    return f"{record.scenario.get('name')}/{record.strategy.get('name')}/{cid}"[:128]


def run_tags(record: RunRecord) -> list[str]:
    tags = [str(record.scenario.get("kind", "unknown")), str(record.strategy.get("name")), str(record.scenario.get("name"))]
    if record.deviations:
        tags.append("deviations")
    return [t[:64] for t in dict.fromkeys(tags)]


class WandbLogger:
    """Logs each new matrix row with running metrics, the training loss every few steps
    (:meth:`log_steps`); at the end the accuracy and forgetting matrices as tables and
    heatmaps, and metrics, parameters and timing in the summary. Offline by default (no
    account needed) unless WANDB_MODE or ``mode`` says otherwise."""

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
            group=config_group(record), tags=run_tags(record),
            job_type=str(record.strategy.get("name")),
            config={"run": record.config, "strategy": record.strategy, "scenario": record.scenario["name"],
                    "seed": record.seed, "deviations": record.deviations},
            settings=wandb.Settings(silent=True, console="off"),
            reinit="finish_previous",
            resume="allow" if record.extra.get("resumed") else None,  # a resumed run continues its W&B run
        )
        # Two step axes: experiences (matrix rows) and optimisation steps (loss curves).
        self.run.define_metric("experience")
        for prefix in ("acc/*", "running/*"):
            self.run.define_metric(prefix, step_metric="experience")
        self.run.define_metric("train/global_step")
        self.run.define_metric("train/*", step_metric="train/global_step")

    def log_steps(self, step: int, values: dict) -> None:
        """Training curves: ``values`` (e.g. ``{"loss": 0.43}``, logged as ``train/loss``; a key
        with a "/" is kept as is) at optimisation step ``step``."""
        if self.run is None:
            return
        data = {(k if "/" in k else f"train/{k}"): (float(v) if hasattr(v, "__float__") else v) for k, v in values.items()}
        data["train/global_step"] = step
        self.run.log(data)

    def log_row(self, step: int, row: list, record: RunRecord) -> None:
        if self.run is None:  # start failed (and said so); nothing to log to
            return
        data: dict[str, Any] = row_values(step, row, record)
        data["experience"] = step
        self.run.log(data)

    def finish(self, record: RunRecord) -> Optional[str]:
        """Close the W&B run with what the record holds (all rows, or those done before a
        failure); return the run's folder."""
        if self.run is None:
            return None
        import matplotlib.pyplot as plt
        import wandb

        run, self.run = self.run, None
        figs: dict[str, Any] = {}
        try:
            T, R, F = matrices(record)
            if T and R:
                cols, rows = matrix_table(R)
                payload: dict[str, Any] = {"accuracy_matrix": wandb.Table(columns=cols, data=rows)}
                if F:
                    cols, rows = matrix_table(F, first_row=1)
                    payload["forgetting_matrix"] = wandb.Table(columns=cols, data=rows)
                figs = heatmaps(record, R, F)
                payload.update({name: wandb.Image(fig) for name, fig in figs.items()})
                run.log(payload)
            for k, v in summary_values(record).items():
                run.summary[k] = v
        finally:
            where = os.path.dirname(run.dir)
            run.finish(exit_code=0 if record.status == "complete" else 1)
            for fig in figs.values():
                plt.close(fig)
        FINISHED.append(where)
        return where
