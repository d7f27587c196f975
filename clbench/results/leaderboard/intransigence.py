"""Intransigence (Chaudhry et al. 2018; PROTOCOL.md): I_i = a*_i - R[i][i], where a*_i is the
accuracy on experience i of the ``joint`` reference trained on experiences 1..i. The
leaderboard reports INT = mean over steps i = 1..T, per seed, when a joint run of the same
scenario, backbone and run settings (the config key without the strategy) and seed exists."""
from __future__ import annotations

import json
from typing import Optional, Sequence

from clbench.results.leaderboard.collect import Group
from clbench.results.records import RunRecord

REFERENCE = "joint"


def intransigence(record: RunRecord, reference: RunRecord) -> Optional[float]:
    """Mean over steps of a*_i - R[i][i]; None when the matrices differ in size or a
    diagonal entry was not evaluated (``eval_rows=final``)."""
    T = len(record.matrix[0])
    if len(reference.matrix) != T + 1 or len(reference.matrix[0]) != T:
        return None
    if any(m.matrix[i][i - 1] is None for m in (record, reference) for i in range(1, T + 1)):
        return None
    return sum(reference.matrix[i][i - 1] - record.matrix[i][i - 1] for i in range(1, T + 1)) / T


def _setting(group: Group) -> str:
    return json.dumps({k: v for k, v in group.config.items() if k != "strategy"}, sort_keys=True, default=str)


def reference_for(group: Group, groups: Sequence[Group]) -> Optional[Group]:
    """The joint group run in the same setting; with several, the one trained for as many
    epochs; None when there is none or the choice is ambiguous (and for joint itself)."""
    if group.strategy == REFERENCE:
        return None
    found = [g for g in groups if g.strategy == REFERENCE and _setting(g) == _setting(group)]
    if len(found) > 1:
        epochs = (group.config.get("strategy") or {}).get("epochs")
        found = [g for g in found if (g.config.get("strategy") or {}).get("epochs") == epochs]
    return found[0] if len(found) == 1 else None


def intransigence_values(group: Group, groups: Sequence[Group]) -> list[Optional[float]]:
    """INT of each run of ``group`` against the reference run with the same seed (None where missing)."""
    ref = reference_for(group, groups)
    by_seed = {r.seed: r for r in ref.records} if ref else {}
    return [intransigence(r, by_seed[r.seed]) if r.seed in by_seed else None for r in group.records]
