"""Run records: one JSON file per run, written atomically, validated on load."""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

SCHEMA_VERSION = 1
STATUSES = ("running", "complete", "failed")


class RecordError(ValueError):
    """A record file that cannot be read or does not follow the schema; names the path."""


@dataclass
class RunRecord:
    """Everything needed to rebuild a leaderboard row and audit the run."""

    run_id: str
    created: str
    seed: int
    scenario: dict  # name, kind, visibility, num_experiences, class_order, description
    strategy: dict  # name, config, deviations
    config: dict  # the resolved run config
    matrix: list  # (T+1) x T accuracy matrix, filled row by row
    union_accuracy: list = field(default_factory=list)  # A_i, i = 1..done
    forgetting_matrix: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)  # train_s / eval_s per experience
    params: dict = field(default_factory=dict)  # total, trainable, buffers, added per experience
    compute: dict = field(default_factory=dict)  # peak memory, flops where counted
    environment: dict = field(default_factory=dict)  # clbench version, git sha, library versions, device
    deviations: list = field(default_factory=list)  # from the method's paper protocol
    extra: dict = field(default_factory=dict)  # family-specific results (e.g. multi-label)
    status: str = "running"
    error: Optional[str] = None
    experiences_done: int = 0
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "RunRecord":
        validate(data, source)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_REQUIRED = {
    "schema_version": int, "run_id": str, "created": str, "seed": int, "scenario": dict,
    "strategy": dict, "config": dict, "matrix": list, "metrics": dict, "status": str,
}


def validate(data: Any, source: str) -> None:
    """Raise :class:`RecordError` naming ``source`` if ``data`` is not a valid record."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: a run record must be a JSON object, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise RecordError(f"{source}: missing fields {missing}")
    for key, typ in _REQUIRED.items():
        if not isinstance(data[key], typ):
            raise RecordError(f"{source}: field {key!r} should be {typ.__name__}, got {type(data[key]).__name__}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"{source}: schema version {data['schema_version']}, this clbench reads {SCHEMA_VERSION}")
    if data["status"] not in STATUSES:
        raise RecordError(f"{source}: status {data['status']!r} is not one of {list(STATUSES)}")
    for key in ("name",):
        if key not in data["scenario"] or key not in data["strategy"]:
            raise RecordError(f"{source}: scenario and strategy must both name themselves ('name')")


def record_path(results_dir: Union[str, Path], record: RunRecord) -> Path:
    """results/runs/<scenario>/<strategy>/<run_id>.json"""
    return Path(results_dir) / "runs" / record.scenario["name"] / record.strategy["name"] / f"{record.run_id}.json"


def write_json_atomic(path: Union[str, Path], data: Any) -> Path:
    """Write JSON to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(record: RunRecord, results_dir: Union[str, Path]) -> Path:
    """Write ``record`` atomically to its place under ``results_dir``; return the path."""
    return write_json_atomic(record_path(results_dir, record), record.to_dict())


def load(path: Union[str, Path]) -> RunRecord:
    """Read and validate a record; a malformed file raises :class:`RecordError` naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: no such record file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from None
    return RunRecord.from_dict(data, str(path))


def find(results_dir: Union[str, Path]) -> list[Path]:
    """All record files under ``results_dir/runs``."""
    return sorted((Path(results_dir) / "runs").rglob("*.json"))
