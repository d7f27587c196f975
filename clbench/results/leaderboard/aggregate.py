"""Leaderboard tables: per scenario, one row per configuration with mean, sample std
(ddof = 1) and n over seeds of every metric, ranked, with the best per column known."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from clbench.results import metrics
from clbench.results.leaderboard.collect import Group, Skipped, final_row_only, flatten
from clbench.results.leaderboard.intransigence import intransigence_values
from clbench.results.records import RunRecord


@dataclass(frozen=True)
class Column:
    """One reported quantity: record key, header, which way is better (None: neither,
    so no best mark), display unit."""

    key: str
    header: str
    higher_is_better: Optional[bool]
    unit: str  # "fraction" (printed in %), "count", "seconds", "flops", "number"


#: Every column a leaderboard can show, in display order (``aux.<name>`` columns, from
#: ``extra.aux`` of the records, are added on request by :func:`column`).
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
    Column("routing_accuracy", "Routing acc", True, "fraction"),
    Column("params_total", "Params", False, "count"),
    Column("nonzero_params", "Non-zero params", False, "count"),
    Column("params_added", "+Params/exp", False, "count"),
    Column("prepare_s", "Prep s", False, "seconds"),
    Column("train_s", "Train s", False, "seconds"),
    Column("eval_s", "Eval s", False, "seconds"),
    Column("total_s", "Total s", False, "seconds"),
    Column("flops", "Train FLOPs", False, "flops"),
    Column("acc_per_pflop", "ACC/PFLOP", True, "number"),
    Column("online_ACC", "Online ACC", True, "fraction"),
    Column("AUC_ACC", "AUC ACC", True, "fraction"),
    Column("min_ACC", "min-ACC", True, "fraction"),
    Column("memory_bytes", "Memory B", False, "count"),
    Column("budget_steps", "Budget steps/exp", None, "count"),
    Column("budget_flops", "Budget FLOPs/exp", None, "flops"),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
_BY_KEY = {c.key: c for c in COLUMNS}
AUX_PREFIX = "aux."
#: The columns of ``--format latex`` without ``--metric``: few enough that a table fits one
#: column of a two-column paper at 8 pt with room for the Strategy names (the final
#: accuracy, forgetting and size; a pruned method's Params show its non-zero count).
COMPACT_KEYS = ("ACC", "FGT", "params_total")
#: Multi-label records carry each of these twice (KRT's names): a table shows the pair once.
MULTILABEL_ALIASES = {"last_mAP": "ACC", "avg_mAP": "AIA"}


def column(key: str) -> Column:
    """The column of ``key``: one of :data:`COLUMN_KEYS` or ``aux.<name>``; KeyError otherwise."""
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key.startswith(AUX_PREFIX) and len(key) > len(AUX_PREFIX):
        return Column(key, key, None, "number")
    raise KeyError(key)


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


def record_values(record: RunRecord, aux: Sequence[str] = ()) -> dict[str, Optional[float]]:
    """A run's value for every column: its metrics (INT is added by the table, which
    knows the joint reference) plus final parameter count, the non-zero parameters a
    pruned method reports (``extra.aux.nonzero_params``), mean parameters added per
    experience, preparation / training / evaluation / total wall seconds (see
    :func:`phase_seconds`), total training FLOPs (``compute.train_flops``, else the sum
    of ``timing.flops`` when counted for every experience), ACC per training PFLOP and
    the ``extra.aux`` values named in ``aux`` (the last step's where ``extra.aux`` is a
    list with one dict per step; None where not recorded)."""
    out: dict[str, Optional[float]] = {k: _num(record.metrics.get(k)) for k in COLUMN_KEYS}
    params = record.params or {}
    after = [a.get("total") for a in params.get("after") or [] if isinstance(a, dict)]
    added = [a.get("total") for a in params.get("added") or [] if isinstance(a, dict)]
    out["params_total"] = after[-1] if after and after[-1] is not None else (params.get("initial") or {}).get("total")
    out["params_added"] = statistics.fmean(added) if added and None not in added else None
    out.update(phase_seconds(record.timing or {}))
    flops = _num((record.compute or {}).get("train_flops"))
    if flops is None:
        per_exp = (record.timing or {}).get("flops") or []
        flops = float(sum(per_exp)) if per_exp and None not in per_exp else None
    out["flops"] = flops
    acc = out.get("ACC")
    out["acc_per_pflop"] = 100 * acc / (flops / 1e15) if acc is not None and flops else None
    extra_aux = (record.extra or {}).get("aux") or {}
    if isinstance(extra_aux, list):  # one dict per step: the last step's values
        extra_aux = extra_aux[-1] if extra_aux and isinstance(extra_aux[-1], dict) else {}
    out["nonzero_params"] = _num(extra_aux.get("nonzero_params"))
    compute = record.compute or {}
    memory = compute.get("memory")  # per row: bytes of model + frozen copies + stored data (protocol/memory.py)
    out["memory_bytes"] = _num(memory[-1].get("total")) if isinstance(memory, list) and memory and \
        isinstance(memory[-1], dict) else None
    budget = compute.get("budget") if isinstance(compute.get("budget"), dict) else {}
    out["budget_steps"], out["budget_flops"] = _num(budget.get("steps")), _num(budget.get("flops"))
    for key in aux:
        out[key] = _num(extra_aux.get(key[len(AUX_PREFIX):]))
    return out


def _num(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def phase_seconds(timing: dict) -> dict[str, Optional[float]]:
    """Wall seconds of ``prepare_s`` (the strategy's ``prepare``, e.g. DKVB's key init,
    plus encoding data with a frozen encoder), ``train_s`` and ``eval_s`` (summed over
    experiences; eval includes the evaluation before training) and ``total_s``, their
    sum. Read from ``timing.prepare_s`` / ``encode_s`` / ``train_s`` / ``eval_s``; where
    one is missing, from ``timing.phases`` ({name: seconds}, a list of those (one per
    experience) or [{"name", "seconds"}]),
    whose names starting with "train" count as training, those with "eval" (or starting
    with "test") as evaluation and any other as preparation. None where nothing is recorded."""
    def total(v) -> Optional[float]:
        if isinstance(v, list):
            return float(sum(v)) if v and None not in v else None
        return _num(v)

    prepare = [total(timing.get(k)) for k in ("prepare_s", "encode_s") if k in timing]
    got: dict[str, Optional[float]] = {
        "prepare_s": sum(prepare) if prepare and None not in prepare else None,
        "train_s": total(timing.get("train_s")),
        "eval_s": total(timing.get("eval_s")),
    }
    phases = timing.get("phases")
    items: list = []
    for p in [phases] if isinstance(phases, dict) else phases if isinstance(phases, list) else []:
        if not isinstance(p, dict):
            continue
        if "name" in p or "phase" in p:  # {"name": "train", "seconds": 1.2}
            items.append((p.get("name", p.get("phase")), p.get("seconds", p.get("s"))))
        else:  # {"prepare": 1.0, "train": 2.0, ...}, e.g. one such dict per experience
            items.extend(p.items())
    from_phases: dict[str, float] = {}
    for name, secs in items:
        name = str(name).lower()
        part = "train_s" if name.startswith("train") else "eval_s" if "eval" in name or name.startswith("test") else "prepare_s"
        if total(secs) is not None:
            from_phases[part] = from_phases.get(part, 0.0) + total(secs)  # type: ignore[operator]
    for part, secs in from_phases.items():
        if got[part] is None:
            got[part] = secs
    parts = [got["prepare_s"], got["train_s"], got["eval_s"]]
    got["total_s"] = sum(p for p in parts if p is not None) if got["train_s"] is not None else None
    return got


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
    #: ``key=value`` of the config keys in which it differs from the other rows of its strategy
    config_diff: list[str] = field(default_factory=list)
    #: per column, ``{seed: value}`` of its runs (for the paired tests of ``ScenarioTable.best``)
    per_seed: dict[str, dict[int, Optional[float]]] = field(default_factory=dict)

    def interval(self, key: str) -> Optional[tuple[float, float]]:
        """The 95% Student-t interval of column ``key``'s mean over seeds (None below 2 values)."""
        from clbench.results.stats import t_interval

        return t_interval([v for v in self.per_seed.get(key, {}).values() if v is not None])

    @property
    def final_only(self) -> bool:
        """Whether every run was evaluated only after the last step (``eval_rows=final``)."""
        return all(final_row_only(r.matrix) for r in self.records)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    def mean_matrix(self) -> list[list[float]]:
        """Element-wise mean accuracy matrix over seeds."""
        return _mean_lists([r.matrix for r in self.records])

    def mean_forgetting(self) -> list[list[Optional[float]]]:
        """Element-wise mean over seeds of each run's forgetting matrix (PROTOCOL.md)."""
        return _mean_lists([_forgetting(r) for r in self.records])

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

    @property
    def final_only_rows(self) -> int:
        """How many rows were evaluated only after the last step (``eval_rows=final``)."""
        return sum(row.final_only for row in self.rows)

    def best(self, column: Column) -> set[int]:
        """Indices of the rows whose mean, rounded as printed, is best in ``column``;
        none when all rows show the same value, for a column without a direction, or
        when a best row's lead over a runner-up is not significant (``clbench.results.stats.compare``:
        a paired t-test over shared seeds, else Welch's; p < 0.05; the order is noise)."""
        if column.higher_is_better is None:
            return set()
        shown = [(i, rounded(row.stats[column.key].mean, column)) for i, row in enumerate(self.rows)
                 if row.stats[column.key].mean is not None]
        if len({v for _, v in shown}) < 2:  # one value, or all equal: nothing stands out
            return set()
        pick = max if column.higher_is_better else min
        top = pick(v for _, v in shown)
        winners = {i for i, v in shown if v == top}
        runner_up = pick(v for _, v in shown if v != top)
        from clbench.results.stats import compare

        runners = [j for j, v in shown if v == runner_up]
        for i in winners:
            for j in runners:
                test = compare(self.rows[i].per_seed.get(column.key, {}), self.rows[j].per_seed.get(column.key, {}))
                if test is None or not test.significant:
                    return set()
        return winners


def rounded(value: float, column: Column) -> float:
    """``value`` at the precision tables print it: percent with 2 decimals for
    fractions, whole counts, 0.1 s, 3 significant digits of FLOPs."""
    if column.unit == "fraction":
        return round(100 * value, 2)
    if column.unit == "seconds":
        return round(value, 1)
    if column.unit in ("flops", "number"):
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
    are ``keys`` (default: all) restricted to those some row of the scenario defines;
    without ``keys``, a multi-label table shows Last/Avg mAP once (as ACC/AIA) where
    they are the same numbers. Rows are ranked by ``rank_by``, ties by total seconds."""
    aux = [k for k in keys or () if k.startswith(AUX_PREFIX)]
    all_keys = list(COLUMN_KEYS) + aux
    tables = []
    for scenario in sorted({g.scenario for g in groups}):
        mine = [g for g in groups if g.scenario == scenario]
        labels, diffs = _labels(mine)
        rows = []
        for g in mine:
            values = [record_values(r, aux) for r in g.records]
            for v, int_ in zip(values, intransigence_values(g, mine)):
                v["INT"] = int_
            stats = {k: Stat.of(v[k] for v in values) for k in all_keys}
            deviations = sorted({d for r in g.records for d in (r.deviations or [])})
            per_seed = {k: {r.seed: v[k] for r, v in zip(g.records, values)} for k in all_keys}
            rows.append(Row(g.strategy, labels[g.config_id], g.config_id, g.config, g.records,
                            [run.path for run in g.runs], stats, deviations, config_diff=diffs[g.config_id],
                            per_seed=per_seed))
        first = mine[0].records[0]
        kind = first.scenario.get("kind", "?")
        wanted = list(keys) if keys else list(COLUMN_KEYS)
        if not keys and kind == "multilabel":
            wanted = [k for k in wanted if not (k in MULTILABEL_ALIASES and _same(rows, k, MULTILABEL_ALIASES[k]))]
        columns = [column(k) for k in all_keys if k in wanted and any(r.stats[k].n for r in rows)]
        table_rank = rank_by if rank_by in all_keys and any(r.stats[rank_by].n for r in rows) else "ACC"
        _rank(rows, column(table_rank))
        notes: list[str] = []
        for row in rows:  # numbered in order of first appearance, down the ranked table
            for d in row.deviations:
                if d not in notes:
                    notes.append(d)
            row.notes = sorted(notes.index(d) + 1 for d in row.deviations)
        T = first.scenario.get("num_experiences") or len(first.matrix[0])
        tables.append(ScenarioTable(scenario, kind, T, columns, rows, table_rank, notes))
    return tables


def _same(rows: Sequence[Row], key: str, alias: str) -> bool:
    """Whether every run's ``key`` equals its ``alias`` (e.g. multi-label last_mAP and ACC)."""
    for row in rows:
        for r in row.records:
            a, b = r.metrics.get(key), r.metrics.get(alias)
            if (a is None) != (b is None) or (a is not None and abs(float(a) - float(b)) > 1e-9):
                return False
    return True


def _rank(rows: list[Row], column: Column) -> None:
    """Sort rows best first by ``column`` (rows without it last; ties by total seconds,
    then label, config id)."""
    sign = -1.0 if column.higher_is_better is not False else 1.0

    def key(row: Row):
        m = row.stats[column.key].mean
        t = row.stats["total_s"].mean
        return (m is None, 0.0 if m is None else sign * rounded(m, column), t is None, t or 0.0, row.label, row.config_id)

    rows.sort(key=key)
    for i, row in enumerate(rows, 1):
        row.rank = i


def _forgetting(record) -> list[list[Optional[float]]]:
    """A run's forgetting matrix; over its schedule where the stream revisits experiences;
    all None for a run evaluated only after its last step (nothing to forget from)."""
    if final_row_only(record.matrix):
        return [[None] * len(record.matrix[0]) for _ in record.matrix[1:]]
    schedule = record.scenario.get("schedule")
    if isinstance(schedule, list) and len(schedule) + 1 != len(record.matrix[0]) + 1:
        first = [schedule.index(j) + 1 for j in range(len(record.matrix[0]))]
        return metrics.forgetting_matrix_schedule(record.matrix, first)
    return metrics.forgetting_matrix(record.matrix)


#: A harness key the label names only where it is set to the exception (rows evaluated
#: only after the last step), not as ``eval_rows=all`` on every other row.
EVAL_ROWS = "eval_rows"


def _labels(groups: Sequence[Group]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Per config id: the label (strategy name, plus the settings that tell its row apart:
    config keys that vary among configs of the same strategy, scenario/harness keys that
    vary across the table where this row sets them, and ``eval_rows=final`` for runs evaluated only at the end) and
    the ``key=value`` of the keys in which it differs from the other configs of its strategy."""
    flat = {g.config_id: flatten(g.config) for g in groups}
    everything = sorted({k for f in flat.values() for k in f})

    def varying(ids: list[str], prefix_ok) -> list[str]:
        return [k for k in everything if prefix_ok(k) and len({flat[i].get(k) for i in ids}) > 1]

    # the method's own settings, its add-on (already in the row name) and its backbone (a
    # method's own choice) only label rows that share the strategy name
    table_wide = varying([g.config_id for g in groups],
                         lambda k: not k.startswith(("strategy.", "addon.", "backbone.")) and k != EVAL_ROWS)
    labels, diffs = {}, {}
    for g in groups:
        same = [h.config_id for h in groups if h.strategy == g.strategy]
        own = [k for k in varying(same, lambda k: True) if k != EVAL_ROWS]
        keys = sorted(set(table_wide) | set(own))
        show = lambda k: f"{k.removeprefix('strategy.')}={_short(flat[g.config_id].get(k))}"  # noqa: E731
        # a harness or scenario key left unset (an off budget, no eval_every) names nothing:
        # only the rows that set it say so
        parts = [show(k) for k in keys
                 if flat[g.config_id].get(k) is not None or k.startswith(("strategy.", "backbone."))]
        if all(final_row_only(r.record.matrix) for r in g.runs):
            parts.append(f"{EVAL_ROWS}=final")
        labels[g.config_id] = g.strategy + (f" ({', '.join(parts)})" if parts else "")
        diffs[g.config_id] = [show(k) for k in varying(same, lambda k: True)]
    return labels, diffs


def _short(value: Optional[str]) -> str:
    """A config value as a label shows it: JSON text, strings unquoted and unescaped."""
    if value is None:
        return "unset"
    if value.startswith('"') and value.endswith('"'):
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value
