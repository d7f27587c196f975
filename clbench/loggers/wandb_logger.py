"""W&B logging through the wandb API (Avalanche's WandBLogger is broken with current wandb).

Runs are grouped by scenario, strategy and configuration hash (the leaderboard's config
id, so the seeds of one leaderboard row form one W&B group) and tagged with the
scenario's family (and ``deviations`` when the run deviates from the paper's setup).
A run that fails or is interrupted still closes its W&B run, with the matrix rows done
so far and a non-zero exit code (W&B shows it as failed; ``summary.status`` says which).
"""
from __future__ import annotations

import math
import os
from typing import Any, Optional

from clbench.results.records import RunRecord

#: Where the runs of this process went (offline runs need ``wandb sync``); see :func:`location_line`.
FINISHED: list[str] = []


def location_line(where: str) -> str:
    """One line naming a W&B run's folder; for an offline run, how to upload it."""
    if os.path.basename(os.path.normpath(where)).startswith("offline-run-"):
        return f"W&B (offline): {where}  (upload it with: wandb sync {where})"
    return f"W&B: {where}"


def _number(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _rows(matrix: Any, width: int) -> list[list[Optional[float]]]:
    """The rows of a (possibly partial) matrix, each exactly ``width`` cells (None-padded)."""
    out = []
    for row in matrix if isinstance(matrix, list) else []:
        cells = [_number(v) for v in (row if isinstance(row, list) else [])][:width]
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


def summary_values(record: RunRecord) -> dict:
    """Status, metrics, parameter counts and timing for the W&B summary (numbers only)."""
    out: dict[str, Any] = {"status": record.status, "experiences_done": record.experiences_done}
    if record.error:
        out["error"] = str(record.error)[:1000]
    for k, v in (record.metrics or {}).items():
        if _number(v) is not None:
            out[k] = v
    params = record.params if isinstance(record.params, dict) else {}
    initial = params.get("initial") if isinstance(params.get("initial"), dict) else {}
    after = [a for a in params.get("after", []) if isinstance(a, dict)] if isinstance(params.get("after"), list) else []
    for k, v in (after[-1] if after else initial).items():
        if _number(v) is not None:
            out[f"params/{k}"] = v
    added = [a.get("total") for a in params.get("added", []) if isinstance(a, dict)] \
        if isinstance(params.get("added"), list) else []
    if added and all(_number(a) is not None for a in added):
        out["params/added_total"] = sum(added)
    timing = record.timing if isinstance(record.timing, dict) else {}
    for k, v in timing.items():
        if _number(v) is not None:
            out[f"timing/{k}"] = v
        elif isinstance(v, list) and v and all(_number(x) is not None for x in v):
            out[f"timing/{k}_total"] = float(sum(v))
    for k, v in (record.compute or {}).items():
        if _number(v) is not None:
            out[f"compute/{k}"] = v
    return out


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
        data: dict[str, Any] = {f"acc/exp_{j + 1}": v for j, v in enumerate(row)}
        if len(record.union_accuracy) >= step:
            data["acc/seen_union"] = record.union_accuracy[step - 1]
        seen = [_number(v) for v in row[:step]]
        if seen and None not in seen:
            data["acc/seen_mean"] = sum(seen) / step  # type: ignore[arg-type]
        data.update({f"running/{k}": v for k, v in record.metrics.items() if _number(v) is not None})
        data["experience"] = step
        self.run.log(data)

    def finish(self, record: RunRecord) -> Optional[str]:
        """Close the W&B run with what the record holds (all rows, or those done before a
        failure); return the run's folder."""
        if self.run is None:
            return None
        import matplotlib.pyplot as plt
        import wandb

        from clbench.results.plots import accuracy_heatmap, forgetting_heatmap

        run, self.run = self.run, None
        figs = []
        try:
            T = record.scenario.get("num_experiences") if isinstance(record.scenario.get("num_experiences"), int) else None
            T = T or max((len(r) for r in record.matrix if isinstance(r, list)), default=0)
            if T and record.matrix:
                R = _rows(record.matrix, T)
                F = partial_forgetting(R, T)
                cols = ["after"] + [f"exp_{j}" for j in range(1, T + 1)]
                payload: dict[str, Any] = {
                    "accuracy_matrix": wandb.Table(columns=cols, data=[[i] + r for i, r in enumerate(R)]),
                }
                kind = record.scenario.get("kind")
                figs.append(accuracy_heatmap(R, kind=kind))
                payload["accuracy_heatmap"] = wandb.Image(figs[-1])
                if F:
                    payload["forgetting_matrix"] = wandb.Table(columns=cols, data=[[i + 1] + r for i, r in enumerate(F)])
                    figs.append(forgetting_heatmap(F))
                    payload["forgetting_heatmap"] = wandb.Image(figs[-1])
                run.log(payload)
            for k, v in summary_values(record).items():
                run.summary[k] = v
        finally:
            where = os.path.dirname(run.dir)
            run.finish(exit_code=0 if record.status == "complete" else 1)
            for fig in figs:
                plt.close(fig)
        FINISHED.append(where)
        return where
