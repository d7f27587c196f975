"""The per-row assumption card (CLEVA-Compass style, Mundt et al. ICLR 2022): what a row's
runs assumed and used, read from fields the records already carry: task ids in training
and at test, boundaries, extra data, pretrained weights, memory, compute, tuning."""
from __future__ import annotations

import html
from typing import Any

from clbench.results.leaderboard.aggregate import Row, ScenarioTable


def _yes(flag: Any) -> str:
    return "yes" if flag else "no" if flag is not None else "not recorded"


def _bytes(n: float | None) -> str:
    if n is None:
        return "not recorded"
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def card(row: Row) -> list[tuple[str, str]]:
    """(assumption, value) pairs of ``row`` (its first record; values the seeds share)."""
    rec = row.records[0]
    vis = (rec.scenario or {}).get("visibility") or {}
    strategy = rec.strategy or {}
    aux = strategy.get("aux_data") or {}
    backbone = strategy.get("backbone") or {}
    weights = backbone.get("weights") if isinstance(backbone, dict) else None
    compute = rec.compute or {}
    memory = compute.get("memory") if isinstance(compute.get("memory"), list) else []
    last = memory[-1] if memory and isinstance(memory[-1], dict) else {}
    budget = compute.get("budget") if isinstance(compute.get("budget"), dict) else {}
    limits = ", ".join(f"{k}={budget[k]}" for k in ("steps", "flops", "memory_bytes") if budget.get(k) is not None)
    flops = row.stats["flops"].mean if "flops" in row.stats else None
    extra = ", ".join(f"{k}: {v}" for k, v in aux.items()) if isinstance(aux, dict) and aux else "none"
    return [
        ("task ids in training", _yes(vis.get("task_id_train"))),
        ("task ids at test", _yes(vis.get("task_id_test"))),
        ("experience boundaries", _yes(vis.get("boundaries"))),
        ("extra data", extra),
        ("pretrained weights", "none" if weights in (None, "none") else str(weights)),
        ("memory (model + frozen copies + stored data)",
         "not recorded" if not last else f"{_bytes(last.get('total'))} (stored data {_bytes(last.get('stored'))}, "
                                         f"frozen copies {_bytes(last.get('frozen_copies'))})"),
        ("training compute", (f"{flops:.3g} FLOPs" if flops is not None else "FLOPs not counted")
         + (f"; budget per experience: {limits}" if limits else "")),
        ("settings chosen", str(strategy.get("tuning") or "not recorded")),
    ]


def render_cards(table: ScenarioTable) -> list[str]:
    """The cards of ``table``'s rows as one collapsed HTML block."""
    items = []
    for row in table.rows:
        cells = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in card(row))
        items.append(f'<div class="card"><p><code>{html.escape(row.config_id)}</code> {html.escape(row.label)}</p>'
                     f"<dl>{cells}</dl></div>")
    summary = ('<details class="cards"><summary>Assumption cards: what each row assumed and used (task ids, '
               "boundaries, extra data, pretrained weights, memory, compute, tuning)</summary>")
    return [summary, *items, "</details>"]
