"""Leaderboards from run records: load and group (collect), aggregate over seeds and
rank (aggregate), render as Markdown / CSV (formats), LaTeX (latex) or HTML (html)."""
from clbench.results.leaderboard.command import build_leaderboard, leaderboard_command

__all__ = ["build_leaderboard", "leaderboard_command"]
