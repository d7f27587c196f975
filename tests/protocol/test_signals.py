"""Signals (clbench.protocol.signals): SIGTERM ends a run as interrupted with its rows kept; a
signal during a checkpoint waits until it is whole; the previous handler of the signal is
called after the run ends."""
from __future__ import annotations

import os
import signal
import time

import pytest

from clbench import protocol
from clbench.protocol import Interrupted, SignalGuard

from probes import Bias
from synthetic import blob_scenario


def settings(tmp_path, **kw) -> protocol.RunSettings:
    return protocol.RunSettings(results_dir=str(tmp_path), progress=False, device="cpu", **kw)


class Killed(Bias):
    def observe(self, batch):
        if self.steps == 15:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().observe(batch)


def test_sigterm_ends_the_run_as_interrupted_with_rows_kept(tmp_path):
    sc = blob_scenario(n_exp=3, per_class=20)
    s = Killed(info=sc.info_for(0.1))
    with pytest.raises(protocol.Interrupted):
        protocol.run(sc, s, settings=settings(tmp_path))
    from clbench.results import records

    (path,) = (tmp_path / "runs").rglob("*.json")
    rec = records.load(path)
    assert rec.status == "interrupted" and rec.experiences_done == 1 and len(rec.matrix) == 2
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


@pytest.mark.usefixtures("fmnist_available")
def test_signals_during_a_checkpoint_wait_until_it_is_whole():
    guard = SignalGuard()
    guard.install()
    try:
        with pytest.raises(Interrupted, match="after the checkpoint was saved"):
            with guard.critical():
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(0.05)
                written = True  # the signal did not cut this section short
        assert written
        with pytest.raises(Interrupted, match="SIGUSR2"):
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
    finally:
        guard.restore()


@pytest.mark.usefixtures("fmnist_available")
def test_the_previous_handler_of_the_signal_is_called_after_the_run_ends(tmp_path):
    """Submitit's handler of its preemption signal (requeue) still runs, after ours."""
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda s, f: calls.append(s))
    try:
        guard = SignalGuard()
        guard.install()
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
        guard.restore()
        guard.chain()
        assert calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
