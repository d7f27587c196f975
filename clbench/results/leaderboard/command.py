"""``clbench leaderboard``: tables of aggregated run records in md, csv, latex or html."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from clbench.results.leaderboard.aggregate import AUX_PREFIX, COLUMN_KEYS, COMPACT_KEYS, Leaderboard, build_tables
from clbench.results.leaderboard.collect import group_runs, load_records


def _renderers(figures: Optional[Path] = None) -> dict[str, Callable[[Leaderboard], str]]:
    from clbench.results.leaderboard.formats import render_csv, render_markdown
    from clbench.results.leaderboard.html import render_html
    from clbench.results.leaderboard.latex import render_latex

    return {"md": render_markdown, "csv": render_csv, "latex": render_latex,
            "html": lambda board: render_html(board, figures_dir=figures)}


def _metric(text: str) -> str:
    """A ``--metric`` value: a column key, or ``aux.<name>`` (a value of the records' ``extra.aux``)."""
    if text in COLUMN_KEYS or (text.startswith(AUX_PREFIX) and len(text) > len(AUX_PREFIX)):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(COLUMN_KEYS)}, "
                                     f"or {AUX_PREFIX}<name> for a value of the records' extra.aux)")


FORMATS = ("md", "csv", "latex", "html")


def build_leaderboard(results_dir: Path, *, scenarios: Optional[Sequence[str]] = None,
                      metrics: Optional[Sequence[str]] = None, rank_by: str = "ACC") -> Leaderboard:
    """Load, group and aggregate the records under ``results_dir`` (optionally only some
    scenarios / columns). Raises ValueError for a scenario no usable record has."""
    loaded, skipped = load_records(results_dir)
    groups, superseded = group_runs(loaded)
    if scenarios:
        known = sorted({g.scenario for g in groups})
        unknown = [s for s in scenarios if s not in known]
        if unknown:
            raise ValueError(f"no complete records for scenario(s) {unknown} under {results_dir}; "
                             f"scenarios with records: {', '.join(known) or 'none'}")
        groups = [g for g in groups if g.scenario in scenarios]
    tables = build_tables(groups, rank_by=rank_by, keys=metrics)
    skipped = sorted(skipped + superseded, key=lambda s: s.path)
    return Leaderboard(tables, skipped, sum(len(g.runs) for g in groups), rank_by)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clbench leaderboard",
        description="Aggregate run records (mean ± sample std over seeds) into leaderboard tables, one per scenario.")
    p.add_argument("results_dir", nargs="?", default="results", type=Path, metavar="RESULTS_DIR",
                   help="folder holding runs/<scenario>/<strategy>/*.json (default: results)")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default: md)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here instead of standard output")
    p.add_argument("--scenario", nargs="+", metavar="NAME", help="only these scenarios")
    p.add_argument("--metric", nargs="+", metavar="KEY", type=_metric,
                   help=f"only these columns (default: all recorded; for latex the compact set "
                        f"{', '.join(COMPACT_KEYS)}); choices: {', '.join(COLUMN_KEYS)}, or {AUX_PREFIX}<name>")
    p.add_argument("--figures", type=Path, metavar="DIR",
                   help="html: also write every figure into DIR as PNG and SVG files")
    p.add_argument("--rank", default="ACC", choices=COLUMN_KEYS, metavar="KEY",
                   help="column to rank rows by (default: ACC; a scenario without it ranks by ACC)")
    return p


def leaderboard_command(args: list[str]) -> int:
    """Entry point of ``clbench leaderboard``; returns the exit status (2 for bad input)."""
    parser = _parser()
    try:
        ns = parser.parse_args(args)
    except SystemExit as exit_:  # argparse already printed the message naming the valid choices
        return int(exit_.code or 0)
    if not ns.results_dir.is_dir():
        print(f"clbench leaderboard: error: results directory {str(ns.results_dir)!r} does not exist", file=sys.stderr)
        return 2
    try:
        metrics = ns.metric or (list(COMPACT_KEYS) if ns.format == "latex" else None)
        board = build_leaderboard(ns.results_dir, scenarios=ns.scenario, metrics=metrics, rank_by=ns.rank)
    except ValueError as err:
        print(f"clbench leaderboard: error: {err}", file=sys.stderr)
        return 2
    if ns.figures is not None and ns.format != "html":
        print("clbench leaderboard: error: --figures goes with --format html", file=sys.stderr)
        return 2
    text = _renderers(ns.figures)[ns.format](board)
    try:
        if ns.out is None:
            sys.stdout.write(text)
        else:
            ns.out.parent.mkdir(parents=True, exist_ok=True)
            ns.out.write_text(text)
    except OSError as err:
        if isinstance(err, BrokenPipeError):
            raise
        print(f"clbench leaderboard: error: cannot write {ns.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    if board.skipped:
        n = len(board.skipped)
        print(f"clbench leaderboard: skipped {n} record file{'' if n == 1 else 's'} (listed in the output"
              f"{'' if ns.format != 'csv' else ' of --format md'})", file=sys.stderr)
    return 0
