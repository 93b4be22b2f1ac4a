"""InlinePool: runs models in this process.

The only pool that accepts a :class:`~engine.space.RawFormatModelSpace`, and the one
strategy tests use (no processes, no torch). A blocking ``execute`` runs in a worker
thread; an async evaluator is awaited on the event loop.

A thread cannot be killed. When a trial running in a thread is cancelled, its next
``report_intermediate`` / ``report_final`` raises inside it, and the pool waits up to
``grace`` seconds for the thread to return; after that the thread is abandoned (it
finishes in the background and its reports are ignored).
"""

from __future__ import annotations

import os
import threading

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import TaskStatus

from engine._checkpoint import spot_for, use_checkpoints
from engine._context import use_reporter
from engine.errors import TrialFailed
from engine.space import ExecutableModelSpace
from engine.workers._base import PoolMonitor, Trial, TrialOutput

__all__ = ("InlinePool",)


class _TrialStopped(BaseException):
    """Raised inside a cancelled trial's thread at its next report. A BaseException, so
    the user's ``except Exception`` does not swallow it."""


class _ThreadReporter:
    """Reports of a trial running in a worker thread. An intermediate is passed to the
    trial at once (a blocking call into the event loop). A final is kept until the
    trial's next report or its end: a final only sets the trial's value, and most finals
    are a function's return value, so sending each at once would cost every trial a
    second round trip between its thread and the loop. Trial calls keep their order."""

    def __init__(self, trial: Trial, stop: threading.Event) -> None:
        self._trial, self._stop = trial, stop
        self._final: float | None = None  # reported, not passed on yet

    def check(self) -> None:
        if self._stop.is_set():
            raise _TrialStopped

    def intermediate(self, value: float) -> None:
        self.check()
        final, self._final = self._final, None
        anyio.from_thread.run_sync(self._deliver, final, value)

    def final(self, value: float) -> None:
        self.check()
        self._final = value

    def _deliver(self, final: float | None, value: float) -> None:
        # On the event loop.
        if final is not None:
            self._trial.final(final)
        self._trial.intermediate(value)

    def deliver_final(self) -> None:
        """On the event loop, once the thread returned: pass on the kept final."""
        final, self._final = self._final, None
        if final is not None:
            self._trial.final(final)


class InlinePool:
    """``workers`` models at a time, in this process."""

    name = "inline"
    prefetch = 0

    def __init__(self, workers: int = 1, *, grace: float = 5.0) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1 (models run at once), got "
                             f"{workers!r}")
        if (isinstance(grace, bool) or not isinstance(grace, int | float)
                or not grace >= 0 or grace == float("inf")):
            raise ValueError(f"grace must be a finite number of seconds >= 0, got {grace!r}")
        self._workers = workers
        self._free = [f"inline-{i}" for i in reversed(range(workers))]
        self._grace = grace
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def capacity(self) -> int:
        return self._workers

    def check(self, model: ExecutableModelSpace) -> None:
        if model.evaluator is None:
            raise ValueError("this model has no evaluator: pass one to from_model()")

    async def serve(self, monitor: PoolMonitor, *, task_status: TaskStatus[None]) -> None:
        self._limiter = anyio.CapacityLimiter(self._workers)
        for name in reversed(self._free):
            monitor.worker_started(name, os.getpid(), ())
        task_status.started()
        await anyio.sleep_forever()

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        worker = self._free.pop()
        try:
            trial.started(worker)
            if model.evaluator is not None and model.evaluator.is_async():
                await self._run_async(model, trial)
            else:
                await self._run_thread(model, trial)
        finally:
            self._free.append(worker)
        return TrialOutput()

    async def _run_async(self, model: ExecutableModelSpace, trial: Trial) -> None:
        try:
            with use_reporter(trial), use_checkpoints(spot_for(trial)):
                await model.execute()
        except Exception as exc:
            raise TrialFailed.from_exception(exc) from None

    async def _run_thread(self, model: ExecutableModelSpace, trial: Trial) -> None:
        stop, finished = threading.Event(), threading.Event()
        reporter = _ThreadReporter(trial, stop)
        spot = spot_for(trial, reporter.check)  # no saving once the trial was stopped

        def work() -> BaseException | None:
            try:
                with use_reporter(reporter), use_checkpoints(spot):
                    model.execute()
            except _TrialStopped:
                return None
            except Exception as exc:
                return exc
            finally:
                finished.set()
            return None

        try:
            error = await anyio.to_thread.run_sync(
                work, abandon_on_cancel=True, limiter=self._limiter)
        except anyio.get_cancelled_exc_class():
            stop.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait, self._grace)
            raise
        reporter.deliver_final()
        if error is not None:
            raise TrialFailed.from_exception(error)
