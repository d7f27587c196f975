"""Load run records for a leaderboard: keep the complete ones, explain the rest, and
group runs that differ only in their seed (PROTOCOL.md, "Seeds and aggregation")."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Union

from clbench.records import RecordError, RunRecord, find, load

#: Top-level keys of ``record.config`` that say where or how a run was executed, not
#: what was learned: two runs differing only in these are the same experiment.
NON_SCIENTIFIC_KEYS = (
    "seed", "device", "results_dir", "data_root", "progress", "eval_batch_size",
    "count_flops", "num_workers", "logger", "hydra",
)
#: Nested keys of the same nature (where data come from, not which data).
NON_SCIENTIFIC_PATHS = ("scenario.download",)


@dataclass(frozen=True)
class Skipped:
    """A record file left out of the leaderboard, with the reason (path relative to the results dir)."""

    path: str
    reason: str


@dataclass
class Loaded:
    """A usable record and its path relative to the results dir."""

    path: str
    record: RunRecord


def record_files(results_dir: Union[str, Path]) -> list[Path]:
    """Record files under ``results_dir/runs`` (the layout ``records.save`` writes), or
    every ``*.json`` below ``results_dir`` when it has no ``runs`` folder."""
    root = Path(results_dir)
    return find(root) if (root / "runs").is_dir() else sorted(root.rglob("*.json"))


def load_records(results_dir: Union[str, Path]) -> tuple[list[Loaded], list[Skipped]]:
    """Every complete, well-formed record under ``results_dir``; each other file becomes
    a :class:`Skipped` with its reason. Never raises for a bad file."""
    root = Path(results_dir)
    loaded: list[Loaded] = []
    skipped: list[Skipped] = []
    for path in record_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            record = load(path)
        except RecordError as err:
            skipped.append(Skipped(rel, str(err).replace(str(path), "").lstrip(": ") or "unreadable"))
            continue
        except (OSError, TypeError, ValueError) as err:  # e.g. unexpected field types in the dataclass
            skipped.append(Skipped(rel, f"unreadable record ({type(err).__name__}: {err})"))
            continue
        problem = check_usable(record)
        if problem:
            skipped.append(Skipped(rel, problem))
        else:
            loaded.append(Loaded(rel, record))
    return loaded, skipped


def check_usable(record: RunRecord) -> str:
    """Why a schema-valid record cannot enter a leaderboard ('' when it can)."""
    if record.status != "complete":
        done = f"{record.experiences_done}/{record.scenario.get('num_experiences', '?')} experiences done"
        error = f": {record.error}" if record.error else ""
        return f"status {record.status!r} ({done}){error}"
    matrix = record.matrix
    T = len(matrix[0]) if matrix and isinstance(matrix[0], list) else 0
    if T == 0 or len(matrix) != T + 1 or any(not isinstance(r, list) or len(r) != T for r in matrix):
        return "accuracy matrix is not (T+1) x T"
    if not all(_is_number(v) for r in matrix for v in r):
        return "accuracy matrix holds non-numeric entries"
    if not _is_number(record.metrics.get("ACC")):
        return "metrics lack a numeric ACC"
    wrong = [k for k, typ in (("params", dict), ("timing", dict), ("union_accuracy", list), ("deviations", list))
             if not isinstance(getattr(record, k), typ)]
    if wrong:
        return f"fields of the wrong type: {wrong}"
    if not all(_is_number(v) for v in record.union_accuracy):
        return "union_accuracy holds non-numeric entries"
    bad = [k for k, v in record.metrics.items() if v is not None and not _is_number(v)]
    if bad:
        return f"non-numeric metrics {sorted(bad)}"
    return ""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def config_key(record: RunRecord) -> dict:
    """The scientific configuration of a run: ``record.config`` (scenario, strategy,
    backbone, val_fraction, ...) minus :data:`NON_SCIENTIFIC_KEYS` (seed, device,
    results_dir, data_root, progress, eval_batch_size, count_flops, num_workers, logger,
    hydra) and :data:`NON_SCIENTIFIC_PATHS` (scenario.download). Fields outside
    ``record.config`` (run_id, created, environment, timing, status) never enter it.
    A record without a run config (``protocol.run`` called directly) falls back to its
    scenario name and its strategy's config and backbone."""
    key = {k: v for k, v in (record.config or {}).items() if k not in NON_SCIENTIFIC_KEYS}
    key.setdefault("scenario", {"name": record.scenario.get("name")})
    key.setdefault("strategy", record.strategy.get("config") or {"name": record.strategy.get("name")})
    key.setdefault("backbone", record.strategy.get("backbone"))
    for dotted in NON_SCIENTIFIC_PATHS:
        head, _, leaf = dotted.partition(".")
        if isinstance(key.get(head), dict) and leaf in key[head]:
            key[head] = {k: v for k, v in key[head].items() if k != leaf}
    return key


def config_id(key: dict) -> str:
    """A short stable id of a config key (sha1 of its canonical JSON)."""
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]


@dataclass
class Group:
    """The runs of one scenario and one configuration, differing only in the seed."""

    scenario: str
    strategy: str
    config: dict
    config_id: str
    runs: list[Loaded]

    @property
    def records(self) -> list[RunRecord]:
        return [r.record for r in self.runs]


def group_runs(loaded: Iterable[Loaded]) -> tuple[list[Group], list[Skipped]]:
    """Group runs by (scenario, config key). A seed run twice keeps its newest record
    (by ``created``, then run id); the older ones are returned as skipped."""
    groups: dict[tuple[str, str], Group] = {}
    for item in loaded:
        key = config_key(item.record)
        cid = config_id(key)
        scen = item.record.scenario["name"]
        group = groups.setdefault((scen, cid), Group(scen, item.record.strategy["name"], key, cid, []))
        group.runs.append(item)
    skipped: list[Skipped] = []
    for group in groups.values():
        by_seed: dict[int, list[Loaded]] = {}
        for item in group.runs:
            by_seed.setdefault(item.record.seed, []).append(item)
        kept = []
        for seed in sorted(by_seed):
            runs = sorted(by_seed[seed], key=lambda it: (it.record.created, it.record.run_id, it.path))
            kept.append(runs[-1])
            skipped += [Skipped(it.path, f"seed {seed} run again in the same config: superseded by {runs[-1].path}")
                        for it in runs[:-1]]
        group.runs = kept
    ordered = sorted(groups.values(), key=lambda g: (g.scenario, g.strategy, g.config_id))
    return ordered, skipped


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts as ``{"a.b": "value"}`` with values in canonical JSON text."""
    if isinstance(config, dict):
        out: dict[str, str] = {}
        for k in sorted(config):
            out.update(flatten(config[k], f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): json.dumps(config, sort_keys=True, default=str)}
