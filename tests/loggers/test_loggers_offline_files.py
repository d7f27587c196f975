"""The TensorBoard and CSV loggers (clbench.loggers.tensorboard_logger, csv_logger) and several
loggers at once (``logger=[wandb,csv]``, clbench.loggers.build_loggers): the same content as
the W&B logger (rows as they come, the loss curve, both matrices as tables and heatmaps, the
summary), offline files under results_dir; a failing logger warns and the run completes."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from clbench.cli.launch import run_from_config
from clbench.config import compose

from conftest import small_run_overrides
from handmade_records import make_record

T = 5
PARTIAL = [[0.0] * T, [0.9, 0, 0, 0, 0], [0.5, 0.8, 0, 0, 0]]


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _partial_record(status: str = "failed"):
    rec = make_record("naive", 0, status=status, matrix=PARTIAL, metrics_extra={"AIA": 0.7})
    rec.scenario["num_experiences"] = T
    rec.error = "RuntimeError: non-finite loss"
    return rec


def _events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _text(acc, tag: str) -> str:
    return acc.Tensors(tag)[-1].tensor_proto.string_val[0].decode()


def test_csv_logger_writes_rows_loss_matrices_heatmaps_and_summary(tmp_path):
    from clbench.loggers.csv_logger import CSVLogger

    rec = _partial_record()
    lg = CSVLogger(dir=str(tmp_path))
    lg.start(rec)
    lg.log_steps(10, {"train/loss": 0.5})
    lg.log_row(1, rec.matrix[1], rec)
    lg.log_steps(20, {"loss": 0.25})
    lg.log_row(2, rec.matrix[2], rec)
    where = Path(lg.finish(rec))
    assert where == tmp_path / "csv" / "toy" / "naive" / rec.run_id
    rows = _read(where / "rows.csv")
    assert rows[0] == ["experience"] + [f"acc/exp_{j}" for j in range(1, T + 1)] + ["acc/seen_union", "acc/seen_mean"]
    assert [float(v) for v in rows[2][1:3]] == [0.5, 0.8] and float(rows[2][-1]) == pytest.approx(0.65)
    assert _read(where / "loss.csv")[1:] == [["10", "train/loss", "0.5"], ["20", "train/loss", "0.25"]]
    acc = _read(where / "accuracy_matrix.csv")
    assert acc[0] == ["after"] + [f"exp_{j}" for j in range(1, T + 1)] and len(acc) == 1 + 3
    fgt = _read(where / "forgetting_matrix.csv")
    assert len(fgt) == 1 + 2 and float(fgt[2][1]) == pytest.approx(0.4)  # F[2][1] = R[1][1] - R[2][1]
    for name in ("accuracy_heatmap", "forgetting_heatmap"):
        assert (where / f"{name}.png").stat().st_size > 1000 and (where / f"{name}.svg").is_file()
    summary = dict(_read(where / "summary.csv")[1:])
    assert summary["status"] == "failed" and "non-finite" in summary["error"] and summary["params/total"] == "100"
    assert {r[1] for r in _read(where / "running_metrics.csv")[1:]} == {"running/AIA"}


def test_csv_logger_appends_when_a_run_resumes(tmp_path):
    from clbench.loggers.csv_logger import CSVLogger

    rec = _partial_record("running")
    lg = CSVLogger(dir=str(tmp_path))
    lg.start(rec)
    lg.log_row(1, rec.matrix[1], rec)
    rec.extra["resumed"] = True
    lg2 = CSVLogger(dir=str(tmp_path))
    lg2.start(rec)
    lg2.log_row(2, rec.matrix[2], rec)
    rows = _read(tmp_path / "csv" / "toy" / "naive" / rec.run_id / "rows.csv")
    assert [r[0] for r in rows] == ["experience", "1", "2"]


def test_tensorboard_logger_writes_the_same_content(tmp_path):
    from clbench.loggers.tensorboard_logger import TensorBoardLogger

    rec = _partial_record()
    lg = TensorBoardLogger(dir=str(tmp_path))
    lg.start(rec)
    lg.log_steps(10, {"train/loss": 0.5})
    lg.log_steps(20, {"loss": 0.25})
    lg.log_row(1, rec.matrix[1], rec)
    lg.log_row(2, rec.matrix[2], rec)
    where = Path(lg.finish(rec))
    assert where == tmp_path / "tensorboard" / "toy" / "naive" / rec.run_id
    acc = _events(where)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(10, 0.5), (20, 0.25)]
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("acc/exp_1")] == [(1, 0.9), (2, 0.5)]
    assert acc.Scalars("acc/seen_mean")[-1].value == pytest.approx(0.65)
    assert acc.Scalars("summary/params/total")[-1].value == 100
    assert set(acc.Tags()["images"]) == {"accuracy_heatmap", "forgetting_heatmap"}
    table = _text(acc, "accuracy_matrix/text_summary")
    assert table.splitlines()[0] == "| after | exp_1 | exp_2 | exp_3 | exp_4 | exp_5 |"
    assert "| 2 | 0.5000 | 0.8000 |" in table
    assert "0.4000" in _text(acc, "forgetting_matrix/text_summary")
    assert "| status | failed |" in _text(acc, "summary/text_summary")
    assert '"seed": 0' in _text(acc, "config/text_summary")


def test_several_loggers_at_once_compose_with_hydra(tmp_path):
    from clbench.loggers import build_loggers, selected
    from clbench.loggers.csv_logger import CSVLogger
    from clbench.loggers.tensorboard_logger import TensorBoardLogger
    from clbench.loggers.wandb_logger import WandbLogger

    cfg = compose(["logger=[wandb,csv,tensorboard]"])
    assert cfg.logger.name == "tensorboard" and selected(cfg.logger) == ["wandb", "csv", "tensorboard"]
    built = build_loggers(cfg.logger, str(tmp_path))
    assert [type(lg) for lg in built] == [WandbLogger, CSVLogger, TensorBoardLogger]
    assert selected(compose(["logger=[csv,tensorboard]", "logger.use.csv=false"]).logger) == ["tensorboard"]
    assert selected(compose(["logger=none"]).logger) == [] and build_loggers(compose(["logger=none"]).logger, "x") == []
    assert selected(compose([]).logger) == ["wandb"]  # the default stays W&B
    assert [type(lg) for lg in build_loggers(compose(["logger=csv"]).logger, str(tmp_path))] == [CSVLogger]
    with pytest.raises(Exception, match="logger/nope"):
        compose(["logger=[csv,nope]"])


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_clbench_run_with_csv_and_tensorboard_writes_both_under_results_dir(tmp_path):
    """As typed on the command line (the CLI validates it from the config index first)."""
    import subprocess
    import sys

    overrides = small_run_overrides(tmp_path, "strategy=naive", train_per_class=20, test_per_class=10)
    overrides = [o for o in overrides if not o.startswith("logger=")] + ["logger=[csv,tensorboard]", "log_every=2"]
    listed = subprocess.run([sys.executable, "-m", "clbench", "list"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr  # writes the config index, which the run then checks against
    out = subprocess.run([sys.executable, "-m", "clbench", "run", *overrides], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    from clbench.results import records

    (path,) = (tmp_path / "runs" / "split_fmnist" / "naive").glob("*.json")
    record = records.load(path)
    logs = record.environment["logs"]
    csv_dir, tb_dir = Path(logs["CSVLogger"]), Path(logs["TensorBoardLogger"])
    assert csv_dir.is_relative_to(tmp_path) and tb_dir.is_relative_to(tmp_path)
    acc = _read(csv_dir / "accuracy_matrix.csv")
    assert [[float(v) for v in r[1:]] for r in acc[1:]] == record.matrix  # repr round trip: exact
    curve = [[int(r[0]), float(r[2])] for r in _read(csv_dir / "loss.csv")[1:]]
    assert curve == record.extra["loss_curve"] and len(curve) > 3
    events = _events(tb_dir)
    assert [e.value for e in events.Scalars("acc/exp_1")] == pytest.approx([r[0] for r in record.matrix[1:]])
    assert len(events.Scalars("train/loss")) == len(record.extra["loss_curve"])
    summary = dict(_read(csv_dir / "summary.csv")[1:])
    assert float(summary["ACC"]) == pytest.approx(record.metrics["ACC"])


@pytest.mark.slow
@pytest.mark.usefixtures("fmnist_available")
def test_a_failing_file_logger_warns_and_the_run_completes(tmp_path, monkeypatch):
    from clbench.loggers.tensorboard_logger import TensorBoardLogger

    def broken(self, record):
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardLogger, "start", broken)
    overrides = small_run_overrides(tmp_path, "strategy=naive", train_per_class=20, test_per_class=10)
    overrides = [o for o in overrides if not o.startswith("logger=")] + ["logger=[tensorboard,csv]"]
    with pytest.warns(RuntimeWarning, match="disk full"):
        record, path = run_from_config(compose(overrides))
    assert record.status == "complete" and path.exists() and "CSVLogger" in record.environment["logs"]
