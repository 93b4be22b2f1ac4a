"""A one-line live progress display fed by an engine's event stream.

::

    events = engine.subscribe()                 # before the engine starts: every event
    async with engine:
        tg.start_soon(functools.partial(show_progress, events, engine=engine))

It draws only when the stream is a terminal; otherwise it reads the events and draws
nothing (so the subscription never falls behind). With ``engine``, the line counts the
models a resumed run finished before (so a 40-model run resumed after 35 ends at
``40/40``), its total is the engine's ``max_trials`` and "best" follows the run's
objective (``engine.set_objective``, which strategies call with their ``mode``).
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, TextIO

from engine._objective import (
    MetricValue,
    Mode,
    check_mode,
    fidelity,
    is_score,
    ranked_value,
    score,
    sort_key,
)
from engine.events import (
    EngineStopped,
    Event,
    MetricReported,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelPaused,
    ModelQueued,
    ModelResumed,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
    WorkerDied,
)
from engine.space import ModelStatus

if TYPE_CHECKING:
    from engine.engine import Engine, ModelHandle

__all__ = ("Progress", "show_progress")

_ENDED = {ModelTrained: ModelStatus.Trained, ModelFailed: ModelStatus.Failed,
          ModelInvalid: ModelStatus.Invalid, ModelInterrupted: ModelStatus.Interrupted}
_DONE = (ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Invalid)


class Progress:
    """Counts from events, as a user means them.

    - ``running``: models a worker trains now. A worker trains one model at a time, so
      the model a worker starts ends the one before on that worker, even when the
      start (of a prefetched model) comes before the end event of the one before.
    - ``queued``: accepted and not started, prefetched ones included; retried ones too.
    - ``done``: finished, trained or failed (``failed`` counts failed and invalid ones),
      including those finished before the first event it saw: a resumed run's earlier
      models (see :meth:`restore`).
    - ``interrupted``: apart from done: a shutdown's are trained again on resume.
    - ``total``: the run's budget (``engine.max_trials`` when given an engine).
    - ``best``: ``(value, model id)`` of the best ranked model under ``mode`` (default:
      the engine's objective, else ``"max"``) at the highest fidelity reached
      (``best_fidelity``): trained models by their final, those stopped early at the
      step they reached, paused ones by their last report at the step they reached
      (``engine._objective``); ties go to the lower model id.
    """

    def __init__(self, *, mode: str | None = None, total: int | None = None,
                 engine: Engine | None = None) -> None:
        self._mode: Mode | None = None if mode is None else check_mode(mode)
        self._engine = engine
        self.total = total if total is not None or engine is None else engine.max_trials
        self._status: dict[int, ModelStatus] = {}
        self._counts: Counter[ModelStatus] = Counter()
        self._workers: dict[str, int] = {}  # worker -> the model it trains now
        self._last: dict[int, tuple[int, MetricValue]] = {}  # (step, value) of a live model
        self._ranked: dict[int, tuple[float, float]] = {}  # model -> (fidelity, score)
        self._best: dict[Mode, tuple[float, float, int] | None] = {}  # cache, per mode
        self._restored = engine is None
        self.started = time.monotonic()

    @property
    def mode(self) -> Mode:
        if self._mode is not None:
            return self._mode
        objective = self._engine.objective if self._engine is not None else None
        return objective.mode if objective is not None else "max"

    @property
    def done(self) -> int:
        return sum(self._counts[status] for status in _DONE)

    @property
    def failed(self) -> int:
        return self._counts[ModelStatus.Failed] + self._counts[ModelStatus.Invalid]

    @property
    def interrupted(self) -> int:
        return self._counts[ModelStatus.Interrupted]

    @property
    def running(self) -> int:
        return len(self._workers)

    @property
    def queued(self) -> int:
        return self._counts[ModelStatus.Frozen] + self._counts[ModelStatus.Retrying]

    @property
    def best(self) -> tuple[float, int] | None:
        found = self._best_of(self.mode)
        return None if found is None else (found[1], found[2])

    @property
    def best_fidelity(self) -> float | None:
        """The step :attr:`best` ranks at (``math.inf``: trained to its end)."""
        found = self._best_of(self.mode)
        return None if found is None else found[0]

    def _best_of(self, mode: Mode) -> tuple[float, float, int] | None:
        if mode not in self._best:
            keyed = [(-reached, sort_key(value, mode), model_id)
                     for model_id, (reached, value) in self._ranked.items()]
            top = min(keyed, default=None)
            self._best[mode] = None if top is None else (
                -top[0], self._ranked[top[2]][1], top[2])
        return self._best[mode]

    def restore(self, handles: Iterable[ModelHandle], before: float) -> None:
        """Count the models among ``handles`` that were completed before ``before`` (or
        before this engine ran: a resumed run's), as no event will tell of them. With an
        engine, the first event calls it with that event's time. An event about one of
        them later takes over from here."""
        for handle in handles:
            ended = handle.ended_at
            if handle.model_id in self._status:
                continue
            if handle.status is ModelStatus.Paused or (
                    handle.status.completed() and (ended is None or ended < before)):
                self._set(handle.model_id, handle.status)
                self._rank(handle.model_id, ranked_value(handle.model),
                           fidelity(handle.model))

    def update(self, event: Event) -> None:
        """Count ``event``; events that change no count are ignored."""
        if not self._restored and self._engine is not None:
            self._restored = True
            self.restore(self._engine.handles(), event.time)
        if isinstance(event, MetricReported):
            self._last[event.model_id] = (event.step, event.value)
        elif isinstance(event, ModelQueued | ModelRetrying | ModelResumed):
            self._release(event.model_id)
            self._unrank(event.model_id)
            self._set(event.model_id, ModelStatus.Retrying if isinstance(
                event, ModelRetrying) else ModelStatus.Frozen)
        elif isinstance(event, ModelPaused):  # its worker is free; ranked at its step
            self._release(event.model_id)
            self._set(event.model_id, ModelStatus.Paused)
            self._rank(event.model_id, self._paused_value(event), event.step)
        elif isinstance(event, TrainingStarted):
            self._release(event.model_id)
            self._unrank(event.model_id)
            self._workers[event.worker] = event.model_id  # the worker's model before ended
            self._set(event.model_id, ModelStatus.Training)
        elif isinstance(event, ModelTrained | ModelFailed | ModelInvalid | ModelInterrupted):
            self._release(event.model_id)
            self._last.pop(event.model_id, None)
            self._unrank(event.model_id)  # a paused model may end interrupted
            self._set(event.model_id, _ENDED[type(event)])
            if isinstance(event, ModelTrained):
                self._rank(event.model_id, event.final, math.inf if event.stopped_at is None
                           else event.stopped_at)
        elif isinstance(event, WorkerDied):
            self._workers.pop(event.worker, None)

    def _set(self, model_id: int, status: ModelStatus) -> None:
        old = self._status.get(model_id)
        if old is not None:
            self._counts[old] -= 1
        self._status[model_id] = status
        self._counts[status] += 1

    def _release(self, model_id: int) -> None:
        for worker, running in list(self._workers.items()):
            if running == model_id:
                del self._workers[worker]

    def _paused_value(self, event: ModelPaused) -> MetricValue | None:
        """The report a paused model ranks by: the last one heard, when it was of the step
        it paused at; else (it continued from a checkpoint and paused before reporting
        again) the engine's record of it."""
        last = self._last.get(event.model_id)
        if last is not None and last[0] == event.step:
            return last[1]
        handles = self._engine.handles() if self._engine is not None else ()
        model = next((h.model for h in handles if h.model_id == event.model_id), None)
        kept = model.metrics.intermediates[:event.step] if model is not None else []
        return kept[-1] if event.step and len(kept) == event.step else None

    def _rank(self, model_id: int, reported: MetricValue | None, reached: float) -> None:
        # Several metrics: "best" is the best under the run's (first) objective.
        objective = self._engine.objective if self._engine is not None else None
        value = score(reported, objective)
        if is_score(value):
            self._ranked[model_id] = (float(reached), value)
            self._best.clear()

    def _unrank(self, model_id: int) -> None:
        if self._ranked.pop(model_id, None) is not None:
            self._best.clear()

    def line(self) -> str:
        """``trials 12/50 done (1 failed) | 2 interrupted | 2 running | 3 queued |
        best 0.93 (max, #7) | 1m05s`` (interrupted only when there are some; the best
        says ``#7 at step 3`` when no model trained to its end outranks it)."""
        done = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        best, reached = self.best, self.best_fidelity
        at = f" at step {reached:.0f}" if reached is not None and reached != math.inf else ""
        shown = f"{best[0]:.6g} ({self.mode}, #{best[1]}{at})" if best is not None else "-"
        interrupted = f" | {self.interrupted} interrupted" if self.interrupted else ""
        paused = self._counts[ModelStatus.Paused]
        interrupted += f" | {paused} paused" if paused else ""
        elapsed = int(time.monotonic() - self.started)
        return (f"trials {done} done ({self.failed} failed){interrupted} | {self.running} "
                f"running | {self.queued} queued | best {shown} | "
                f"{elapsed // 60}m{elapsed % 60:02d}s")


async def show_progress(
    events: AsyncIterable[Event], *, engine: Engine | None = None,
    stream: TextIO | None = None, mode: str | None = None, total: int | None = None,
    interval: float = 0.1,
) -> Progress:
    """Draw a progress line on ``stream`` (stderr) at most every ``interval`` seconds until
    the events end or an engine_stopped event; returns the final counts. ``engine`` (the
    one ``events`` come from) adds the models a resumed run finished before, the total
    (its ``max_trials``) and the direction of "best" (its objective); ``mode`` and
    ``total`` override those. When cancelled, the line stays as last drawn."""
    out = sys.stderr if stream is None else stream
    progress = Progress(mode=mode, total=total, engine=engine)
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
