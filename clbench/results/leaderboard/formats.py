"""Plain-text leaderboards: GitHub Markdown and CSV, plus the cell formatting every
format shares. Output is deterministic: sorted rows, fixed precision, no timestamps."""
from __future__ import annotations

import csv
import io
import re
from collections import Counter
from typing import Optional

from clbench.results.leaderboard.aggregate import COLUMN_KEYS, Column, Leaderboard, Row, ScenarioTable, Stat
from clbench.results.targets import target_notes
from clbench.results.stats import header_note

#: The protocol's definition, shipped in the clbench repository.
PROTOCOL_DOC = "docs/PROTOCOL.md"
UNITS_NOTE = (
    f"Metrics in % as mean ± sample std (ddof = 1) over the n seeds of a row ({PROTOCOL_DOC} in the clbench "
    "repository defines each; "
    "INT = intransigence, the mean over steps of the joint run's accuracy on the new experience minus the row's, "
    "same scenario and seed); "
    "Params = parameters after the last experience, +Params/exp = mean parameters added per experience; "
    "Non-zero params = parameters that are not zero after the last experience, for methods that prune and report "
    "them (extra.aux.nonzero_params; TAME: its experts and selector): the size comparable with a pruning paper's "
    "count, where Params counts every parameter; "
    "wall seconds: Prep s = preparation (the strategy's own, e.g. a key init or pretraining, and encoding data "
    "with a frozen encoder), Train s = training, Eval s = evaluation (all experiences), Total s = their sum, "
    "which breaks ties of the ranking; Train FLOPs = total training FLOPs (when counted), "
    "ACC/PFLOP = ACC in % per training PFLOP. "
    f"{header_note()} "
    "Config = the first 8 hex digits of the SHA-1 of a row's scientific configuration (its run config without the "
    "seed and the settings of where and how it ran: device, paths, progress, logger, evaluation batch size, "
    "workers, FLOP counting, resume, checkpoints): rows with equal hashes are seeds of one experiment; where a "
    "strategy has several rows, the keys in which they differ are listed under its table."
)
CONFIG_HEADER = ("SHA-1 of the row's scientific configuration (first 8 hex digits): the run config without the seed "
                 "and the settings of where and how it ran")
CONFIG_NOTE = "Configs of the same strategy differ in:"
TARGETS_NOTE = "Paper targets (experiment=paper/...; clbench.results.targets: the mean over seeds vs the paper's number):"
DEVIATIONS_NOTE = "Deviations from the method's paper protocol (a marked row is a reduced run, not a reproduction):"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "\v": "\\v"}


def printable(text: object) -> str:
    """``text`` with every control character (``\\x00-\\x1f``, ``\\x7f-\\x9f`` and the
    Unicode line and paragraph separators) written as its escape (``\\r``, ``\\x00``,
    ``\\u2028``): record text never ends a line, a comment or a table row."""
    def show(m: "re.Match[str]") -> str:
        c = m.group()
        return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")

    return _CONTROL.sub(show, str(text))


def format_value(value: Optional[float], column: Column) -> str:
    """One number as tables print it (fractions as percent with 2 decimals)."""
    if value is None:
        return "—"
    if column.unit == "fraction":
        return f"{100 * value:.2f}"
    if column.unit == "seconds":
        return f"{value:.1f}"
    if column.unit == "flops":
        return _si(value, "")
    if column.unit == "number":
        return f"{value:.3g}"
    return _si(value, "") if abs(value) >= 1e4 else f"{value:.0f}"


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def format_stat(stat: Stat, column: Column, seeds: int, pm: str = "±",
                interval: Optional[tuple[float, float]] = None) -> str:
    """``mean ± std`` (just the mean for one value), then ``[lo, hi]`` where an ``interval``
    is given; ``(n=k)`` when fewer values than seeds."""
    if stat.mean is None:
        return "—"
    text = format_value(stat.mean, column)
    if stat.std is not None:
        text += f" {pm} {format_value(stat.std, column)}"
    if interval is not None:
        text += f" [{format_value(interval[0], column)}, {format_value(interval[1], column)}]"
    if stat.n != seeds:
        text += f" (n={stat.n})"
    return text


def shown_interval(table: ScenarioTable, row: Row, column: Column) -> Optional[tuple[float, float]]:
    """The 95% t-interval a cell shows: on the column the table is ranked by, for rows of 2+ seeds."""
    return row.interval(column.key) if column.key == table.rank_by else None


def header(column: Column, up: str = "↑", down: str = "↓") -> str:
    if column.higher_is_better is None:
        return column.header
    return f"{column.header} {up if column.higher_is_better else down}"


def plural(n: int, word: str, words: str = "") -> str:
    """``1 run record``, ``2 run records``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def table_intro(table: ScenarioTable) -> str:
    text = (f"{table.kind}, {plural(table.num_experiences, 'experience')}; ranked by {table.rank_by} "
            f"(ties by Total s); {table.rank_by} with its 95% t-interval [lo, hi] over n seeds; bold: a lead over "
            f"the runner-up significant by a paired t-test over shared seeds (Welch's where fewer than 2 are shared), "
            f"p < 0.05.")
    final = table.final_only_rows
    if final:
        text += (f" {plural(final, 'row')} (eval_rows=final) {'was' if final == 1 else 'were'} evaluated only after the "
                 "last experience: ranked on the final row, which defines ACC only (AIA, FGT, BWT and INT need every "
                 "row and show —).")
    if table.kind == "multilabel" and not {c.key for c in table.columns} & {"avg_mAP", "last_mAP"}:
        text += " ACC is the last mAP and AIA the average mAP (KRT's names)."
    return text


def render_markdown(board: Leaderboard) -> str:
    """The leaderboard as one GitHub Markdown document."""
    out = ["# clbench leaderboard", "",
           f"Generated by `clbench leaderboard` from {plural(board.num_records, 'run record')}; do not edit by hand. "
           f"{UNITS_NOTE}", ""]
    if not board.tables:
        out += ["No complete run records found.", ""]
    for table in board.tables:
        out += [f"## {table.scenario}", "", table_intro(table), ""]
        heads = ["#", "Strategy", "Config", "n"] + [header(c) for c in table.columns]
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "|".join(["--:", ":--", ":--", "--:"] + ["--:"] * len(table.columns)) + "|")
        best = {c.key: table.best(c) for c in table.columns}
        for i, row in enumerate(table.rows):
            cells = [str(row.rank), _md_label(row), f"`{row.config_id}`", str(len(row.records))]
            for c in table.columns:
                cell = format_stat(row.stats[c.key], c, len(row.records), interval=shown_interval(table, row, c))
                cells.append(f"**{cell}**" if i in best[c.key] else cell)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        differing = config_notes(table)
        if differing:
            out += [CONFIG_NOTE, ""] + [f"- `{cid}` {_md_escape(text)}" for cid, text in differing] + [""]
        targets = target_notes(table.rows)  # rows of paper configs: result vs the paper's number
        if targets:
            out += [TARGETS_NOTE, ""] + [f"- `{cid}` {_md_escape(text)}" for cid, text in targets] + [""]
        if table.notes:
            out += [DEVIATIONS_NOTE, ""] + [f"{k}. {_md_escape(n)}" for k, n in enumerate(table.notes, 1)] + [""]
    out += ["## Skipped records", ""]
    if board.skipped:
        n = len(board.skipped)
        out += [f"{plural(n, 'record file')} {'was' if n == 1 else 'were'} left out:", ""]
        out += [f"- {_md_code(s.path)}: {_md_escape(s.reason)}" for s in board.skipped]
    else:
        out.append("None.")
    return "\n".join(out) + "\n"


def _md_label(row: Row) -> str:
    text = _md_escape(row.label)
    return text + (f"<sup>{','.join(map(str, row.notes))}</sup>" if row.notes else "")


def config_notes(table: ScenarioTable) -> list[tuple[str, str]]:
    """(config id, ``strategy: key=value, ...``) for each row whose strategy has several
    rows in ``table``: what its Config hash stands for, next to its siblings'."""
    count = Counter(row.strategy for row in table.rows)
    return [(row.config_id, f"{row.strategy}: {', '.join(row.config_diff) or 'harness settings only'}")
            for row in sorted(table.rows, key=lambda r: (r.strategy, r.rank)) if count[row.strategy] > 1]


def config_title(table: ScenarioTable, row: Row) -> str:
    """A row's Config hash explained in one line: the keys that tell it apart from the other
    rows of its strategy, or that it is the only one."""
    if sum(r.strategy == row.strategy for r in table.rows) < 2:
        return f"the only {row.strategy} configuration in this table"
    return f"{row.strategy} differs from its other rows in: {', '.join(row.config_diff) or 'harness settings only'}"


_MD_SPECIAL = re.compile(r"([\\`*|$])")


def _md_escape(text: str) -> str:
    """Record text as literal Markdown: control characters as escapes, no table break,
    emphasis, code, math or HTML."""
    return _MD_SPECIAL.sub(r"\\\1", printable(text)).replace("<", "&lt;")


def _md_code(text: str) -> str:
    """``text`` as a Markdown code span, whatever backticks it holds."""
    text = printable(text)
    fence = "`" * (1 + max((len(m) for m in re.findall("`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_csv(board: Leaderboard) -> str:
    """One CSV row per leaderboard row; values in record units (fractions, not %)."""
    keys = []
    for table in board.tables:
        keys += [c.key for c in table.columns if c.key not in keys]
    keys = sorted(keys, key=lambda k: (COLUMN_KEYS.index(k) if k in COLUMN_KEYS else len(COLUMN_KEYS), k))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scenario", "kind", "rank", "rank_by", "strategy", "label", "config_id", "n", "seeds"]
                    + [f"{k}_{part}" for k in keys for part in ("mean", "std", "n")]
                    + ["ci95_lo", "ci95_hi", "deviations", "records"])
    for table in board.tables:
        for row in table.rows:
            stats = [row.stats[k] for k in keys]
            writer.writerow([table.scenario, table.kind, row.rank, table.rank_by, row.strategy, row.label, row.config_id,
                             len(row.records), ";".join(map(str, row.seeds))]
                            + [x for s in stats for x in (_num(s.mean), _num(s.std), s.n)]
                            + [_num(v) for v in (row.interval(table.rank_by) or (None, None))]
                            + ["; ".join(row.deviations), ";".join(row.paths)])
    return buf.getvalue()


def _num(value: Optional[float]) -> str:
    return "" if value is None else repr(round(float(value), 12))

