"""The leaderboard as LaTeX tables (booktabs), one ``table`` float per scenario, ready
to paste into a paper (needs ``\\usepackage{booktabs,graphicx}``). Without ``--metric``
the columns are the compact set (:data:`~clbench.results.leaderboard.aggregate.COMPACT_KEYS`), and
a table wider than the column is scaled down to ``\\columnwidth`` (never up)."""
from __future__ import annotations

import re

from clbench.results.leaderboard.aggregate import Leaderboard, ScenarioTable
from clbench.results.leaderboard.formats import PROTOCOL_DOC, format_stat, plural

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
    out = [f"% clbench leaderboard from {plural(board.num_records, 'run record')} "
           "(generated; needs \\usepackage{booktabs,graphicx})", ""]
    for table in board.tables:
        out += _table(table) + [""]
    for s in board.skipped:
        out.append(f"% skipped {s.path}: {s.reason}".replace("\n", " "))
    return "\n".join(out).rstrip("\n") + "\n"


def _cell(stat, column, seeds: int) -> str:
    """``mean`` with the std in a smaller size (``{\\scriptsize$\\pm$std}``): narrower columns."""
    text = format_stat(stat, column, seeds)
    mean, sep, rest = text.partition(" ± ")
    if not sep:
        return escape(text)
    return escape(mean) + r"{\scriptsize$\pm$" + escape(rest) + "}"


def _table(table: ScenarioTable) -> list[str]:
    cols = "rl" + "r" * (1 + len(table.columns))
    caption = (f"{escape(table.scenario)} ({escape(table.kind.replace('_', '-'))}, "
               f"{plural(table.num_experiences, 'experience')}): "
               f"mean $\\pm$ sample std over $n$ seeds, metrics in \\% (defined in {escape(PROTOCOL_DOC)}); "
               f"ranked by {escape(table.rank_by)}, best in bold.")
    arrows = {True: r" $\uparrow$", False: r" $\downarrow$", None: ""}
    heads = [r"\#", "Strategy", "$n$"] + [f"{escape(c.header)}{arrows[c.higher_is_better]}" for c in table.columns]
    lines = [
        r"\begin{table}[t]", r"  \centering", r"  \small", r"  \setlength{\tabcolsep}{3pt}",
        f"  \\caption{{{caption}}}",
        f"  \\label{{tab:clbench-{re.sub(r'[^A-Za-z0-9]+', '-', table.scenario)}}}",
        r"  \resizebox{\ifdim\width>\columnwidth\columnwidth\else\width\fi}{!}{%",
        f"  \\begin{{tabular}}{{@{{}}{cols}@{{}}}}", r"    \toprule",
        "    " + " & ".join(heads) + r" \\", r"    \midrule",
    ]
    best = {c.key: table.best(c) for c in table.columns}
    for i, row in enumerate(table.rows):
        label = escape(row.label) + (f"\\textsuperscript{{{','.join(map(str, row.notes))}}}" if row.notes else "")
        cells = [str(row.rank), label, str(len(row.records))]
        for c in table.columns:
            cell = _cell(row.stats[c.key], c, len(row.records))
            cells.append(f"\\textbf{{{cell}}}" if i in best[c.key] else cell)
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}}"]
    if table.notes:
        lines.append(r"  \par\smallskip{\footnotesize Deviations from the paper protocol (reduced runs, not reproductions): "
                     + "; ".join(f"\\textsuperscript{{{k}}}{escape(n)}" for k, n in enumerate(table.notes, 1)) + r".\par}")
    lines.append(r"\end{table}")
    return lines
