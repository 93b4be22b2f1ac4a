"""The engine: a bounded, ordered queue of frozen models run by a worker pool.

``async with Engine(pool) as engine`` starts the pool and one runner task per model the
pool takes at once (``pool.capacity + pool.prefetch``)
in one task group. ``submit`` queues a frozen model and returns a :class:`ModelHandle`.
Every status change is one event in the engine's :class:`~engine._eventlog.EventLog`.

Leaving the block normally waits for every submitted model; leaving it by an error or a
cancellation interrupts what is queued or running (reason ``shutdown``). Either way no
task or worker is left behind and every submitted model ends ``completed()``.

All engine state lives on the event-loop thread; pools call back on it too.
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine._eventlog import EventLog, Subscription
from engine._handle import ModelHandle, Monitor, Signal, Trial
from engine._journal import (
    DUPLICATE_PREFIX,
    Journal,
    RestoredModel,
    blob_of,
    is_duplicate_reason,
    rebuild,
)
from engine.errors import BudgetExhausted, EngineClosed, TrialFailed, WorkerLost
from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    InterruptReason,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelQueued,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
)
from engine.space import ExecutableModelSpace, Metrics, ModelStatus
from engine.store import StoredModel
from engine.workers._base import TrialOutput, WorkerPool
from engine.workers.inline import InlinePool

__all__ = ("Engine", "ModelHandle")

_sample_key = msgspec.json.Encoder(order="sorted").encode


class Engine:
    """Runs frozen models on ``pool`` (default ``InlinePool(1)``).

    Budgets: ``max_trials`` (accepted models, duplicates excluded), ``max_duration``
    (seconds of wall time from start, then everything still queued or running is
    interrupted), ``trial_timeout`` (seconds per attempt, then the model is interrupted),
    ``max_retries`` (a failed attempt is retried this many times). ``deduplicate`` marks a
    model whose sample was submitted before ``invalid`` instead of training it.
    ``queue_size`` bounds the models waiting for a worker (default: the pool's capacity
    plus its prefetch);
    ``event_buffer`` is how many recent events stay in memory for subscribers.

    ``journal`` keeps the run in a SQLite file (see engine.store): a path, or True for a
    new file under ``./runs``. An existing file is resumed: its finished models are
    loaded (``handles()``), models it caught queued or training are trained again.
    """

    def __init__(
        self,
        pool: WorkerPool | None = None,
        *,
        max_trials: int | None = None,
        max_duration: float | None = None,
        trial_timeout: float | None = None,
        max_retries: int = 0,
        deduplicate: bool = False,
        queue_size: int | None = None,
        event_buffer: int = 65536,
        journal: str | Path | bool | None = None,
    ) -> None:
        _check_budget("max_trials", max_trials, integer=True)
        _check_budget("max_duration", max_duration)
        _check_budget("trial_timeout", trial_timeout)
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.pool: WorkerPool = pool if pool is not None else InlinePool(1)
        self.max_trials, self.max_duration = max_trials, max_duration
        self.trial_timeout, self.max_retries = trial_timeout, max_retries
        self.deduplicate = deduplicate
        self._slots = self.pool.capacity + self.pool.prefetch  # models a pool takes at once
        self._queue_size = queue_size if queue_size is not None else self._slots
        if self._queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        self._log = EventLog(event_buffer)
        self._handles: dict[int, ModelHandle] = {}
        self._by_object: dict[int, ModelHandle] = {}
        self._samples: dict[bytes, int] = {}
        self._finished: deque[ModelHandle] = deque()
        self._changed = Signal()
        self._next_id = 1
        self._trials = 0
        self._in_flight = 0
        self._running = False
        self._accepting = False
        self._journal_where = journal
        self._journal: Journal | None = None
        self._outer: TaskGroup | None = None
        self._requeued: deque[ModelHandle] = deque()
        self._unresumable: list[tuple[ModelHandle, str]] = []
        self._tg: TaskGroup | None = None
        self._send: MemoryObjectSendStream[ModelHandle] | None = None
        self._receive: MemoryObjectReceiveStream[ModelHandle] | None = None

    # -- life cycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        if self._running or self._log.closed:
            raise RuntimeError("an Engine can be entered once: make a new one")
        self._send, self._receive = anyio.create_memory_object_stream[ModelHandle](
            self._queue_size)
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        try:
            if self._journal_where is not None and self._journal_where is not False:
                await self._open_journal(self._journal_where)
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            try:
                await self._tg.start(self.pool.serve, Monitor(self))
            except BaseException:
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
                raise
        except BaseException:
            await self._close_outer()
            raise
        for _ in range(self._slots):
            self._tg.start_soon(self._runner)
        if self.max_duration is not None:
            self._tg.start_soon(self._wall_clock, self.max_duration)
        self._running = self._accepting = True
        journal = str(self._journal.path) if self._journal is not None else None
        self._emit(EngineStarted, pool=self.pool.name, capacity=self.pool.capacity,
                   resumed=self._journal is not None and self._journal.store.resume_state.resumed,
                   journal=journal)
        self._requeue()
        return self

    @property
    def journal_path(self) -> Path | None:
        """The run's SQLite file, once the engine started with a journal."""
        return self._journal.path if self._journal is not None else None

    async def _open_journal(self, where: str | Path | bool) -> None:
        assert self._outer is not None
        self._journal = await Journal.open(where, self._resolve)
        store = self._journal.store
        await self._outer.start(self._journal.serve)
        self._outer.start_soon(self._journal.resolver)
        state = store.resume_state
        self._log.rebase(state.next_seq)
        self._log.backfill = store.read_events
        self._next_id = state.next_model_id
        for stored in state.models:
            self._restore(stored)

    def _restore(self, stored: StoredModel) -> None:
        if not is_duplicate_reason(stored.reason):
            self._trials += 1
            if self.deduplicate:
                self._samples.setdefault(_sample_key(stored.sample), stored.id)
        if not stored.needs_training:
            handle = ModelHandle(self, RestoredModel(stored), stored.id)
            handle.attempts = stored.attempts
            handle._done.set()
            self._handles[stored.id] = handle
            return
        model = rebuild(stored)
        if isinstance(model, str):  # cannot be trained again: say why, once
            handle = ModelHandle(self, RestoredModel(stored), stored.id)
            self._handles[stored.id] = handle
            self._in_flight += 1
            self._unresumable.append((handle, model))
            return
        handle = ModelHandle(self, model, stored.id)
        handle.attempts = stored.attempts
        self._handles[stored.id] = handle
        self._by_object[id(model)] = handle
        self._in_flight += 1
        self._requeued.append(handle)

    def _requeue(self) -> None:
        """Events for the models a resumed run trains again (or cannot)."""
        for handle, why in self._unresumable:
            handle.model.status = ModelStatus.Training
            self._failed(handle, "NotResumable", f"model {handle.model_id} cannot be "
                         f"trained again: {why}", "", retry=False)
        for handle in self._requeued:
            self._emit(ModelQueued, model_id=handle.model_id, sample=handle.model.sample or {})

    async def _close_outer(self) -> None:
        assert self._outer is not None
        for stream in (self._send, self._receive):
            if stream is not None:
                stream.close()
        self._log.close()
        try:
            if self._journal is not None:
                await self._journal.close()
        finally:
            self._outer.cancel_scope.cancel()
            await self._outer.__aexit__(None, None, None)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None  # set by __aenter__
        assert self._send is not None
        reason = "finished"
        try:
            if exc_type is None:
                await self._drain()
            else:
                reason = "cancelled" if _is_cancel(exc) else "error"
        except BaseException as error:
            reason = "cancelled" if _is_cancel(error) else "error"
            raise
        finally:
            self._accepting = False
            self._shutdown(InterruptReason.shutdown)
            self._send.close()
            self._tg.cancel_scope.cancel()
            try:
                # The block's own exception propagates from here unchanged; only the
                # engine's tasks' errors come out of the task groups.
                await self._tg.__aexit__(None, None, None)
            finally:
                self._running = False
                self._emit(EngineStopped, reason=reason)
                await self._close_outer()
                self._changed.notify()
        return None

    async def _drain(self) -> None:
        while self.in_flight:
            await self._changed.wait()

    def _shutdown(self, reason: InterruptReason) -> None:
        for handle in list(self._handles.values()):
            self._interrupt(handle, reason)

    async def _wall_clock(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self._accepting = False
        self._shutdown(InterruptReason.shutdown)
        self._changed.notify()

    # -- public API -----------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Every event from now on, in order (see engine._eventlog for the slow-reader
        policy). Works before the engine starts, to see its first event."""
        return self._log.subscribe()

    @property
    def in_flight(self) -> int:
        """Models submitted and not completed yet."""
        return self._in_flight

    @property
    def budget_left(self) -> int | None:
        return None if self.max_trials is None else self.max_trials - self._trials

    @property
    def exhausted(self) -> bool:
        """True once no more models will be accepted."""
        return (self._running and not self._accepting) or self.budget_left == 0

    def handles(self) -> list[ModelHandle]:
        return list(self._handles.values())

    def best(self, mode: str = "max") -> ExecutableModelSpace | None:
        """The trained model with the highest (``max``) or lowest (``min``) metric."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        trained = [h.model for h in self._handles.values()
                   if h.status is ModelStatus.Trained and h.model.metric is not None]
        if not trained:
            return None
        pick = max if mode == "max" else min
        return pick(trained, key=lambda m: m.metric)  # type: ignore[arg-type,return-value]

    async def submit(self, model: ExecutableModelSpace) -> ModelHandle:
        """Queue a frozen model; waits while the queue is full. Raises EngineClosed,
        BudgetExhausted, TypeError or ValueError (bad model) without queueing anything.
        If cancelled while waiting, nothing was queued."""
        self._check_submit(model)
        handle = ModelHandle(self, model, 0)
        self._by_object[id(model)] = handle
        self._trials += 1
        try:
            duplicate = self._duplicate_of(model)
            if duplicate is None:
                assert self._send is not None
                await self._send.send(handle)
        except anyio.ClosedResourceError:
            self._trials -= 1
            del self._by_object[id(model)]
            raise EngineClosed("the engine stopped while this model waited for the "
                               "queue") from None
        except BaseException:
            self._trials -= 1
            del self._by_object[id(model)]
            raise
        self._accept(handle)
        if not self._accepting:  # the engine began to stop while this waited for space
            self._interrupt(handle, InterruptReason.shutdown)
        elif duplicate is not None:
            self._trials -= 1
            self._finish(handle, ModelStatus.Invalid, ModelInvalid,
                         message=f"{DUPLICATE_PREFIX} {duplicate}: the same sample was "
                         "submitted before", paths=())
        return handle

    async def wait_capacity(self) -> None:
        """Return once fewer models are in flight than the pool takes at once (its
        workers plus what it prefetches: a worker would soon be idle). Returns at once
        when the engine stopped accepting."""
        while self._accepting and self.in_flight >= self._slots:
            await self._changed.wait()

    async def next_finished(self) -> ModelHandle | None:
        """The next completed model in completion order; None when nothing is in flight
        and every completed model was already returned."""
        while not self._finished:
            if not self.in_flight:
                return None
            await self._changed.wait()
        return self._finished.popleft()

    # -- submission -----------------------------------------------------------------------

    def _check_submit(self, model: ExecutableModelSpace) -> None:
        if not self._running:
            raise EngineClosed("the engine is not running: submit inside "
                               "`async with Engine(...) as engine:`")
        if not isinstance(model, ExecutableModelSpace):
            raise TypeError(f"submit needs a frozen ExecutableModelSpace, got "
                            f"{type(model).__name__}")
        known = self._by_object.get(id(model))
        if known is not None and known.model is model:
            raise ValueError(f"this model object was already submitted as model "
                             f"{known.model_id}: freeze the space again for a new one")
        if model.status is not ModelStatus.Frozen:
            raise ValueError(f"submit needs a frozen model, got status {model.status.value}:"
                             " call space.freeze(sample) and submit the result")
        if not self._accepting or self.budget_left == 0:
            raise BudgetExhausted(self._exhausted_reason())
        self.pool.check(model)

    def _exhausted_reason(self) -> str:
        if self.budget_left == 0:
            return f"max_trials={self.max_trials} models were already accepted"
        return "the engine is stopping (wall-time budget used up or shutting down)"

    def _duplicate_of(self, model: ExecutableModelSpace) -> int | None:
        if not self.deduplicate or model.sample is None:
            return None
        return self._samples.get(_sample_key(model.sample))

    def _accept(self, handle: ModelHandle) -> None:
        handle.model_id = self._next_id
        self._next_id += 1
        self._handles[handle.model_id] = handle
        self._in_flight += 1
        sample = handle.model.sample or {}
        if self.deduplicate:
            self._samples.setdefault(_sample_key(sample), handle.model_id)
        if self._journal is not None:
            self._journal.store.record_model(handle.model_id, blob_of(handle.model))
        self._emit(ModelQueued, model_id=handle.model_id, sample=sample)

    # -- running ------------------------------------------------------------------------

    async def _runner(self) -> None:
        assert self._receive is not None
        while self._requeued:
            handle = self._requeued.popleft()
            if not handle._ended:
                await self._run(handle)
        async for handle in self._receive:
            if not handle._ended:
                await self._run(handle)

    async def _run(self, handle: ModelHandle) -> None:
        while not handle._ended:
            handle.attempts += 1
            handle.model.metrics = Metrics()
            trial = Trial(self, handle)
            stopped = True
            try:
                with anyio.CancelScope() as scope:
                    handle._scope = scope  # its timeout starts when a worker starts it
                    await self._attempt(handle, trial)
                    stopped = False
            finally:
                trial.open = False
                handle._scope = None
                if stopped and not handle._ended:
                    # Cancelled: by its handle or the engine (reason set), by its timeout,
                    # or by a cancellation from outside the engine.
                    reason = handle._stop_reason or (
                        InterruptReason.timeout if scope.cancel_called
                        else InterruptReason.shutdown)
                    self._finish(handle, ModelStatus.Interrupted, ModelInterrupted,
                                 reason=reason)

    async def _attempt(self, handle: ModelHandle, trial: Trial) -> None:
        try:
            handle.output = await self.pool.run(handle.model, trial)
        except TrialFailed as exc:
            trial.open = False
            handle.output = TrialOutput(stdout=exc.stdout, stderr=exc.stderr)
            if exc.invalid:
                self._finish(handle, ModelStatus.Invalid, ModelInvalid,
                             message=exc.message, paths=exc.paths)
            else:
                self._failed(handle, exc.error_type, exc.message, exc.traceback)
            return
        except WorkerLost as exc:
            trial.open = False
            handle.output = TrialOutput(stdout=exc.stdout, stderr=exc.stderr)
            self._failed(handle, "WorkerLost", str(exc), "")
            return
        trial.open = False
        if trial.final_value is None:
            self._failed(handle, "NoFinalMetric", "the evaluator neither returned a number "
                         "nor called report_final()", "", retry=False)
            return
        handle.model.metrics.final = trial.final_value
        duration = time.time() - (handle.started_at or time.time())
        self._finish(handle, ModelStatus.Trained, ModelTrained, final=trial.final_value,
                     duration=duration)

    def _failed(self, handle: ModelHandle, error_type: str, message: str, traceback: str,
                *, retry: bool = True) -> None:
        if retry and handle.attempts <= self.max_retries and self._accepting:
            handle.model.status = ModelStatus.Retrying
            self._emit(ModelRetrying, model_id=handle.model_id, attempt=handle.attempts + 1,
                       reason=f"{error_type}: {message}")
            return
        self._finish(handle, ModelStatus.Failed, ModelFailed, error_type=error_type,
                     message=message, traceback=traceback, attempt=handle.attempts)

    def _training(self, handle: ModelHandle, worker: str, gpus: tuple[int, ...],
                  setup: float = 0.0) -> None:
        if self.trial_timeout is not None and handle._scope is not None:
            handle._scope.deadline = anyio.current_time() + self.trial_timeout
        handle.model.status = ModelStatus.Training
        handle.started_at = time.time()
        self._emit(TrainingStarted, model_id=handle.model_id, worker=worker,
                   attempt=handle.attempts, gpus=gpus, setup=setup)

    def _interrupt(self, handle: ModelHandle, reason: InterruptReason) -> None:
        if handle._ended:
            return
        if handle._scope is not None:  # running: its runner finishes it
            handle._stop_reason = handle._stop_reason or reason  # the first reason wins
            handle._scope.cancel()
            return
        self._finish(handle, ModelStatus.Interrupted, ModelInterrupted, reason=reason)

    def _finish(self, handle: ModelHandle, status: ModelStatus, event: type[Any],
                **fields: Any) -> None:
        handle.model.status = status
        handle.ended_at = time.time()
        seq = self._emit(event, model_id=handle.model_id, **fields)
        if self._journal is not None:
            self._journal.finished(handle, seq)
        else:
            self._resolve(handle)

    def _resolve(self, handle: ModelHandle) -> None:
        """``handle``'s result is final (and durable, with a journal): hand it out."""
        self._in_flight -= 1
        self._finished.append(handle)
        handle._done.set()
        self._changed.notify()

    def _emit(self, event: type[Any], **fields: Any) -> int:
        item: Event = event(seq=self._log.next_seq, time=time.time(), **fields)
        self._log.append(item)
        if self._journal is not None:
            self._journal.store.append(item)
        return item.seq


def _check_budget(name: str, value: float | None, *, integer: bool = False) -> None:
    if value is None:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 or (
            not integer and not math.isfinite(value)):
        raise ValueError(f"{name} must be a positive {'int' if integer else 'number'} or "
                         f"None, got {value!r}")


def _is_cancel(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancel(e) for e in exc.exceptions)
    return False
