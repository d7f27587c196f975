"""Build a leaderboard from run records: every record under a folder (the committed reference
runs by default, or your own ``results/``), grouped by scenario and configuration, mean ±
std over seeds, ranked. Prints the top rows of each scenario, then writes the full
leaderboard as Markdown and HTML (what ``clbench leaderboard`` writes).

    python examples/build_a_leaderboard.py --records results/examples --out /tmp/board
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "reference",
                   help="folder holding runs/<scenario>/<strategy>/*.json (default: the reference runs)")
    p.add_argument("--scenario", nargs="*", help="only these scenarios")
    p.add_argument("--rank", default="ACC", help="the column to rank by")
    p.add_argument("--top", type=int, default=5, help="rows printed per scenario")
    p.add_argument("--out", type=Path, default=Path("leaderboard"), help="writes <out>.md and <out>.html")
    a = p.parse_args(argv)

    from clbench.results.leaderboard import build_leaderboard, leaderboard_command
    from clbench.results.leaderboard.formats import render_markdown

    board = build_leaderboard(a.records, scenarios=a.scenario, rank_by=a.rank)
    print(f"{board.num_records} records, {len(board.skipped)} skipped")
    for table in board.tables:
        print(f"\n{table.scenario} ({table.kind}, {table.num_experiences} experiences), ranked by {table.rank_by}:")
        for row in table.rows[:a.top]:
            stat = row.stats.get(table.rank_by)
            shown = "-" if stat is None or stat.mean is None else f"{100 * stat.mean:.2f}"
            if stat is not None and stat.std is not None:
                shown += f" ± {100 * stat.std:.2f}"
            print(f"  {row.rank:>2}. {row.label:<28} {table.rank_by} {shown}  (seeds {row.seeds})")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".md").write_text(render_markdown(board))
    scenarios = ["--scenario", *a.scenario] if a.scenario else []
    code = leaderboard_command([str(a.records), "--format", "html", "--out", str(a.out.with_suffix(".html")),
                                "--rank", a.rank, *scenarios])
    print(f"\nwrote {a.out.with_suffix('.md')} and {a.out.with_suffix('.html')}")
    return code


if __name__ == "__main__":
    sys.exit(main())
