"""Leaderboard tables: per scenario, one row per configuration with mean, sample std
(ddof = 1) and n over seeds of every metric, ranked, with the best per column known."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from clbench import metrics
from clbench.leaderboard.collect import Group, Skipped, flatten
from clbench.leaderboard.intransigence import intransigence_values
from clbench.records import RunRecord


@dataclass(frozen=True)
class Column:
    """One reported quantity: record key, header, which way is better, display unit."""

    key: str
    header: str
    higher_is_better: bool
    unit: str  # "fraction" (printed in %), "count", "seconds", "flops"


#: Every column a leaderboard can show, in display order.
COLUMNS: tuple[Column, ...] = (
    Column("ACC", "ACC", True, "fraction"),
    Column("AIA", "AIA", True, "fraction"),
    Column("FGT", "FGT", False, "fraction"),
    Column("BWT", "BWT", True, "fraction"),
    Column("FWT", "FWT", True, "fraction"),
    Column("INT", "INT", False, "fraction"),
    Column("avg_mAP", "Avg mAP", True, "fraction"),
    Column("last_mAP", "Last mAP", True, "fraction"),
    Column("CF1", "CF1", True, "fraction"),
    Column("OF1", "OF1", True, "fraction"),
    Column("params_total", "Params", False, "count"),
    Column("params_added", "+Params/exp", False, "count"),
    Column("train_s", "Train s", False, "seconds"),
    Column("flops", "Train FLOPs", False, "flops"),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
_BY_KEY = {c.key: c for c in COLUMNS}


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (ddof = 1; None for one value) and count."""

    mean: Optional[float]
    std: Optional[float]
    n: int

    @classmethod
    def of(cls, values: Iterable[Optional[float]]) -> "Stat":
        """Aggregate the defined values (None is left out of mean, std and n)."""
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return cls(None, None, 0)
        return cls(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals))


def record_values(record: RunRecord) -> dict[str, Optional[float]]:
    """A run's value for every column: its metrics (INT is added by the table, which
    knows the joint reference) plus final parameter count, mean
    parameters added per experience, total training seconds and total training FLOPs
    (None where not recorded; FLOPs only when counted for every experience)."""
    out: dict[str, Optional[float]] = {k: record.metrics.get(k) for k in COLUMN_KEYS}
    params = record.params or {}
    after = [a.get("total") for a in params.get("after", []) if isinstance(a, dict)]
    added = [a.get("total") for a in params.get("added", []) if isinstance(a, dict)]
    out["params_total"] = after[-1] if after and after[-1] is not None else (params.get("initial") or {}).get("total")
    out["params_added"] = statistics.fmean(added) if added and None not in added else None
    train = (record.timing or {}).get("train_s") or []
    out["train_s"] = float(sum(train)) if train and None not in train else None
    flops = (record.timing or {}).get("flops") or []
    out["flops"] = float(sum(flops)) if flops and None not in flops else None
    return out


@dataclass
class Row:
    """One configuration of one strategy on one scenario, aggregated over seeds."""

    strategy: str
    label: str
    config_id: str
    config: dict
    records: list[RunRecord]
    paths: list[str]
    stats: dict[str, Stat]
    deviations: list[str]
    rank: int = 0
    notes: list[int] = field(default_factory=list)  # footnote numbers of its deviations

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    def mean_matrix(self) -> list[list[float]]:
        """Element-wise mean accuracy matrix over seeds."""
        return _mean_lists([r.matrix for r in self.records])

    def mean_forgetting(self) -> list[list[Optional[float]]]:
        """Element-wise mean over seeds of each run's forgetting matrix (PROTOCOL.md)."""
        return _mean_lists([metrics.forgetting_matrix(r.matrix) for r in self.records])

    def union_curve(self) -> tuple[list[float], list[float]]:
        """Mean and std (ddof = 1, 0 for one seed) over seeds of the accuracy on all seen test sets, per step."""
        steps = min(len(r.union_accuracy) for r in self.records)
        stats = [Stat.of(r.union_accuracy[i] for r in self.records) for i in range(steps)]
        return [s.mean for s in stats], [s.std or 0.0 for s in stats]


def _mean_lists(matrices: Sequence[Sequence[Sequence[Optional[float]]]]) -> list:
    rows = len(matrices[0])
    return [[Stat.of(m[i][j] for m in matrices).mean for j in range(len(matrices[0][i]))] for i in range(rows)]


@dataclass
class ScenarioTable:
    """The leaderboard of one scenario."""

    scenario: str
    kind: str
    num_experiences: int
    columns: list[Column]
    rows: list[Row]
    rank_by: str
    notes: list[str]  # deviation texts; footnote k is notes[k - 1]

    def best(self, column: Column) -> set[int]:
        """Indices of the rows whose mean, rounded as printed, is best in ``column``
        (none when all rows show the same value)."""
        shown = [(i, rounded(row.stats[column.key].mean, column)) for i, row in enumerate(self.rows)
                 if row.stats[column.key].mean is not None]
        if len({v for _, v in shown}) < 2:  # one value, or all equal: nothing stands out
            return set()
        top = (max if column.higher_is_better else min)(v for _, v in shown)
        return {i for i, v in shown if v == top}


def rounded(value: float, column: Column) -> float:
    """``value`` at the precision tables print it: percent with 2 decimals for
    fractions, whole counts, 0.1 s, 3 significant digits of FLOPs."""
    if column.unit == "fraction":
        return round(100 * value, 2)
    if column.unit == "seconds":
        return round(value, 1)
    if column.unit == "flops":
        return float(f"{value:.3g}")
    return float(round(value))


@dataclass
class Leaderboard:
    """All scenario tables plus the record files that were left out and why."""

    tables: list[ScenarioTable]
    skipped: list[Skipped]
    num_records: int
    rank_by: str


def build_tables(groups: Sequence[Group], *, rank_by: str = "ACC", keys: Optional[Sequence[str]] = None) -> list[ScenarioTable]:
    """Aggregate groups into ranked tables, one per scenario (sorted by name). Columns
    are ``keys`` (default: all) restricted to those some row of the scenario defines."""
    tables = []
    for scenario in sorted({g.scenario for g in groups}):
        mine = [g for g in groups if g.scenario == scenario]
        labels = _labels(mine)
        rows = []
        for g in mine:
            values = [record_values(r) for r in g.records]
            for v, int_ in zip(values, intransigence_values(g, mine)):
                v["INT"] = int_
            stats = {k: Stat.of(v[k] for v in values) for k in COLUMN_KEYS}
            deviations = sorted({d for r in g.records for d in (r.deviations or [])})
            rows.append(Row(g.strategy, labels[g.config_id], g.config_id, g.config, g.records,
                            [run.path for run in g.runs], stats, deviations))
        wanted = list(keys) if keys else list(COLUMN_KEYS)
        columns = [_BY_KEY[k] for k in COLUMN_KEYS if k in wanted and any(r.stats[k].n for r in rows)]
        table_rank = rank_by if any(r.stats[rank_by].n for r in rows) else "ACC"
        _rank(rows, _BY_KEY[table_rank])
        notes: list[str] = []
        for row in rows:
            for d in row.deviations:
                if d not in notes:
                    notes.append(d)
            row.notes = [notes.index(d) + 1 for d in row.deviations]
        first = mine[0].records[0]
        T = first.scenario.get("num_experiences") or len(first.matrix[0])
        tables.append(ScenarioTable(scenario, first.scenario.get("kind", "?"), T, columns, rows, table_rank, notes))
    return tables


def _rank(rows: list[Row], column: Column) -> None:
    """Sort rows best first by ``column`` (rows without it last; ties by label, config id)."""
    sign = -1.0 if column.higher_is_better else 1.0

    def key(row: Row):
        m = row.stats[column.key].mean
        return (m is None, 0.0 if m is None else sign * m, row.label, row.config_id)

    rows.sort(key=key)
    for i, row in enumerate(rows, 1):
        row.rank = i


def _labels(groups: Sequence[Group]) -> dict[str, str]:
    """Strategy name, plus the settings that tell its row apart: config keys that vary
    among configs of the same strategy, and non-strategy keys that vary across the table."""
    flat = {g.config_id: flatten(g.config) for g in groups}
    everything = sorted({k for f in flat.values() for k in f})

    def varying(ids: list[str], prefix_ok) -> list[str]:
        return [k for k in everything if prefix_ok(k) and len({flat[i].get(k) for i in ids}) > 1]

    table_wide = varying([g.config_id for g in groups], lambda k: not k.startswith("strategy."))
    labels = {}
    for g in groups:
        same = [h.config_id for h in groups if h.strategy == g.strategy]
        keys = sorted(set(table_wide) | set(varying(same, lambda k: True)))
        parts = [f"{k.removeprefix('strategy.')}={_short(flat[g.config_id].get(k))}" for k in keys]
        labels[g.config_id] = g.strategy + (f" ({', '.join(parts)})" if parts else "")
    return labels


def _short(value: Optional[str]) -> str:
    if value is None:
        return "unset"
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value
