"""The leaderboard as LaTeX tables (booktabs), one ``table`` float per scenario, ready
to paste into a paper (needs ``\\usepackage{booktabs}``)."""
from __future__ import annotations

import re

from clbench.leaderboard.aggregate import Leaderboard, ScenarioTable
from clbench.leaderboard.formats import format_stat

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "—": "--", "<": r"\textless{}", ">": r"\textgreater{}",
}
_SPECIAL_RE = re.compile("|".join(re.escape(k) for k in _SPECIAL))


def escape(text: str) -> str:
    """Text safe inside a LaTeX document (specials escaped, ± as math)."""
    return _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group()], text)


def render_latex(board: Leaderboard) -> str:
    """All scenario tables; skipped records listed as comments."""
    out = [f"% clbench leaderboard from {board.num_records} run records (generated; needs \\usepackage{{booktabs}})", ""]
    for table in board.tables:
        out += _table(table) + [""]
    for s in board.skipped:
        out.append(f"% skipped {s.path}: {s.reason}".replace("\n", " "))
    return "\n".join(out).rstrip("\n") + "\n"


def _table(table: ScenarioTable) -> list[str]:
    cols = "rl" + "r" * (1 + len(table.columns))
    caption = (f"{escape(table.scenario)} ({escape(table.kind.replace('_', '-'))}, {table.num_experiences} experiences): "
               f"mean $\\pm$ sample std over $n$ seeds, metrics in \\%; ranked by {escape(table.rank_by)}, best in bold.")
    arrows = {True: r"$\uparrow$", False: r"$\downarrow$"}
    heads = [r"\#", "Strategy", "$n$"] + [f"{escape(c.header)} {arrows[c.higher_is_better]}" for c in table.columns]
    lines = [
        r"\begin{table}[t]", r"  \centering", r"  \small",
        f"  \\caption{{{caption}}}",
        f"  \\label{{tab:clbench-{re.sub(r'[^A-Za-z0-9]+', '-', table.scenario)}}}",
        f"  \\begin{{tabular}}{{@{{}}{cols}@{{}}}}", r"    \toprule",
        "    " + " & ".join(heads) + r" \\", r"    \midrule",
    ]
    best = {c.key: table.best(c) for c in table.columns}
    for i, row in enumerate(table.rows):
        label = escape(row.label) + (f"\\textsuperscript{{{','.join(map(str, row.notes))}}}" if row.notes else "")
        cells = [str(row.rank), label, str(len(row.records))]
        for c in table.columns:
            cell = escape(format_stat(row.stats[c.key], c, len(row.records)))
            cells.append(f"\\textbf{{{cell}}}" if i in best[c.key] else cell)
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}"]
    if table.notes:
        lines.append(r"  \par\smallskip{\footnotesize Deviations from the paper protocol (reduced runs, not reproductions): "
                     + "; ".join(f"\\textsuperscript{{{k}}}{escape(n)}" for k, n in enumerate(table.notes, 1)) + r".\par}")
    lines.append(r"\end{table}")
    return lines
