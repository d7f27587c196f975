"""Progress bars for training and evaluation phases (rich), silent when disabled."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional


class PhaseProgress:
    """One bar per phase ("train 2/5", "eval 2/5"), advanced by samples seen."""

    def __init__(self, enabled: bool = True) -> None:
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
                TimeElapsedColumn(), transient=False,
            )

    def __enter__(self) -> "PhaseProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextlib.contextmanager
    def phase(self, description: str, total: Optional[int] = None) -> Iterator[Optional[Callable[[int], None]]]:
        """Yield a callback ``advance(n_samples)`` (or None when disabled)."""
        if self._progress is None:
            yield None
            return
        task = self._progress.add_task(description, total=total)
        progress = self._progress

        def advance(n: int) -> None:
            progress.advance(task, n)

        try:
            yield advance
        finally:
            progress.update(task, total=progress.tasks[task].completed)
