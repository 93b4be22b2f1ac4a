"""A one-line live progress display fed by an engine's event stream.

::

    async with engine.subscribe() as events:
        tg.start_soon(show_progress, events)   # cancel it, or let it end with the stream

It draws only when the stream is a terminal; otherwise it reads the events and draws
nothing (so the subscription never falls behind).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import AsyncIterable
from typing import Literal, TextIO

from engine.events import (
    EngineStopped,
    Event,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelQueued,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
)

__all__ = ("Progress", "show_progress")

_ENDED = (ModelTrained, ModelFailed, ModelInterrupted, ModelInvalid)


class Progress:
    """Counts from events: trials done, running, queued, failed, and the best metric."""

    def __init__(self, *, mode: Literal["max", "min"] = "max", total: int | None = None) -> None:
        self.mode, self.total = mode, total
        self.done = self.failed = 0
        self.queued: set[int] = set()
        self.running: set[int] = set()
        self.best: tuple[float, int] | None = None  # (final, model id)
        self.started = time.monotonic()

    def update(self, event: Event) -> None:
        if isinstance(event, ModelQueued):
            self.queued.add(event.model_id)
        elif isinstance(event, TrainingStarted):
            self.queued.discard(event.model_id)
            self.running.add(event.model_id)
        elif isinstance(event, ModelRetrying):
            self.running.discard(event.model_id)
            self.queued.add(event.model_id)
        elif isinstance(event, _ENDED):
            self._ended(event)

    def _ended(self, event: ModelTrained | ModelFailed | ModelInterrupted | ModelInvalid) -> None:
        self.queued.discard(event.model_id)
        self.running.discard(event.model_id)
        self.done += 1
        if isinstance(event, (ModelFailed, ModelInvalid)):
            self.failed += 1
        elif isinstance(event, ModelTrained) and not math.isnan(event.final):
            if self.best is None or (event.final > self.best[0] if self.mode == "max"
                                     else event.final < self.best[0]):
                self.best = (event.final, event.model_id)

    def line(self) -> str:
        """``trials 12/50 done (1 failed) | 2 running | 3 queued | best 0.93 (#7) | 1m05s``"""
        done = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        best = f"{self.best[0]:.6g} (#{self.best[1]})" if self.best is not None else "-"
        elapsed = int(time.monotonic() - self.started)
        return (f"trials {done} done ({self.failed} failed) | {len(self.running)} running | "
                f"{len(self.queued)} queued | best {best} | {elapsed // 60}m{elapsed % 60:02d}s")


async def show_progress(
    events: AsyncIterable[Event], *, stream: TextIO | None = None,
    mode: Literal["max", "min"] = "max", total: int | None = None, interval: float = 0.1,
) -> Progress:
    """Draw a progress line on ``stream`` (stderr) at most every ``interval`` seconds until
    the events end or an engine_stopped event; returns the final counts. When cancelled,
    the line stays as last drawn."""
    out = sys.stderr if stream is None else stream
    progress = Progress(mode=mode, total=total)
    tty = out.isatty()
    drawn = -math.inf
    try:
        async for event in events:
            progress.update(event)
            now = time.monotonic()
            if tty and now - drawn >= interval:
                out.write(f"\r\x1b[2K{progress.line()}")
                out.flush()
                drawn = now
            if isinstance(event, EngineStopped):
                break
    finally:
        if tty:
            out.write(f"\r\x1b[2K{progress.line()}\n")
            out.flush()
    return progress
