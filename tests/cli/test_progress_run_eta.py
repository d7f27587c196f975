"""What a run's progress shows (clbench.progress, fed by clbench.protocol.session): the ETA
of the whole run, not only of the phase, and the training loss even when an experience
has fewer steps than log_every."""
from __future__ import annotations

import io
import re
import time

from clbench import protocol
from clbench.progress import PhaseProgress

from probes import Bias
from synthetic import blob_scenario


def test_lines_end_with_the_whole_runs_share_and_eta():
    buf = io.StringIO()
    with PhaseProgress(True, stream=buf, interval=0.05) as progress:
        progress.plan_run(2000, phases=("train ",))
        with progress.phase("prepare"):
            pass
        for step in (1, 2):
            with progress.phase(f"train {step}/2", total=1000) as advance:
                for _ in range(4):
                    advance(250)
                    time.sleep(0.02)
            with progress.phase(f"eval {step}/2", total=10) as advance:
                advance(10)
    text = buf.getvalue()
    assert "prepare: done in" in text and "run " not in text.split("train 1/2")[0]  # no rate before training
    assert re.search(r"train 1/2: done in .* · run 50%, ETA \d", text), text
    assert re.search(r"eval 1/2: done in .* · run 50%, ETA", text), text  # every line, once the run has a rate
    assert re.search(r"train 2/2: done in .* · run 100%, ETA 0\.0s", text), text


def test_a_resumed_run_starts_at_what_was_done_and_the_jump_is_not_speed():
    buf = io.StringIO()
    with PhaseProgress(True, stream=buf) as progress:
        progress.plan_run(1000, done=500)
        with progress.phase("train 2/2", total=500) as advance:
            advance(100)
            time.sleep(0.05)
            advance(100)
    assert re.search(r"train 2/2: done in .* · run 70%, ETA (?!0\.0s)[\d:.]+s?", buf.getvalue()), buf.getvalue()
    buf = io.StringIO()
    with PhaseProgress(True, stream=buf) as progress:
        progress.plan_run(1000, phases=("stream",))
        with progress.phase("stream", total=1000) as advance:
            advance(600)  # a resumed stream's position: no rate from it
            time.sleep(0.05)
            advance(100)
    assert re.search(r"stream: done in .* · run 70%, ETA (?!0\.0s)[\d:.]+s?", buf.getvalue()), buf.getvalue()


def test_the_bar_has_a_run_row_with_its_own_eta():
    from rich.console import Console

    buf = io.StringIO()
    progress = PhaseProgress(True, mode="bar", stream=buf)
    progress._progress.live.console = Console(file=buf, width=150, force_terminal=True)
    with progress:
        progress.plan_run(1000)
        with progress.phase("train 1/2", total=500) as advance:
            advance(100)
            time.sleep(0.05)
            advance(100)
            progress._progress.refresh()
    assert re.search(r"run .*200/1,000 samples.*ETA", buf.getvalue()), buf.getvalue()


def test_a_run_shows_its_eta_and_the_loss_of_an_experience_shorter_than_log_every(tmp_path, capsys):
    sc = blob_scenario(n_exp=2, per_class=20)
    s = Bias(info=sc.info_for(0.1))  # 2 epochs of 36 samples, batch 8: 10 steps per experience
    settings = protocol.RunSettings(results_dir=str(tmp_path), progress=True, device="cpu", log_every=1000)
    protocol.run(sc, s, settings=settings)
    out = capsys.readouterr().out  # captured: no terminal, so lines
    trained = [ln for ln in out.splitlines() if ln.startswith("train ")]
    assert len(trained) == 2 and all(re.search(r"loss \d\.\d{4}", ln) for ln in trained), out
    assert re.search(r"train 1/2: done in .*run 50%, ETA", trained[0]), out
    assert "run 100%" in trained[1], out
