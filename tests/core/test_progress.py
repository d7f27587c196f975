"""Progress output (clbench.progress): phase lines without a terminal, the rich bar with the
total, ETA and postfix, and setup loops that report to the run's progress or to stderr."""
from __future__ import annotations

import io
import re
import time

from clbench.progress import PhaseProgress, run_progress, setup_progress


def test_progress_lines_without_a_terminal(tmp_path):
    from clbench.progress import PhaseProgress

    buf = io.StringIO()
    with PhaseProgress(True, stream=buf, interval=0.05) as progress:  # a StringIO is no TTY: lines
        assert progress.mode == "lines"
        with progress.phase("key init", total=None, unit="steps"):
            time.sleep(0.3)  # silent phase: still a line every interval
        with progress.phase("train 1/2", total=1000) as advance:
            for _ in range(4):
                advance(250)
                progress.set_postfix("epoch 1/1 · loss 0.43")
                time.sleep(0.06)
            advance.set_postfix("loss 0.40")
    lines = buf.getvalue().splitlines()
    assert any(ln.startswith("key init: running") for ln in lines)
    assert "key init: done in" in buf.getvalue()
    assert any(re.match(r"train 1/2: \d+/1,000 samples \(\d+%\), .* ETA .*loss 0.43", ln) for ln in lines), lines
    assert re.search(r"train 1/2: done in .*, 1,000 samples · loss 0.40", buf.getvalue())
    with PhaseProgress(False) as progress:
        with progress.phase("x", total=3) as advance:
            assert advance is None
        progress.set_postfix("ignored")


def test_progress_bar_shows_total_eta_and_postfix():
    from rich.console import Console

    from clbench.progress import PhaseProgress

    buf = io.StringIO()
    progress = PhaseProgress(True, mode="bar", stream=buf)
    progress._progress.live.console = Console(file=buf, width=150, force_terminal=True)
    with progress:
        with progress.phase("train 1/5", total=1000) as advance:
            advance(400)
            advance.set_postfix("epoch 2/3 · loss 0.43")
            progress._progress.refresh()
            assert "400/1,000 samples" in buf.getvalue() and "ETA" in buf.getvalue()
            assert "loss 0.43" in buf.getvalue()


def test_setup_progress_reports_to_the_run_progress_or_to_stderr(capsys):
    with setup_progress("setup thing", 3) as advance:
        for _ in range(3):
            advance(1)
    assert "setup thing: done in" in capsys.readouterr().err
    buf = io.StringIO()
    with PhaseProgress(True, mode="lines", stream=buf) as progress, run_progress(progress):
        with setup_progress("setup thing", 3) as advance:
            advance(3)
    assert "setup thing: done in" in buf.getvalue() and "3 steps" in buf.getvalue()
    with PhaseProgress(False) as progress, run_progress(progress):  # progress=false: silent
        with setup_progress("setup thing", 3) as advance:
            assert advance is None
    assert capsys.readouterr().err == ""
