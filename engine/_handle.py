"""Handles and the callbacks pools report through: the engine's per-model objects."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from engine._checkpoint import Pruner
from engine._objective import MetricValue
from engine.errors import TrialError
from engine.events import InterruptReason, MetricReported, WorkerDied, WorkerStarted
from engine.space import ExecutableModelSpace, ModelStatus
from engine.workers._base import TrialOutput

if TYPE_CHECKING:
    from engine._engine._base import EngineBase

__all__ = ("ModelHandle", "Monitor", "Signal", "Trial")


class ModelHandle:
    """One submitted model. ``await handle`` gives the model once it is completed.

    ``output`` holds the last attempt's captured stdout and stderr (empty where the
    pool captures nothing), bounded: only the last 64 KiB (65,536 characters) of each
    stream is kept, after a line saying how much was dropped. ``error`` says why the
    model failed."""

    def __init__(self, engine: EngineBase, model: ExecutableModelSpace, model_id: int) -> None:
        self._engine = engine
        self.model = model
        self.model_id = model_id
        self.attempts = 0
        self.output: TrialOutput | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        # Completed and handed out. The Event exists only while someone waits, and is
        # dropped once set: a finished model's handle holds no loop object (about 900
        # bytes each, which 50,000 finished handles would keep for nothing).
        self._resolved = False
        self._done: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._stop_reason: InterruptReason | None = None
        self._pausing = False  # pause() asked while it ran: its runner pauses it
        self._queued = False  # an entry of it waits in the engine's queue
        self._failures = 0  # failed attempts (max_retries counts these, not pauses)
        # Its checkpoint folder may exist: an attempt of it began, or it comes from the
        # run file. False only for a model submitted in this run that never ran (its id
        # is new), so its first attempt and a model that never ran skip the disk.
        self._may_have_checkpoints = True

    @property
    def status(self) -> ModelStatus:
        return self.model.status

    @property
    def error(self) -> TrialError | None:
        """Why the model failed (type, message, traceback); None unless it failed."""
        return self.model.error

    @property
    def done(self) -> bool:
        """Completed and handed out (with a journal: once its final event is committed)."""
        return self._resolved

    def _set_done(self) -> None:
        """The engine hands the model out: wake every waiter (call once)."""
        self._resolved = True
        if self._done is not None:
            self._done.set()
            self._done = None

    @property
    def _ended(self) -> bool:
        return self.model.status.completed()

    @property
    def _runnable(self) -> bool:
        """Its runner should (go on) train it: not completed, not paused."""
        return not self.model.status.completed() and self.model.status is not ModelStatus.Paused

    async def wait(self) -> ExecutableModelSpace:
        """The model, once completed. A paused model is not completed: the wait goes on
        through its pause until it is resumed and ends, or until its engine stops with
        it still paused (then it returns the model, status ``paused``: a later run of
        the same run file can resume it). Cancelling the wait leaves the model running.
        Always a checkpoint."""
        if self._resolved:
            await anyio.lowlevel.checkpoint()
            return self.model
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()
        return self.model

    def __await__(self) -> Generator[Any, None, ExecutableModelSpace]:
        return self.wait().__await__()

    def cancel(self) -> None:
        """Interrupt the model (reason ``cancelled``): now if queued or paused, or by
        stopping its trial if running. No effect once it is completed."""
        self._engine._interrupt(self, InterruptReason.cancelled)

    def stop(self) -> None:
        """Stop the model early: a strategy's decision (ASHA, median stopping), not a
        cancel. A running model that reported intermediates ends ``trained`` with the
        last of them as its final metric and ``metrics.stopped_at`` the number it
        reported (its fidelity; what it reports after this call is dropped); one that
        reported nothing, or is still queued, ends ``interrupted`` (reason ``stopped``).
        A paused model ends now the same way, at the step it reached when paused.
        Not async: the decision is taken now, the trial ends at its next checkpoint. No
        effect once the model is completed or another stop or cancel came first."""
        self._engine._interrupt(self, InterruptReason.stopped)

    def pause(self) -> None:
        """Pause the model: a strategy's decision (ASHA's promotion variant). A running
        model's trial ends now (what it reports after this call is dropped) and frees
        its worker; a queued one is held back. Its status becomes ``paused`` (event
        ``paused``, with the step it reached and the step of its last checkpoint, which
        the run file records); it keeps its intermediates and its checkpoint, and no
        longer counts in ``engine.in_flight``. :meth:`resume` queues it again; ``stop()``
        ends it at the fidelity it reached, ``cancel()`` interrupts it. Not async: the
        decision is taken now, the trial ends at its next checkpoint. No effect on a
        model that is completed, paused, or being stopped or cancelled."""
        self._engine._pause(self)

    async def resume(self) -> None:
        """Queue a paused model again, under the same model id and handle: a worker
        continues it from its last checkpoint (its training code's ``load_checkpoint()``
        returns that state; its intermediates continue after the checkpoint's step).
        Waits while the engine's queue is full, like ``submit``.

        Atomic: either the model is queued again (status ``frozen``, event ``resumed``,
        counted in ``engine.in_flight``) or nothing changes. A model that is not paused
        (queued, running, or resumed by another call meanwhile) is left as it is. Raises
        ValueError for a completed model, EngineClosed when the engine is not running,
        BudgetExhausted once it stopped accepting work (wall-time budget). Cancelled
        while it waits: nothing was queued. Always a checkpoint."""
        await self._engine._resume(self)

    def __repr__(self) -> str:
        return f"<ModelHandle #{self.model_id} {self.status.value}>"


class Trial:
    """The engine's side of one attempt: what the pool reports through."""

    def __init__(self, engine: EngineBase, handle: ModelHandle) -> None:
        self._engine, self._handle = engine, handle
        self.model_id, self.attempt = handle.model_id, handle.attempts
        #: The step this attempt continues from (its checkpoint's; 0: from the start).
        #: A pool that runs no training code (a simulation) starts reporting after it.
        self.resume_step = 0
        #: The folder the model's checkpoints live in (see engine._checkpoint); a pool
        #: hands it to the trial it runs. None when the engine keeps no checkpoints.
        self.checkpoint_dir: str | None = None
        self.pruner: Pruner | None = None  # prunes checkpoint_dir as reports arrive
        self.final_value: MetricValue | None = None
        self.open = True
        self._started = False

    @property
    def ends_cooperatively(self) -> bool:
        """Its model's strategy stopped (``handle.stop()``) or paused it while this
        attempt ran, and no cancel, timeout or shutdown came first: the pool may end
        the attempt at its training code's next report rather than kill its worker
        (the engine drops what it reports after the decision either way)."""
        handle = self._handle
        return handle._stop_reason is InterruptReason.stopped or (
            handle._pausing and handle._stop_reason is None)

    def loading(self) -> None:
        if self.open and not self._started:
            self._engine._loading(self._handle)

    def started(self, worker: str, gpus: tuple[int, ...] = (), setup: float = 0.0) -> None:
        if self.open and not self._started:
            self._started = True
            self._engine._training(self._handle, worker, tuple(gpus), setup,
                                   self.resume_step)

    def intermediate(self, value: MetricValue) -> None:
        # Nothing after a stop or cancel: a stopped model keeps what it had reported
        # when its strategy decided.
        if self.open and self._handle._stop_reason is None and not self._handle._pausing:
            metrics = self._handle.model.metrics
            metrics.intermediates.append(value)
            engine, step = self._engine, len(metrics.intermediates)
            seq = engine._emit(MetricReported(**engine._stamp(), model_id=self.model_id,
                                              value=value, step=step))
            if self.pruner is not None:  # the engine prunes: see engine._checkpoint
                self.pruner.reported(step, seq)
            engine._heard(self._handle, step, value)

    def final(self, value: MetricValue) -> None:
        if self.open:
            self.final_value = value


class Monitor:
    def __init__(self, engine: EngineBase) -> None:
        self._engine = engine

    def worker_started(self, worker: str, pid: int | None, gpus: tuple[int, ...]) -> None:
        engine = self._engine
        engine._emit(WorkerStarted(**engine._stamp(), worker=worker, pid=pid, gpus=tuple(gpus)))

    def worker_died(self, worker: str, pid: int | None, exitcode: int | None,
                    signal: int | None, reason: str) -> None:
        engine = self._engine
        engine._emit(WorkerDied(**engine._stamp(), worker=worker, pid=pid, exitcode=exitcode,
                                signal=signal, reason=reason))


class Signal:
    """Wakes every waiter at the next ``notify``."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()
