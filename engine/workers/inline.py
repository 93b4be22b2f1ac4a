"""InlinePool: runs models in this process.

The only pool that accepts a :class:`~engine.space.RawFormatModelSpace`, and the one
strategy tests use (no processes, no torch). A blocking ``execute`` runs in a worker
thread; an async evaluator is awaited on the event loop.

Each worker is one thread for the pool's life (an anyio worker thread, so a trial may
call ``anyio.from_thread``), started by :meth:`InlinePool.serve`. A trial is handed to
it through a queue, and its end comes back as one byte on a socket the loop waits on:
no thread start, limiter or cross-thread call per trial, which would cost a no-op trial
more than everything else the engine does for it. Each trial runs in a fresh copy of
the thread's context, so what one sets in a context variable the next does not see.

A thread cannot be killed. When a trial running in a thread is cancelled, its next
``report_intermediate`` / ``report_final`` raises inside it, and the pool waits up to
``grace`` seconds for the thread to return; after that the thread is abandoned (it
finishes in the background, its reports are ignored, and a new thread takes its
worker's place).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import socket
import threading
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.abc import TaskGroup, TaskStatus

from engine._checkpoint import spot_for, use_checkpoints
from engine._checks import check_count, check_positive
from engine._context import use_reporter
from engine._objective import MetricValue
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
        self._final: MetricValue | None = None  # reported, not passed on yet

    def check(self) -> None:
        if self._stop.is_set():
            raise _TrialStopped

    def intermediate(self, value: MetricValue) -> None:
        self.check()
        final, self._final = self._final, None
        anyio.from_thread.run_sync(self._deliver, final, value)

    def final(self, value: MetricValue) -> None:
        self.check()
        self._final = value

    def _deliver(self, final: MetricValue | None, value: MetricValue) -> None:
        # On the event loop.
        if final is not None:
            self._trial.final(final)
        self._trial.intermediate(value)

    def deliver_final(self) -> None:
        """On the event loop, once the thread returned: pass on the kept final."""
        final, self._final = self._final, None
        if final is not None:
            self._trial.final(final)


class _Slot:
    """One worker's thread: it runs the jobs put in ``jobs`` one at a time, until a
    None; each job ends by sending one byte on the thread's end of a socket pair, which
    :meth:`ended` waits for on the loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._ours, self._theirs = socket.socketpair()
        self._ours.setblocking(False)
        self.scope = anyio.CancelScope()  # its host task's: cancelled to abandon it
        self.waiting = False  # a run() waits on our end of the socket
        self._guard, self._claimed = threading.Lock(), False
        self.closing = False  # close our end once that run() left

    def work(self) -> None:
        """The thread's life (in an anyio worker thread)."""
        if not self._claim():  # its host left before the thread began
            return
        try:
            while (job := self.jobs.get()) is not None:
                contextvars.copy_context().run(job)
        finally:
            self._theirs.close()

    def host_left(self) -> None:
        """On the loop, when the host task leaves: if the thread never began (the host
        was cancelled first), nothing else would close the thread's end."""
        if self._claim():
            self._theirs.close()

    def _claim(self) -> bool:
        """True for the first caller only: the thread, or its host that left first."""
        with self._guard:
            claimed, self._claimed = self._claimed, True
        return not claimed

    def signal(self) -> None:
        """In the thread, at the end of each job: wake the loop."""
        with contextlib.suppress(OSError):  # abandoned: nobody listens any more
            self._theirs.send(b"\0")

    async def ended(self) -> None:
        """Return once the job given last sent its byte (at once, without a checkpoint,
        if it has). Cancelled: the byte, if it comes, stays unread."""
        while True:
            try:
                self._ours.recv(1)
            except BlockingIOError:
                await anyio.wait_readable(self._ours)
                continue
            return

    def drain(self) -> None:
        """Read the byte of a job that ended after its run() was cancelled."""
        with contextlib.suppress(OSError):
            self._ours.recv(1)

    def close(self) -> None:
        """No more jobs: the thread ends after the one it runs, if any."""
        self.jobs.put(None)
        if self.waiting:
            self.closing = True
        else:
            self._ours.close()


class InlinePool:
    """``workers`` models at a time, in this process."""

    name = "inline"
    prefetch = 0

    def __init__(self, workers: int = 1, *, grace: float = 5.0) -> None:
        check_count("workers", workers, meaning="models run at once")
        check_positive("grace", grace, zero=True, meaning="seconds")
        self._workers = workers
        self._free = [f"inline-{i}" for i in reversed(range(workers))]
        self._grace = grace
        self._slots: dict[str, _Slot] = {}  # worker name -> its thread, while serving
        self._tg: TaskGroup | None = None

    @property
    def capacity(self) -> int:
        return self._workers

    def check(self, model: ExecutableModelSpace) -> None:
        if model.evaluator is None:
            raise ValueError("this model has no evaluator: pass one to from_model()")

    async def serve(self, monitor: PoolMonitor, *, task_status: TaskStatus[None]) -> None:
        if self._tg is not None:
            raise RuntimeError("this InlinePool is already serving: give each Engine its own")
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                for name in reversed(self._free):
                    self._start_slot(name)
                    monitor.worker_started(name, os.getpid(), ())
                task_status.started()
                await anyio.sleep_forever()
            finally:
                for slot in self._slots.values():
                    slot.close()
                self._slots.clear()
                tg.cancel_scope.cancel()
                self._tg = None

    def _start_slot(self, name: str) -> _Slot:
        assert self._tg is not None
        slot = self._slots[name] = _Slot(name)
        self._tg.start_soon(self._host, slot)
        return slot

    @staticmethod
    async def _host(slot: _Slot) -> None:
        """Keep ``slot``'s thread; cancelled (``slot.scope``, or the pool's end), it
        leaves the thread to end by itself. A limiter of its own: an abandoned thread
        may hold its token until it ends (trio), which must not delay its successor."""
        try:
            with slot.scope:
                await anyio.to_thread.run_sync(slot.work, abandon_on_cancel=True,
                                               limiter=anyio.CapacityLimiter(1))
        finally:
            slot.host_left()

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        worker = self._free.pop()
        try:
            trial.started(worker)
            if model.evaluator is not None and model.evaluator.is_async():
                await self._run_async(model, trial)
            else:
                await self._run_thread(model, trial, worker)
        finally:
            self._free.append(worker)
        return TrialOutput()

    async def _run_async(self, model: ExecutableModelSpace, trial: Trial) -> None:
        try:
            with use_reporter(trial), use_checkpoints(spot_for(trial)):
                await model.execute()
        except Exception as exc:
            raise TrialFailed.from_exception(exc) from None

    async def _run_thread(self, model: ExecutableModelSpace, trial: Trial,
                          worker: str) -> None:
        slot = self._slots.get(worker)
        if slot is None:
            raise RuntimeError("InlinePool.run() needs a serving pool: start it with "
                               "task_group.start(pool.serve, monitor), as an Engine does")
        stop, finished = threading.Event(), threading.Event()
        reporter = _ThreadReporter(trial, stop)
        spot = spot_for(trial, reporter.check)  # no saving once the trial was stopped
        error: list[BaseException] = []

        def job() -> None:
            try:
                with use_reporter(reporter), use_checkpoints(spot):
                    model.execute()
            except _TrialStopped:
                pass
            except BaseException as exc:  # raised on the loop, below
                error.append(exc)
            finally:
                slot.signal()  # before `finished`: a cancelled run() drains it
                finished.set()

        slot.waiting = True
        try:
            slot.jobs.put(job)
            await anyio.lowlevel.checkpoint()  # the thread runs it meanwhile, often wholly
            await slot.ended()
            # The end may have been read with no checkpoint after a cancellation or a
            # deadline came (trio can wake a wait on a socket that became readable as
            # its deadline passed): such a run ends cancelled, as with any other pool.
            await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            stop.set()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait, self._grace)
            self._left(slot, finished.is_set())
            raise
        finally:
            slot.waiting = False
            if slot.closing:
                slot.close()
        reporter.deliver_final()
        if error:
            if not isinstance(error[0], Exception):  # KeyboardInterrupt, SystemExit
                raise error[0]
            raise TrialFailed.from_exception(error[0])

    def _left(self, slot: _Slot, ended: bool) -> None:
        """A cancelled trial's thread returned (its byte is read) or is abandoned: a
        new thread takes its worker's place, the old one ends after the trial."""
        if ended:
            slot.drain()
        elif self._slots.get(slot.name) is slot:
            slot.scope.cancel()
            slot.close()
            self._start_slot(slot.name)
