"""Hand-made run records (no training) and the leaderboard command run on them, shared by
the tests of records, console output, figures, leaderboards, the W&B logger, the launcher
and the committed reference results."""
from __future__ import annotations

import json
from pathlib import Path

from clbench.results import records
from clbench.results.leaderboard import leaderboard_command
from clbench.results.records import RunRecord


M3 = [[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.3, 0.4, 0.9]]  # ACC 0.5333


def make_record(strategy: str = "naive", seed: int = 0, matrix=None, *, scenario: str = "toy",
                kind: str = "class_incremental", status: str = "complete", run_id=None, strategy_config=None,
                deviations=(), metrics_extra=None, timing=None, **fields) -> RunRecord:
    from clbench.results import metrics

    matrix = matrix or M3
    T = len(matrix[0])
    union = [sum(matrix[i][:i]) / i for i in range(1, len(matrix))]
    scfg = {"name": strategy, "epochs": 1, "lr": 0.01, **(strategy_config or {})}
    config = {"seed": seed, "strategy": scfg, "scenario": {"name": scenario, "kind": kind}, "backbone": {"name": "cnn28"},
              "val_fraction": 0.1}
    m = metrics.summarize(matrix, union, kind) if len(matrix) == T + 1 else {"ACC": None}
    m.update(metrics_extra or {})
    return RunRecord(
        run_id=run_id or f"{strategy}-{scenario}-s{seed}-{abs(hash(json.dumps(config, sort_keys=True))) % 10**8}",
        created=f"2026-11-26T00:00:{seed:02d}+00:00", seed=seed,
        scenario={"name": scenario, "kind": kind, "num_experiences": T},
        strategy={"name": strategy, "config": scfg}, config=config, matrix=matrix, union_accuracy=union,
        metrics=m, timing=timing if timing is not None else {"prepare_s": 0.5, "train_s": [1.0] * T, "eval_s": [0.1] * (T + 1)},
        params={"initial": {"total": 100}, "after": [{"total": 100}] * T, "added": [{"total": 0}] * T},
        deviations=list(deviations), status=status, experiences_done=T if status == "complete" else 1, **fields,
    )


def board_md(capsys, root, *args) -> tuple[int, str, str]:
    code = leaderboard_command([str(root), *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _two_configs(root: Path) -> None:
    for seed in (0, 1, 2):
        records.save(make_record("naive", seed, deviations=["epochs=1 (paper: 50)"]), root)
        records.save(make_record("er", seed, strategy_config={"buffer_size": 10 ** 6, "a_long_option_name": "x" * 20},
                                 matrix=[[0, 0, 0], [1, 0, 0], [0.9, 0.9, 0], [0.8, 0.8, 0.9]]), root)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = leaderboard_command([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err
