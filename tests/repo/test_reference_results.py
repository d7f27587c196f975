"""The committed reference results (results/reference/): kept apart from a user's runs and never
changed by them; LEADERBOARD.md is what `clbench leaderboard` prints for the committed
records; the script that makes them is valid bash."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from clbench.results import records

from handmade_records import board_md, make_record, run_cli

REPO = Path(__file__).resolve().parents[2]


def test_reference_results_live_apart_from_user_runs():
    ref = REPO / "results" / "reference"
    assert (ref / "LEADERBOARD.md").is_file() and records.find(ref), "reference records and leaderboard in results/reference"
    assert not (REPO / "results" / "LEADERBOARD.md").exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/runs/x/y/z.json"], cwd=REPO)
    kept = subprocess.run(["git", "check-ignore", "-q", "results/reference/runs/x/y/z.json"], cwd=REPO)
    if ignored.returncode in (0, 1):  # a git checkout
        assert ignored.returncode == 0 and kept.returncode == 1
    script = (REPO / "scripts" / "reference_runs.sh").read_text()
    assert "RESULTS=${RESULTS:-results/reference}" in script
    readme = (REPO / "README.md").read_text()
    assert "clbench leaderboard results/" in readme and "results/reference" in readme


def test_a_user_run_never_changes_the_reference_leaderboard(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "reference", results / "reference")
    _, before, _ = board_md(capsys, results / "reference")
    _, fresh, _ = board_md(capsys, results)  # a fresh clone: no runs of the user's yet
    assert "No complete run records found." in fresh
    records.save(make_record("naive", 0), results)  # the quickstart's record: results/runs/...
    _, after, _ = board_md(capsys, results / "reference")
    assert after == before
    _, mine, _ = board_md(capsys, results)
    assert "## toy" in mine and "split_fmnist" not in mine  # the user's board: only the user's runs


def test_committed_leaderboard_matches_committed_records(tmp_path, capsys):
    """results/reference/LEADERBOARD.md must be what `clbench leaderboard results/reference --format md`
    prints. Only the reference set counts: a user's runs (results/runs/...) never enter it."""
    results = REPO / "results" / "reference"
    committed = results / "LEADERBOARD.md"
    has_records = bool(records.find(results))
    code, out, _ = run_cli(capsys, results, "--format", "md")
    assert code == 0
    regenerate = "clbench leaderboard results/reference --format md --out results/reference/LEADERBOARD.md"
    if not committed.exists():  # nothing committed yet: the command still works on the empty folder
        assert not has_records, f"results/reference has run records but no LEADERBOARD.md; run `{regenerate}`"
        assert "No complete run records found." in out
        return
    assert out == committed.read_text(), f"results/reference/LEADERBOARD.md is stale: regenerate with `{regenerate}`"
    # the file written by --out is byte-identical to what is printed
    code, _, _ = run_cli(capsys, results, "--format", "md", "--out", tmp_path / "LB.md")
    assert (tmp_path / "LB.md").read_text() == out


def test_reference_script_is_valid_bash():
    script = REPO / "scripts" / "reference_runs.sh"
    assert script.exists()
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "SEEDS:-0,1,2" in text and "leaderboard" in text and "LEADERBOARD.md" in text
