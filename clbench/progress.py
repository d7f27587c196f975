"""Progress of a run's phases ("prepare", "train 2/5", "eval 2/5", ...).

On a terminal: one rich bar per phase with the count (``done/total`` where the total is
known), elapsed time, ETA and a postfix the protocol sets (epoch, running loss), and,
once the protocol has told it the plan (:meth:`PhaseProgress.plan_run`), a ``run`` bar
with the ETA of the whole run. Without a terminal (SLURM logs, ``> file``): plain lines,
one when a phase ends and one about every ``interval`` seconds while it runs, each
ending with the run's share done and its ETA. Silent when disabled.

API (used by the protocol)::

    with PhaseProgress(enabled) as progress:
        progress.plan_run(total_training_samples, phases=("train ",))   # the whole run's ETA
        with progress.phase("train 2/5", total=n_samples) as advance:  # advance is None when disabled
            advance(len(batch))
            progress.set_postfix("epoch 1/3 · loss 0.43")   # or advance.set_postfix(...)

The run's ETA counts the units of the phases named by ``phases`` (training samples) and
the time since the first of them: evaluation and other phases in between are part of
the rate, the setup before the first training batch is not.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Callable, Iterator, Optional, TextIO


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _count(n: float) -> str:
    return f"{int(n):,}" if float(n).is_integer() else f"{n:,.1f}"


class Advance:
    """The callable a phase yields: ``advance(n)`` adds ``n`` units; ``set_postfix(text)``
    and ``set_total(n)`` update what the phase shows."""

    def __init__(self, owner: "PhaseProgress", phase: "_Phase") -> None:
        self._owner, self._phase = owner, phase

    def __call__(self, n: float = 1) -> None:
        self._owner._advance(self._phase, n)

    def set_postfix(self, text: str) -> None:
        self._owner._set(self._phase, postfix=text)

    def set_total(self, total: Optional[float]) -> None:
        self._owner._set(self._phase, total=total)


class _Phase:
    def __init__(self, description: str, total: Optional[float], unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0.0
        self.postfix = ""
        self.start = time.monotonic()
        self.last_line = self.start
        self.task = None  # rich task id


class _RunPlan:
    """The whole run: units planned and done (in the phases whose names start with one of
    ``phases``), and the rate since the first of them."""

    def __init__(self, total: float, done: float, phases: tuple[str, ...]) -> None:
        self.total, self.done, self.phases = float(total), float(done), phases
        self.start: Optional[float] = None  # time and units just after the first counted advance
        self.start_done = self.done
        self.task = None  # rich task id

    def counts(self, description: str) -> bool:
        return description.startswith(self.phases)

    def add(self, n: float) -> None:
        self.done += n
        if self.start is None:  # the rate starts here: a resumed stream's jump is not speed
            self.start, self.start_done = time.monotonic(), self.done

    def eta(self) -> Optional[float]:
        """Seconds left, from the rate so far (None before there is one)."""
        if self.start is None or self.done <= self.start_done:
            return None
        rate = (time.monotonic() - self.start) / (self.done - self.start_done)
        return max(0.0, self.total - self.done) * rate

    def text(self) -> str:
        """``run 42%, ETA 3:10`` (``run 0%`` before the rate is known)."""
        pct = 100 * min(1.0, self.done / self.total) if self.total else 100.0
        eta = self.eta()
        return f"run {pct:.0f}%" + (f", ETA {_duration(eta)}" if eta is not None else "")


def _eta_column() -> Any:
    """Rich's time-remaining column, except where a task carries its own ``eta`` text (the run)."""
    from rich.progress import ProgressColumn, TimeRemainingColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        def __init__(self) -> None:
            super().__init__()
            self.remaining = TimeRemainingColumn()

        def render(self, task: Any) -> Any:
            own = task.fields.get("eta")
            return Text(own, style="progress.remaining") if own is not None else self.remaining.render(task)

    return EtaColumn()


class PhaseProgress:
    """Progress of the phases of a run, as bars (terminal) or lines (anything else).

    ``mode``: "auto" (bars on a terminal, lines otherwise), "bar" or "lines";
    ``interval``: seconds between the lines of a running phase; ``stream``: where to
    write (default stdout)."""

    def __init__(self, enabled: bool = True, *, mode: str = "auto", interval: float = 10.0,
                 stream: Optional[TextIO] = None) -> None:
        self.enabled = enabled
        self.interval = interval
        self._stream = stream
        self._progress = None
        self._current: Optional[_Phase] = None
        self._run: Optional[_RunPlan] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None
        if not enabled:
            self.mode = "off"
            return
        out = stream or sys.stdout
        if mode == "auto":
            mode = "bar" if getattr(out, "isatty", lambda: False)() else "lines"
        self.mode = mode
        if mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(), TextColumn("ETA"), _eta_column(), TextColumn("{task.fields[postfix]}"),
                transient=False, console=Console(file=out) if stream is not None else None,
            )

    def __enter__(self) -> "PhaseProgress":
        if self._progress is not None:
            self._progress.start()
        elif self.mode == "lines":  # a line every interval even while a phase reports nothing
            self._stop.clear()
            self._heartbeat = threading.Thread(target=self._beat, name="clbench-progress", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._heartbeat is not None:
            self._stop.set()
            self._heartbeat.join(timeout=1)
            self._heartbeat = None

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            ph = self._current
            if ph is not None and time.monotonic() - ph.last_line >= self.interval:
                self._line(ph)

    @contextlib.contextmanager
    def phase(self, description: str, total: Optional[float] = None, unit: str = "samples"
              ) -> Iterator[Optional[Callable[[int], None]]]:
        """Yield a callback ``advance(n)`` (an :class:`Advance`; None when disabled).
        ``total`` (in ``unit``) gives a bar and an ETA; None when unknown."""
        if not self.enabled:
            yield None
            return
        ph = _Phase(description, total, unit)
        previous, self._current = self._current, ph
        if self._progress is not None:
            ph.task = self._progress.add_task(description, total=total, count=self._count_text(ph), postfix="")
        try:
            yield Advance(self, ph)
        finally:
            self._current = previous
            if self._progress is not None:  # the bar ends full, at what was done
                self._progress.update(ph.task, total=ph.done or 1, completed=ph.done or 1,
                                      count=self._count_text(ph, final=True))
            elif self.mode == "lines":
                self._line(ph, final=True)

    def plan_run(self, total: float, *, done: float = 0, phases: tuple[str, ...] = ("train ",),
                 unit: str = "samples") -> None:
        """The whole run: ``total`` units (training samples) in the phases whose names start
        with one of ``phases``, ``done`` of them already (a resumed run). From then on the
        run's share done and its ETA are shown: a ``run`` bar, or the end of every line."""
        if not self.enabled or total <= 0:
            return
        self._run = _RunPlan(total, done, tuple(phases))
        if self._progress is not None:
            self._run.task = self._progress.add_task("run", total=total, completed=done, postfix="",
                                                     count=f"{_count(done)}/{_count(total)} {unit}", eta="")
        self._run_unit = unit

    def set_postfix(self, text: str) -> None:
        """Show ``text`` (e.g. "epoch 2/5 · loss 0.43") after the current phase's bar or line."""
        if self._current is not None:
            self._set(self._current, postfix=text)

    def print(self, text: str) -> None:
        """A line of its own (e.g. the run's plan), above the bars; nothing when disabled."""
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text, soft_wrap=True, markup=False, highlight=False)
        else:
            self._write(text)

    # -- internals ---------------------------------------------------------------------------

    def _advance(self, ph: _Phase, n: float) -> None:
        ph.done += n
        run = self._run
        if run is not None and run.counts(ph.description):
            run.add(n)
            if self._progress is not None and run.task is not None:
                eta = run.eta()
                self._progress.update(run.task, completed=min(run.done, run.total),
                                      count=f"{_count(run.done)}/{_count(run.total)} {self._run_unit}",
                                      eta="" if eta is None else _duration(eta))
        if self._progress is not None:
            self._progress.update(ph.task, advance=n, count=self._count_text(ph))
        elif self.mode == "lines" and time.monotonic() - ph.last_line >= self.interval:
            self._line(ph)

    def _set(self, ph: _Phase, *, postfix: Optional[str] = None, total: Optional[float] = -1) -> None:
        if postfix is not None:
            ph.postfix = postfix
        if total != -1:
            ph.total = total
        if self._progress is not None and ph.task is not None:
            fields = {"postfix": ph.postfix, "count": self._count_text(ph)}
            if total != -1:
                self._progress.update(ph.task, total=total, **fields)
            else:
                self._progress.update(ph.task, **fields)

    @staticmethod
    def _count_text(ph: _Phase, final: bool = False) -> str:
        if ph.total is None or final:
            return f"{_count(ph.done)} {ph.unit}" if ph.done or ph.total else ""
        return f"{_count(ph.done)}/{_count(ph.total)} {ph.unit}"

    def _line(self, ph: _Phase, final: bool = False) -> None:
        with self._lock:
            self._line_locked(ph, final)

    def _line_locked(self, ph: _Phase, final: bool) -> None:
        now = time.monotonic()
        ph.last_line = now
        elapsed = now - ph.start
        parts = [ph.description + ":"]
        if final:
            parts.append(f"done in {_duration(elapsed)}" + (f", {_count(ph.done)} {ph.unit}" if ph.done else ""))
        else:
            if ph.total:
                pct = 100 * ph.done / ph.total
                parts.append(f"{_count(ph.done)}/{_count(ph.total)} {ph.unit} ({pct:.0f}%), {_duration(elapsed)}")
                if 0 < ph.done < ph.total:
                    parts.append(f"ETA {_duration(elapsed * (ph.total - ph.done) / ph.done)}")
            elif ph.done:
                parts.append(f"{_count(ph.done)} {ph.unit}, {_duration(elapsed)}")
            else:
                parts.append(f"running, {_duration(elapsed)}")
        if ph.postfix:
            parts.append(f"· {ph.postfix}")
        if self._run is not None and self._run.start is not None:
            parts.append(f"· {self._run.text()}")
        self._write(" ".join(parts))

    def _write(self, text: str) -> None:
        out = self._stream or sys.stdout
        try:
            out.write(text + "\n")
            out.flush()
        except (OSError, ValueError):  # a closed log: progress never stops a run
            pass


#: the run's progress while the protocol runs a setup phase (``prepare``); None outside
_RUN_PROGRESS: list[Any] = []


@contextlib.contextmanager
def run_progress(progress: Any) -> Iterator[None]:
    """Let setup phases inside this block (DKVB's key init, trunk pretraining) report to
    the run's :class:`~clbench.progress.PhaseProgress` (the protocol wraps ``prepare``
    in it; a disabled progress keeps them silent)."""
    _RUN_PROGRESS.append(progress)
    try:
        yield
    finally:
        _RUN_PROGRESS.pop()


@contextlib.contextmanager
def setup_progress(description: str, total: Optional[float], unit: str = "steps"
                   ) -> Iterator[Optional[Callable[[float], None]]]:
    """A phase of a setup loop with a count and an ETA: the run's progress where the
    protocol set one (:func:`run_progress`), otherwise lines on stderr (one every 10 s
    and one at the end), so that no setup phase runs silently for minutes. Yields
    ``advance(n)`` or None (disabled)."""
    if _RUN_PROGRESS:
        progress = _RUN_PROGRESS[-1]
        with progress.phase(description, total=total, unit=unit) as advance:
            yield advance
        return
    with PhaseProgress(True, mode="lines", interval=10.0, stream=sys.stderr) as progress:
        with progress.phase(description, total=total, unit=unit) as advance:
            yield advance
