"""Paper targets: the number a paper config (``experiment=paper/...``) should reproduce,
and the verdict of a run (or a leaderboard row) against it.

A paper config carries ``target: {metric, value, tol, source}`` at the top of its run
config, so every record of it has the target in ``record.config["target"]``. ``value``
and ``tol`` are in percent (as papers print them); record metrics are fractions and are
read as percent here. ``value: null`` says the method page gives no number: the verdict
then says so instead of inventing one. No torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from clbench.errors import UserError

#: target metric names that are spelt differently in the records
METRIC_ALIASES = {"mAP": "last_mAP", "last mAP": "last_mAP", "avg mAP": "avg_mAP", "Avg mAP": "avg_mAP"}


class TargetError(UserError, ValueError):
    """A malformed ``target`` in a config (names the bad value and what is valid)."""


@dataclass(frozen=True)
class Target:
    """The paper's number for one metric of one setting, with the tolerance (percent points)."""

    metric: str
    value: Optional[float]
    tol: float
    source: str = ""

    @property
    def key(self) -> str:
        """The record's metric key (``mAP`` -> ``last_mAP``)."""
        return METRIC_ALIASES.get(self.metric, self.metric)


@dataclass(frozen=True)
class Verdict:
    """A result against its target: ``within`` is None when either number is missing."""

    target: Target
    ours: Optional[float]  # percent
    within: Optional[bool]

    @property
    def status(self) -> str:
        if self.target.value is None:
            return "no paper number"
        if self.ours is None:
            return "no result"
        return "within tolerance" if self.within else "outside tolerance"

    def text(self) -> str:
        """``paper 98.63, ours 97.90, within tolerance (±1.00)`` and the like."""
        t = self.target
        ours = "—" if self.ours is None else f"{self.ours:.2f}"
        if t.value is None:
            return f"{t.metric}: paper number not on the method page ({t.source or 'no source'}), ours {ours}"
        return f"{t.metric}: paper {t.value:.2f}, ours {ours}, {self.status} (±{t.tol:.2f})"


def parse_target(data: Any) -> Optional[Target]:
    """The :class:`Target` of a config's ``target`` mapping; None when there is none."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise TargetError(f"target={data!r} is not a mapping; valid: {{metric: NAME, value: NUMBER|null, tol: NUMBER}}")
    unknown = sorted(set(data) - {"metric", "value", "tol", "source"})
    if unknown:
        raise TargetError(f"target has unknown keys {unknown}; valid keys: metric, value, tol, source")
    metric, value, tol = data.get("metric"), data.get("value"), data.get("tol", 0.0)
    if not isinstance(metric, str) or not metric:
        raise TargetError(f"target.metric={metric!r} is not a metric name (e.g. ACC, AIA, last_mAP, avg_mAP)")
    if value is not None and not _finite(value):
        raise TargetError(f"target.value={value!r} is not a finite number (percent) or null")
    if not _finite(tol) or tol < 0:
        raise TargetError(f"target.tol={tol!r} is out of range: must be a number >= 0 (percent points)")
    return Target(metric, None if value is None else float(value), float(tol), str(data.get("source") or ""))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def target_of(record: Any) -> Optional[Target]:
    """The target a record's run config carries (``record.config["target"]``), if any."""
    config = getattr(record, "config", None) or {}
    return parse_target(config.get("target")) if isinstance(config, Mapping) else None


def percent(record: Any, target: Target) -> Optional[float]:
    """The record's value of the target's metric, in percent (None when missing)."""
    metrics = getattr(record, "metrics", None) or {}
    value = metrics.get(target.key) if isinstance(metrics, Mapping) else None
    return 100.0 * float(value) if _finite(value) else None


def judge(target: Target, ours: Optional[float]) -> Verdict:
    """``ours`` (percent) against ``target``: within when |ours - paper| <= tol."""
    if target.value is None or ours is None:
        return Verdict(target, ours, None)
    return Verdict(target, ours, abs(ours - target.value) <= target.tol + 1e-9)


def verdict(record: Any, target: Optional[Target] = None) -> Optional[Verdict]:
    """One run against ``target`` (default: the one in its config); None without a target."""
    target = target or target_of(record)
    return None if target is None else judge(target, percent(record, target))


def row_verdict(records: Sequence[Any]) -> Optional[Verdict]:
    """A leaderboard row (the seeds of one config) against its target: the mean over seeds."""
    targets = [t for t in (target_of(r) for r in records) if t is not None]
    if not targets:
        return None
    values = [v for v in (percent(r, targets[0]) for r in records) if v is not None]
    return judge(targets[0], sum(values) / len(values) if values else None)


def target_notes(rows: Iterable[Any]) -> list[tuple[str, str]]:
    """(config id, ``strategy: verdict``) of each leaderboard row that carries a target."""
    out = []
    for row in rows:
        try:
            found = row_verdict(row.records)
        except TargetError as err:  # one odd record never ends a leaderboard
            out.append((row.config_id, f"{row.label}: target unreadable ({err})"))
            continue
        if found is not None:
            out.append((row.config_id, f"{row.label} (n={len(row.records)}): {found.text()}"))
    return out


TABLE_HEADS = ("config", "metric", "paper", "tol", "ours", "verdict", "source")


def table_rows(results: Sequence[tuple[str, Target, Optional[float]]]) -> list[list[str]]:
    """Cells of the target table: one row per (config name, target, our value in percent)."""
    rows = []
    for name, target, ours in results:
        v = judge(target, ours)
        rows.append([name, target.metric, "—" if target.value is None else f"{target.value:.2f}", f"±{target.tol:.2f}",
                     "—" if ours is None else f"{ours:.2f}", v.status, target.source])
    return rows


def render_table(results: Sequence[tuple[str, Target, Optional[float]]]) -> str:
    """The target table as GitHub Markdown (``clbench reproduce`` prints it)."""
    lines = ["| " + " | ".join(TABLE_HEADS) + " |", "|" + "|".join(["---"] * len(TABLE_HEADS)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in table_rows(results)]
    return "\n".join(lines)
