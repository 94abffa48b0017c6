"""Progress on stderr for the long commands (upscale, --self-supervised, evaluate, benchmark).

On a terminal: a live bar (rich). When stderr is a pipe or a log file (nohup, Slurm, ``2>log``):
a plain line every ``MEDSR_PROGRESS_SECONDS`` seconds (default 10), such as::

    medsr upscale: input 2 of 5 (brain.nii.gz 40/120), 27% done, 1 min 20 s elapsed, ETA 3 min 36 s

Runs shorter than that print no progress line at all. ``--quiet`` silences both. Progress
never goes to stdout, so the result lines stay machine-readable.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

INTERVAL_ENV_VAR = "MEDSR_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0


def default_interval() -> float:
    """Seconds between plain progress lines: ``$MEDSR_PROGRESS_SECONDS``, else 10."""
    text = os.environ.get(INTERVAL_ENV_VAR, "")
    try:
        value = float(text) if text else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``12 s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0


class Progress:
    """A rich-``Progress``-like object: ``add_task``, ``update``, ``advance``, ``remove_task``,
    used as a context manager.

    The first task added is the overall one when ``overall`` is set (its total counts the
    inputs); other tasks are the steps of the current input (tiles, slices, training steps)
    and refine the percentage between two inputs.
    """

    def __init__(
        self,
        label: str,
        *,
        overall: bool = True,
        quiet: bool = False,
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.overall = overall
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.interval = default_interval() if interval is None else interval
        self.clock = clock
        self.live = not quiet and _is_terminal(self.stream)
        self._tasks: dict[int, _Task] = {}
        self._next_id = 0
        self._overall_id: int | None = None
        self._start = clock()
        self._last_line = self._start
        self._rich: Any = None
        self._rich_ids: dict[int, Any] = {}

    # -- context manager -----------------------------------------------------------------------
    def __enter__(self) -> Progress:
        self._start = self._last_line = self.clock()
        if self.live:
            self._rich = _rich_progress(self.stream)
            self._rich.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.__exit__(kind, error, tb)
            self._rich = None
            self._rich_ids.clear()

    # -- the rich Progress subset that the commands use ------------------------------------------
    def add_task(self, description: str, total: float | None = None) -> int:
        task_id = self._next_id
        self._next_id += 1
        self._tasks[task_id] = _Task(description, total)
        if self.overall and self._overall_id is None:
            self._overall_id = task_id
        if self._rich is not None:
            self._rich_ids[task_id] = self._rich.add_task(description, total=total)
        return task_id

    def update(
        self,
        task_id: int,
        *,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
    ) -> None:
        task = self._tasks[task_id]
        if completed is not None:
            task.completed = completed
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        if task_id in self._rich_ids:
            self._rich.update(
                self._rich_ids[task_id], completed=completed, total=total, description=description
            )
        self._tick()

    def advance(self, task_id: int, advance: float = 1) -> None:
        self._tasks[task_id].completed += advance
        if task_id in self._rich_ids:
            self._rich.advance(self._rich_ids[task_id], advance)
        self._tick()

    def remove_task(self, task_id: int) -> None:
        self._tasks.pop(task_id, None)
        if task_id in self._rich_ids:
            self._rich.remove_task(self._rich_ids.pop(task_id))

    # -- plain lines -----------------------------------------------------------------------------
    def fraction(self) -> float | None:
        """Overall fraction done (0..1), or None when nothing has a total yet."""
        steps = [t for i, t in self._tasks.items() if i != self._overall_id]
        step_fraction = None
        for task in steps:
            if task.total:
                step_fraction = min(task.completed / task.total, 1.0)
        overall = self._tasks.get(self._overall_id) if self._overall_id is not None else None
        if overall is not None and overall.total:
            done = overall.completed + (step_fraction or 0.0)
            return min(done / overall.total, 1.0)
        return step_fraction

    def line(self) -> str:
        """The plain progress line for now."""
        parts = []
        overall = self._tasks.get(self._overall_id) if self._overall_id is not None else None
        steps = [t for i, t in self._tasks.items() if i != self._overall_id]
        current = steps[-1] if steps else None
        detail = ""
        if current is not None:
            detail = current.description
            if current.total:
                detail += f" {current.completed:g}/{current.total:g}"
        if overall is not None and overall.total:
            k = min(int(overall.completed) + 1, int(overall.total))
            parts.append(f"input {k} of {overall.total:g}" + (f" ({detail})" if detail else ""))
        elif detail:
            parts.append(detail)
        elapsed = self.clock() - self._start
        fraction = self.fraction()
        if fraction is not None:
            parts.append(f"{100 * fraction:.0f}% done")
        parts.append(f"{duration(elapsed)} elapsed")
        if fraction:
            parts.append(f"ETA {duration(elapsed * (1 - fraction) / fraction)}")
        return f"{self.label}: " + ", ".join(parts)

    def _tick(self) -> None:
        if self.quiet or self.live:
            return
        now = self.clock()
        if now - self._last_line < self.interval:
            return
        self._last_line = now
        print(self.line(), file=self.stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _rich_progress(stream: TextIO) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
    )
