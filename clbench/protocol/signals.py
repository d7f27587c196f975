"""Signals that end a run as ``interrupted`` (a time limit, a preemption), never in the
middle of writing the record or a checkpoint."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Optional


class Interrupted(BaseException):
    """SIGTERM (e.g. a SLURM time limit) or Ctrl-C: the run ends as ``interrupted``."""


class SignalGuard:
    """SIGTERM (a time limit), SIGUSR1 and SIGUSR2 (Submitit's preemption signals) end the
    run as ``interrupted``, with the rows done so far and the checkpoint of the last
    finished experience. A signal that arrives while the record or a checkpoint is being
    written waits until the write is whole. Main thread only (elsewhere: does nothing)."""

    NAMES = ("SIGTERM", "SIGUSR1", "SIGUSR2")

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.received: Optional[int] = None
        self._pending: Optional[int] = None
        self._depth = 0
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.NAMES:
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    self.previous[sig] = signal.signal(sig, self._handle)
                    self._installed = True
                except (ValueError, OSError):  # pragma: no cover
                    pass

    def restore(self) -> None:
        """Put the previous handlers back (once; calling it again does nothing)."""
        if self._installed:
            for sig, handler in self.previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
            self._installed = False

    def chain(self) -> None:
        """Call the handler that was there before ours for the signal received, if it is a
        Python function (Submitit's requeue on its preemption signal)."""
        before = self.previous.get(self.received)
        if self.received is not None and callable(before):
            before(self.received, None)

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        self.received = signum
        if self._depth:
            self._pending = signum
            return
        raise Interrupted(f"signal {signum} ({signal.Signals(signum).name})")

    def critical(self) -> Any:
        """A block during which a signal waits (and is raised when the block ends)."""
        @contextlib.contextmanager
        def section():
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise Interrupted(f"signal {signum} ({signal.Signals(signum).name}), after the checkpoint was saved")

        return section()
