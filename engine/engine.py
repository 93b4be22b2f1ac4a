"""The engine: a bounded, ordered queue of frozen models run by a worker pool.

``async with Engine(pool) as engine`` starts the pool and one runner task per model the
pool takes at once (``pool.capacity + pool.prefetch``)
in one task group. ``submit`` queues a frozen model and returns a :class:`ModelHandle`.
Every status change is one event in the engine's :class:`~engine._eventlog.EventLog`.

Leaving the block normally waits for every submitted model; leaving it by an error or a
cancellation interrupts what is queued or running (reason ``shutdown``). Either way no
task or worker is left behind, every submitted model ends ``completed()`` (or stays
``paused``: see ``ModelHandle.pause``) and every subscription ends with
``engine_stopped``. The cleanup is a ladder whose rungs each run
whatever the one before raised; the block's own exception comes out unchanged, and
when the journal's writer failed (a full disk, say) the caller gets that error itself.

A failed model carries its :class:`~engine.errors.TrialError` on ``handle.error`` and
``model.error``, and is logged (one warning line) on ``logging.getLogger("engine")``.
An Engine refuses to start inside a ProcessPool worker (a script without a main guard).

All engine state lives on the event-loop thread; pools call back on it too.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TypeAlias

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from engine._checkpoint import CheckpointRoot, Pruner
from engine._checks import check_bool, check_count, check_positive, refuse_in_worker
from engine._engine._unwrap import is_cancel, unwrapped
from engine._eventlog import EventLog, Subscription
from engine._handle import ModelHandle, Monitor, Signal, Trial
from engine._journal import (
    DUPLICATE_PREFIX,
    Journal,
    RestoredModel,
    blob_of,
    check_storable,
    is_duplicate_reason,
    rebuild,
    restore_finished,
)
from engine._objective import (
    MetricValue,
    Objective,
    best_ranked,
    check_mode,
    check_objectives,
    declare,
    declare_objectives,
    missing_objective,
    objectives_from_meta,
    objectives_meta,
)
from engine._objective import sample_key as _sample_key
from engine._queue import ModelQueue
from engine.errors import BudgetExhausted, EngineClosed, TrialError, TrialFailed, WorkerLost
from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    InterruptReason,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelPaused,
    ModelQueued,
    ModelResumed,
    ModelRetrying,
    ModelTrained,
    Stamp,
    TrainingStarted,
)
from engine.profile import (
    VIOLATION_PREFIX,
    ConstraintViolated,
    Profile,
    Profiler,
    merged_name,
    profiled,
)
from engine.space import ExecutableModelSpace, Metrics, ModelStatus
from engine.store import StoredModel
from engine.workers._base import TrialOutput, WorkerPool
from engine.workers.inline import InlinePool

__all__ = ("Engine", "ModelHandle")

_FinalEvent: TypeAlias = ModelTrained | ModelFailed | ModelInterrupted | ModelInvalid
#: ``listener(handle, step, value)``: see :meth:`Engine.listen`.
IntermediateListener: TypeAlias = Callable[["ModelHandle", int, MetricValue], None]

#: Characters of each output stream (stdout, stderr) a handle keeps: the tail.
OUTPUT_TAIL = 64 * 1024

# The package's logger: one warning line per failed model. No handler is installed:
# the program decides where log lines go (logging's last resort prints warnings).
_logger = logging.getLogger("engine")


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
    A resumed run refuses models made otherwise than its own (another space, evaluator or
    fixed argument: ``RunChanged`` at submit, saying what differs) unless
    ``allow_changed_space`` is true. The run file keeps a failed attempt's full output
    (``RunReader.outputs``); ``handle.output`` keeps the last 64 KiB of each stream.

    A failed model is logged and its ``handle.error`` (also ``model.error``) holds the
    error's type, message and traceback; ``strategies.search`` raises ``SearchFailed``
    when models failed and none trained. ``set_objective`` records how the run ranks
    models (strategies call it); ``set_objectives`` declares several (models report a
    dict; "best" is the Pareto front), and ``set_profiler`` measures each model before
    it trains (``engine.profile``: params, FLOPs, latency; constraints make it invalid).
    Pools: ``engine.workers``; a new pool is checked with
    ``engine.testing`` (its conformance kit, and ``MockPool`` for strategy tests).

    Checkpoints and pauses: training code keeps its state with ``save_checkpoint`` /
    ``load_checkpoint`` in a folder of the run (``<run file>.checkpoints/<model id>``,
    a temporary folder without a journal, removed at the stop). A retried model, or one
    a resumed run trains again, continues from its last checkpoint. ``handle.pause()``
    frees a model's worker (status ``paused``, out of ``in_flight``) and
    ``handle.resume()`` queues it again. The block ends once nothing is in flight, so
    models still paused then stay paused: their waiters get them back paused, and a
    journaled run keeps their checkpoints; a later run of the file lists them, paused,
    in :meth:`handles` (a strategy resumes them from its ``resume`` hook). Checkpoints of
    a model that ended (trained, failed, invalid, interrupted) are deleted.
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
        allow_changed_space: bool = False,
    ) -> None:
        check_count("max_trials", max_trials, optional=True)
        check_positive("max_duration", max_duration, optional=True)
        check_positive("trial_timeout", trial_timeout, optional=True)
        check_count("max_retries", max_retries, minimum=0)
        check_count("queue_size", queue_size, optional=True)
        check_count("event_buffer", event_buffer)
        check_bool("deduplicate", deduplicate)
        check_bool("allow_changed_space", allow_changed_space)
        self.pool: WorkerPool = pool if pool is not None else InlinePool(1)
        self.max_trials, self.max_duration = max_trials, max_duration
        self.trial_timeout, self.max_retries = trial_timeout, max_retries
        self.deduplicate = deduplicate
        self.allow_changed_space = allow_changed_space
        self._slots = self.pool.capacity + self.pool.prefetch  # models a pool takes at once
        self._queue_size = queue_size if queue_size is not None else self._slots
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
        self._objectives: tuple[Objective, ...] = ()  # see set_objectives
        self._outer: TaskGroup | None = None
        self._requeued: deque[ModelHandle] = deque()
        self._unresumable: list[tuple[ModelHandle, str]] = []
        self._tg: TaskGroup | None = None
        self._queue: ModelQueue[ModelHandle] = ModelQueue(self._queue_size)
        self._listeners: list[IntermediateListener] = []
        self._profiler: Profiler | None = None  # see set_profiler
        self._violations = 0
        self._checkpoints: CheckpointRoot | None = None  # see engine._checkpoint
        self._checkpoint_root = ""  # str(self._checkpoints.path)

    # -- life cycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        if self._running or self._log.closed:
            raise RuntimeError("an Engine can be entered once: make a new one")
        refuse_in_worker()
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        try:
            if self._journal_where is not None and self._journal_where is not False:
                await self._open_journal(self._journal_where)
            await self._open_checkpoints()
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            try:
                await self._tg.start(self.pool.serve, Monitor(self))
            except BaseException:
                self._tg.cancel_scope.cancel()
                await self._tg.__aexit__(None, None, None)
                raise
        except BaseException as exc:
            await self._close_outer("cancelled" if is_cancel(exc) else "error")
            raise
        for _ in range(self._slots):
            self._tg.start_soon(self._runner)
        if self.max_duration is not None:
            self._tg.start_soon(self._wall_clock, self.max_duration)
        self._running = self._accepting = True
        journal = str(self._journal.path) if self._journal is not None else None
        self._emit(EngineStarted(**self._stamp(), pool=self.pool.name, capacity=self.pool.capacity,
                   resumed=self._journal is not None and self._journal.store.resume_state.resumed,
                   journal=journal))
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
        self._record_objectives(objectives_from_meta(state.meta))
        if self.max_trials is not None:  # the run's budget, for the dashboard's progress
            store.set_meta("max_trials", str(self.max_trials))
        for stored in state.models:
            self._restore(stored)

    def _restore(self, stored: StoredModel) -> None:
        if _broke_constraint(stored):
            self._violations += 1
        elif not is_duplicate_reason(stored.reason):
            self._trials += 1
            if self.deduplicate:
                self._samples.setdefault(_sample_key(stored.sample), stored.id)
        if stored.status is ModelStatus.Paused and self._restore_paused(stored):
            return
        if not stored.needs_training:
            handle = ModelHandle(self, restore_finished(stored), stored.id)
            handle.attempts = stored.attempts
            handle._set_done()
            self._handles[stored.id] = handle
            return
        model = rebuild(stored)
        if isinstance(model, str):  # cannot be trained again: say why, once
            handle = ModelHandle(self, RestoredModel(stored), stored.id)
            self._handles[stored.id] = handle
            self._in_flight += 1
            self._unresumable.append((handle, model))
            return
        model.metrics = stored.metrics  # it continues from its checkpoint, if any
        handle = ModelHandle(self, model, stored.id)
        handle.attempts = handle._failures = stored.attempts
        self._handles[stored.id] = handle
        self._by_object[id(model)] = handle
        self._in_flight += 1
        handle._queued = True
        self._requeued.append(handle)

    def _restore_paused(self, stored: StoredModel) -> bool:
        """A model the run left paused stays paused (resumable by its handle): True;
        False when it cannot be rebuilt (it is then failed as not resumable)."""
        model = rebuild(stored)
        if isinstance(model, str):
            return False
        model.status, model.metrics = ModelStatus.Paused, stored.metrics
        handle = ModelHandle(self, model, stored.id)
        handle.attempts = stored.attempts
        self._handles[stored.id] = handle
        self._by_object[id(model)] = handle
        return True

    async def _open_checkpoints(self) -> None:
        """The run's checkpoint folder; at a resume, delete the checkpoints of models
        that ended while the killed driver could not (only paused and unfinished
        models keep theirs)."""
        self._checkpoints = root = CheckpointRoot.for_run(self.journal_path)
        self._checkpoint_root = str(root.path)
        if self._journal is not None and not root.temporary:
            keep = {m.id for m in self._journal.store.resume_state.models
                    if m.needs_training or m.status is ModelStatus.Paused}
            await anyio.to_thread.run_sync(root.keep_only, keep)

    def _release_paused(self) -> None:
        """At the stop: models still paused stay paused (a journaled run keeps their
        checkpoints, to resume them in a later run); their waiters get them back."""
        paused = {h.model_id: h for h in self._handles.values()
                  if h.status is ModelStatus.Paused}
        if self._checkpoints is not None:
            self._checkpoints.close(set(paused))
        for handle in paused.values():
            handle._set_done()

    def _requeue(self) -> None:
        """Events for the models a resumed run trains again (or cannot)."""
        for handle, why in self._unresumable:
            handle.model.status = ModelStatus.Training
            self._failed(handle, "NotResumable", f"model {handle.model_id} cannot be "
                         f"trained again: {why}", "", retry=False)
        for handle in self._requeued:
            self._emit(ModelQueued(**self._stamp(), model_id=handle.model_id,
                                   sample=handle.model.sample or {}))

    async def _close_outer(self, reason: str) -> None:
        """The last rungs of the cleanup ladder: end every subscription with
        ``engine_stopped``, close the journal, end the journal's tasks. No rung stops the
        next; a failure of the journal's writer is raised as itself (the root cause)."""
        assert self._outer is not None
        self._queue.close()
        try:
            if not self._log.closed:
                self._emit(EngineStopped(**self._stamp(), reason=reason))
        finally:
            self._log.close()
            try:
                if self._journal is not None:
                    await self._journal.close()
            finally:
                self._outer.cancel_scope.cancel()
                await unwrapped(self._outer.__aexit__(None, None, None))

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        reason = "finished"
        try:
            if exc_type is None:
                await self._drain()
            else:
                reason = "cancelled" if is_cancel(exc) else "error"
        except BaseException as error:
            reason = "cancelled" if is_cancel(error) else "error"
            raise
        finally:
            await self._stop(reason)
        return None

    async def _stop(self, reason: str) -> None:
        """The cleanup ladder: every rung runs, whatever the one before it raised. The
        block's own exception propagates unchanged unless a rung fails; only the engine's
        tasks' errors (and the journal writer's) come out of here."""
        assert self._tg is not None  # set by __aenter__
        self._accepting = False
        try:
            self._shutdown(InterruptReason.shutdown)
        finally:
            self._queue.close()
            self._tg.cancel_scope.cancel()
            try:
                await unwrapped(self._tg.__aexit__(None, None, None))
            finally:
                self._running = False
                try:
                    self._release_paused()
                finally:
                    try:
                        await self._close_outer(reason)
                    finally:
                        self._changed.notify()

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

    def listen(self, listener: IntermediateListener) -> Callable[[], None]:
        """Call ``listener(handle, step, value)`` for every intermediate result from now
        on, synchronously on the event loop as it arrives (after its ``metric`` event,
        before the next report of any model is handled), in step order per model; it
        may call ``handle.stop()``. It must return quickly and not raise: an exception
        is logged on the ``engine`` logger and the trial goes on. Returns a function
        that removes the listener (a no-op when called again). Strategies register one
        in ``BaseStrategy.run`` (their ``on_intermediate`` hook)."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _heard(self, handle: ModelHandle, step: int, value: MetricValue) -> None:
        for listener in list(self._listeners):
            try:
                listener(handle, step, value)
            except Exception:
                _logger.exception("an intermediate-result listener failed on model %d "
                                  "step %d", handle.model_id, step)

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
        """Every model of the run, in id order of acceptance: a resumed run's too (its
        finished ones completed, its paused ones ``paused`` and resumable)."""
        return list(self._handles.values())

    @property
    def objective(self) -> Objective | None:
        """What this run optimizes first, once declared (:meth:`set_objective`,
        :meth:`set_objectives`) or read back from its run file; None before."""
        return self._objectives[0] if self._objectives else None

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """Every objective of this run, in the order declared (empty before)."""
        return self._objectives

    def set_objective(self, mode: str = "max", *, name: str | None = None) -> Objective:
        """Declare that this run ranks models by their final metric ``name`` (default
        ``"metric"``), bigger is better under ``mode="max"``, smaller under ``"min"``.
        Strategies call it at the start of ``run`` with their ``mode``; call it yourself
        when you submit models by hand. The run file records it: ``best()``,
        ``nas-engine show`` / ``plot`` and ``show_progress(engine=...)`` follow it, also
        after a resume. Declaring again with the same direction is a no-op; another
        direction (or name) is a ValueError, as is one that contradicts the run file.
        On a run with several objectives it checks against the first.
        Not async: it returns with the objective set, or raises and changes nothing."""
        store = self._journal.store if self._journal is not None else None
        objective = declare(self.objective, mode, name,
                            recorded_in=str(store.path) if store is not None else None)
        if objective != self.objective:
            self._store_objectives((objective,))
        return objective

    def set_objectives(self, objectives: Iterable[Objective]) -> tuple[Objective, ...]:
        """Declare the run's objectives: ``[Objective(name="accuracy", mode="max"),
        Objective(name="params", mode="min")]``. Models then report a dict holding every
        objective's name (``report_final({"accuracy": 0.9, "params": 1e5})``, profile
        values merged in); one that does not fails (``MissingObjective``, naming the
        key, not retried). One objective is exactly :meth:`set_objective`; with several,
        ``search()`` returns the Pareto front and ``best()`` ranks by the first. The run
        file records them. Declaring the same again is a no-op; others are a ValueError
        (also against the run file). Not async: sets them, or raises and changes nothing."""
        wanted = check_objectives(objectives)
        store = self._journal.store if self._journal is not None else None
        checked = declare_objectives(self._objectives, wanted,
                                     recorded_in=str(store.path) if store is not None else None)
        if checked != self._objectives:
            self._store_objectives(checked)
        return checked

    def _store_objectives(self, objectives: tuple[Objective, ...]) -> None:
        store = self._journal.store if self._journal is not None else None
        if store is not None and store.closed:
            raise EngineClosed(f"the run file {store.path} is closed: declare the objective "
                               "while the engine runs, or pass mode= to best()")
        if store is not None:
            for key, value in objectives_meta(objectives).items():
                store.set_meta(key, value)
        self._objectives = objectives

    def _record_objectives(self, recorded: tuple[Objective, ...]) -> None:
        """At journal open: keep the run file's objectives; those declared before the
        engine started must agree with them, and are written to a new file."""
        declared, self._objectives = self._objectives, recorded
        if declared:
            self.set_objectives(declared)

    def best(self, mode: str | None = None) -> ExecutableModelSpace | None:
        """The ranked model with the best metric: the highest under ``"max"``, the
        lowest under ``"min"`` (default: the run's :attr:`objective`, else ``"max"``).
        Models without a metric (or NaN) are left out; ties go to the earlier model.
        Only models at the highest fidelity any scored model reached compete: one trained
        to its end beats every model stopped early (``metrics.stopped_at``) or left
        paused (ranked by its last intermediate at the step it reached), and one stopped
        or paused at step 9 beats one at step 3. Models that report a dict rank by
        its value under the (first) objective; the Pareto front of a run with several
        objectives comes from ``engine.pareto`` / ``strategies.search``."""
        objective = self.objective
        chosen = mode if mode is not None else (
            objective.mode if objective is not None else "max")
        models = [h.model for h in self._handles.values()]
        return best_ranked(models, objective, check_mode(chosen))

    # -- profiles ------------------------------------------------------------------------

    @property
    def profiler(self) -> Profiler | None:
        return self._profiler

    @property
    def constraint_violations(self) -> int:
        """Models that ended ``invalid`` by a constraint (not counted in ``max_trials``)."""
        return self._violations

    def set_profiler(self, profiler: Profiler | None) -> None:
        """Measure every model submitted from now on in its worker before it trains
        (``engine.profile``): one that breaks a constraint ends ``invalid`` untrained and
        is counted apart from ``max_trials``; the measured ``params`` / ``flops`` /
        ``latency_ms`` join the final metrics when the objectives name them. ValueError
        when an objective needs a metric ``profiler`` does not measure. Not async."""
        if profiler is not None:
            if not isinstance(profiler, Profiler):
                raise TypeError(f"set_profiler takes a Profiler, got {type(profiler).__name__}")
            merged_name(self._objectives, profiler)
        self._profiler = profiler

    async def profile(self, model: ExecutableModelSpace,
                      profiler: Profiler | None = None) -> Profile:
        """The profile of the frozen ``model`` (parameters, FLOPs, latency), measured
        without training by ``profiler`` (default: the engine's, else params only). It
        is built and measured in this process, in a worker thread, on the profiler's
        device (default ``cuda`` when torch sees a GPU, else ``cpu``), not on the worker
        that would train it. Cancelled, it waits for the measurement to end, then raises.
        Does not submit the model; ``profile.violation(engine.profiler.constraints)``
        says whether it would be refused."""
        if not isinstance(model, ExecutableModelSpace) or model.status is not ModelStatus.Frozen:
            raise ValueError("profile needs a frozen model: call space.freeze(sample)")
        chosen = profiler or self._profiler or Profiler()
        return await anyio.to_thread.run_sync(
            lambda: chosen.measure(model.executable_model()))

    def _runnable(self, model: ExecutableModelSpace) -> ExecutableModelSpace:
        """What the pool runs: ``model``, measured first when a profiler is set."""
        if self._profiler is None:
            return model
        return profiled(model, self._profiler, merged_name(self._objectives, self._profiler))

    async def submit(self, model: ExecutableModelSpace) -> ModelHandle:
        """Queue a frozen model and return its handle; waits while the queue is full.

        Atomic: either the model is wholly accounted for (its id, the in-flight count,
        its journal row and its ``queued`` event) before any runner can see it, or
        nothing of it is queued and no id is used. Raises EngineClosed (the engine is
        not running, or stopped while this waited), BudgetExhausted, TypeError or
        ValueError (a bad model, or a sample the journal cannot store) without queueing
        anything. Cancelled while it waits: nothing was queued. Always a checkpoint.
        """
        # This call's checkpoint: first, a plain one, when there is room (the common
        # case: no cancel scope for a shielded one after the put); else the wait for a
        # place is the checkpoint. The checks come after it, on the state it left.
        yielded = self._queue.has_room()
        if yielded:
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_submit(model)
        handle = ModelHandle(self, model, 0)
        handle._may_have_checkpoints = False  # a new model id: no folder until it runs
        self._by_object[id(model)] = handle
        self._trials += 1  # the budget is held while this waits for a place
        try:
            placed, waited = await self._place_for(handle)
            handle = self._admit(handle, placed)
        except BaseException:
            self._trials -= 1
            del self._by_object[id(model)]
            raise
        if not (yielded or waited):  # a duplicate: it never waited for a place
            await anyio.lowlevel.cancel_shielded_checkpoint()
        return handle

    async def _place_for(self, handle: ModelHandle) -> tuple[bool, bool]:
        """Hold a queue place for ``handle`` (True), or say it is a duplicate (False);
        and whether this waited for the place (a checkpoint)."""
        if self._duplicate_of(handle.model) is not None:
            return False, False
        try:
            waited = await self._queue.reserve()
        except anyio.ClosedResourceError:
            raise EngineClosed("the engine stopped while this model waited for the "
                               "queue") from None
        if not self._accepting:  # the wall-time budget ran out while this waited
            self._queue.release()
            raise BudgetExhausted(self._exhausted_reason())
        return True, waited

    def _admit(self, handle: ModelHandle, placed: bool) -> ModelHandle:
        """Account for ``handle`` and queue it; no checkpoint from here to the put."""
        duplicate = self._duplicate_of(handle.model)
        if duplicate is not None:  # perhaps queued by another submit while this waited
            if placed:
                self._queue.release()
            self._accept(handle)
            self._trials -= 1
            self._finish(handle, ModelStatus.Invalid, ModelInvalid(
                **self._stamp(), model_id=handle.model_id, message=f"{DUPLICATE_PREFIX} "
                f"{duplicate}: the same sample was submitted before", paths=()))
            return handle
        self._accept(handle)
        self._queue.put(handle)
        handle._queued = True
        return handle

    async def wait_capacity(self) -> None:
        """Return once fewer models are in flight than the pool takes at once (its
        workers plus what it prefetches: a worker would soon be idle). Returns when the
        engine stopped accepting. Always a checkpoint; cancelling it changes nothing."""
        if not (self._accepting and self.in_flight >= self._slots):
            await anyio.lowlevel.checkpoint()
            return
        while self._accepting and self.in_flight >= self._slots:
            await self._changed.wait()

    async def next_finished(self) -> ModelHandle | None:
        """The next completed model in completion order; None when nothing is in flight
        and every completed model was already returned. Always a checkpoint; cancelled,
        it hands out nothing (the model stays next)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        while not self._finished:
            if not self.in_flight:
                await anyio.lowlevel.cancel_shielded_checkpoint()
                return None
            await self._changed.wait()
        handle = self._finished.popleft()
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return handle

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
        if self._profiler is not None:
            self._runnable(model)  # a TypeError now (an async evaluator), not in a worker
        if self._journal is not None:
            check_storable(model.sample or {})
            self._journal.store.admit(model, force=self.allow_changed_space)

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
            self._journal.record_model(handle.model_id, blob_of(handle.model))
        self._emit(ModelQueued(**self._stamp(), model_id=handle.model_id, sample=sample))

    # -- running ------------------------------------------------------------------------

    async def _runner(self) -> None:
        while self._requeued:
            handle = self._requeued.popleft()
            handle._queued = False
            if handle._runnable:
                await self._run(handle)
        while True:
            try:
                handle = await self._queue.get()
            except anyio.EndOfStream:
                return
            handle._queued = False
            if handle._runnable:  # not paused (or ended) while it waited
                await self._run(handle)

    async def _run(self, handle: ModelHandle) -> None:
        while handle._runnable:
            handle.attempts += 1
            trial = Trial(self, handle)
            self._continue_from(handle, trial)
            stopped = True
            try:
                with anyio.CancelScope() as scope:
                    handle._scope = scope  # its timeout starts when a worker starts it
                    await self._attempt(handle, trial)
                    stopped = False
            finally:
                trial.open = False
                handle._scope = None
                if stopped and handle._pausing and handle._stop_reason in (
                        None, InterruptReason.shutdown):
                    self._paused(handle)
                elif stopped and not handle._ended:
                    # Cancelled: by its handle or the engine (reason set), by its timeout,
                    # or by a cancellation from outside the engine.
                    reason = handle._stop_reason or (
                        InterruptReason.timeout if scope.cancel_called
                        else InterruptReason.shutdown)
                    self._ended_early(handle, reason)

    def _continue_from(self, handle: ModelHandle, trial: Trial) -> None:
        """Where ``trial`` starts: from the model's newest checkpoint among the steps it
        kept (0: afresh), keeping the intermediates up to it. A pool that runs no
        training code (``resumes_from_step``, a simulation) continues from any step."""
        kept = handle.model.metrics.intermediates
        step = 0
        if getattr(self.pool, "resumes_from_step", False):
            step = len(kept)  # and no checkpoint folder: it saves none
        elif self._checkpoints is not None:
            if handle._may_have_checkpoints:
                step = self._checkpoints.continue_from(handle.model_id, len(kept))
            trial.checkpoint_dir = folder = self._checkpoint_folder(handle.model_id)
            trial.pruner = Pruner(folder, seen=step > 0, committed=(
                None if self._journal is None else self._journal.committed_seq))
            handle._may_have_checkpoints = True  # its worker may save from now on
        handle.model.metrics = Metrics(intermediates=kept[:step])
        trial.resume_step = step

    def _checkpoint_folder(self, model_id: int) -> str:
        """``str(self._checkpoints.folder(model_id))``, without a Path per call (a hot
        path: every attempt and every finished model)."""
        return f"{self._checkpoint_root}{os.sep}{model_id}"  # the root never ends in sep

    def _ended_early(self, handle: ModelHandle, reason: InterruptReason) -> None:
        """A running model's trial was cancelled: ``trained`` at the fidelity it reached
        when its strategy stopped it after some intermediates, else ``interrupted``."""
        metrics = handle.model.metrics
        if reason is InterruptReason.stopped and metrics.intermediates:
            metrics.final, metrics.stopped_at = metrics.intermediates[-1], len(
                metrics.intermediates)
            duration = time.time() - (handle.started_at or time.time())
            self._finish(handle, ModelStatus.Trained, ModelTrained(
                **self._stamp(), model_id=handle.model_id, final=metrics.final,
                duration=duration, stopped_at=metrics.stopped_at))
            return
        self._finish(handle, ModelStatus.Interrupted, ModelInterrupted(
            **self._stamp(), model_id=handle.model_id, reason=reason))

    async def _attempt(self, handle: ModelHandle, trial: Trial) -> None:
        try:
            output = await self.pool.run(self._runnable(handle.model), trial)
        except TrialFailed as exc:
            trial.open = False
            self._record_output(handle, exc.stdout, exc.stderr)
            self._keep_output(handle, TrialOutput(stdout=exc.stdout, stderr=exc.stderr))
            if exc.invalid:
                if exc.error_type == ConstraintViolated.__name__:  # counted apart
                    self._trials -= 1
                    self._violations += 1
                self._finish(handle, ModelStatus.Invalid, ModelInvalid(
                    **self._stamp(), model_id=handle.model_id, message=exc.message,
                    paths=exc.paths))
            else:
                self._failed(handle, exc.error_type, exc.message, exc.traceback)
            return
        except WorkerLost as exc:
            trial.open = False
            self._record_output(handle, exc.stdout, exc.stderr)
            self._keep_output(handle, TrialOutput(stdout=exc.stdout, stderr=exc.stderr))
            self._failed(handle, "WorkerLost", str(exc), "")
            return
        trial.open = False
        self._keep_output(handle, output)
        if trial.final_value is None:
            self._failed(handle, "NoFinalMetric", "the evaluator neither returned a number "
                         "nor called report_final()", "", retry=False)
            return
        final = trial.final_value
        problem = missing_objective(final, self._objectives)
        if problem is not None:
            self._failed(handle, "MissingObjective", problem, "", retry=False)
            return
        handle.model.metrics.final = final
        duration = time.time() - (handle.started_at or time.time())
        self._finish(handle, ModelStatus.Trained, ModelTrained(
            **self._stamp(), model_id=handle.model_id, final=final, duration=duration))

    def _keep_output(self, handle: ModelHandle, output: TrialOutput) -> None:
        """What the handle keeps of an attempt's captured output: the last
        ``OUTPUT_TAIL`` characters of each stream, so memory stays bounded however much
        a trial prints. (A failed trial's full output is stored before this, where the
        run keeps it.)"""
        handle.output = TrialOutput(stdout=_tail(output.stdout), stderr=_tail(output.stderr))

    def _record_output(self, handle: ModelHandle, stdout: str, stderr: str) -> None:
        """A failed attempt's full output goes to the run file (RunReader.outputs)."""
        if self._journal is not None and (stdout or stderr):
            self._journal.store.record_output(handle.model_id, handle.attempts, stdout, stderr)

    def _failed(self, handle: ModelHandle, error_type: str, message: str, traceback: str,
                *, retry: bool = True) -> None:
        handle._failures += 1
        if retry and handle._failures <= self.max_retries and self._accepting:
            handle.model.status = ModelStatus.Retrying
            self._emit(ModelRetrying(**self._stamp(), model_id=handle.model_id,
                                     attempt=handle.attempts + 1,
                                     reason=f"{error_type}: {message}"))
            return
        handle.model.error = TrialError(type=error_type, message=message,
                                        traceback=traceback)
        _logger.warning("model %d failed: %s: %s", handle.model_id, error_type, message)
        self._finish(handle, ModelStatus.Failed, ModelFailed(
            **self._stamp(), model_id=handle.model_id, error_type=error_type,
            message=message, traceback=traceback, attempt=handle.attempts))

    def _loading(self, handle: ModelHandle) -> None:
        """A worker began building ``handle``'s model: ``trial_timeout`` bounds the setup
        (and, from ``training`` on, the training), so a build that hangs is ended too."""
        if self.trial_timeout is not None and handle._scope is not None:
            handle._scope.deadline = anyio.current_time() + self.trial_timeout

    def _training(self, handle: ModelHandle, worker: str, gpus: tuple[int, ...],
                  setup: float = 0.0, resume_step: int = 0) -> None:
        if self.trial_timeout is not None and handle._scope is not None:
            handle._scope.deadline = anyio.current_time() + self.trial_timeout
        handle.model.status = ModelStatus.Training
        handle.started_at = time.time()
        self._emit(TrainingStarted(**self._stamp(), model_id=handle.model_id, worker=worker,
                   attempt=handle.attempts, gpus=gpus, setup=setup,
                   resume_step=resume_step))

    def _pause(self, handle: ModelHandle) -> None:
        """See ``ModelHandle.pause``."""
        if (not handle._runnable or handle._pausing or handle._stop_reason is not None
                or not self._running):
            return
        if handle._scope is not None:  # running: its runner pauses it once it ended
            handle._pausing = True
            handle._scope.cancel()
            return
        self._paused(handle)  # queued: its runner will skip it

    def _paused(self, handle: ModelHandle) -> None:
        """``handle`` (not running any more) is paused: its event, and out of flight."""
        handle._pausing = False
        step = len(handle.model.metrics.intermediates)
        checkpoint = (self._checkpoints.paused(handle.model_id, step)
                      if self._checkpoints is not None and handle._may_have_checkpoints
                      else None)
        handle.model.status = ModelStatus.Paused
        self._in_flight -= 1
        self._emit(ModelPaused(**self._stamp(), model_id=handle.model_id, step=step,
                               checkpoint=checkpoint))
        self._changed.notify()

    async def _resume(self, handle: ModelHandle) -> None:
        """See ``ModelHandle.resume``: no checkpoint from the status check to the put."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        self._check_resume(handle)
        if handle.status is ModelStatus.Paused and not handle._queued:
            try:
                await self._queue.reserve()
            except anyio.ClosedResourceError:
                raise EngineClosed("the engine stopped while this model waited for the "
                                   "queue") from None
            if handle.status is not ModelStatus.Paused or not self._accepting:
                self._queue.release()  # resumed, ended or refused meanwhile
                self._check_resume(handle)
            else:
                self._queue.put(handle)
                handle._queued = True
        if handle.status is ModelStatus.Paused:
            handle.model.status = ModelStatus.Frozen
            self._in_flight += 1
            self._emit(ModelResumed(**self._stamp(), model_id=handle.model_id))
        await anyio.lowlevel.cancel_shielded_checkpoint()

    def _check_resume(self, handle: ModelHandle) -> None:
        if not self._running:
            raise EngineClosed("the engine is not running: resume a model inside "
                               "`async with Engine(...) as engine:`")
        if handle._ended:
            raise ValueError(f"model {handle.model_id} ended ({handle.status.value}): only "
                             "a paused model can be resumed")
        if handle.status is ModelStatus.Paused and not self._accepting:
            raise BudgetExhausted("the engine is stopping (wall-time budget used up or "
                                  "shutting down): it resumes no model")

    def _interrupt(self, handle: ModelHandle, reason: InterruptReason) -> None:
        if handle._ended:
            return
        if handle.status is ModelStatus.Paused:
            if reason is not InterruptReason.shutdown:  # a shutdown leaves it paused
                self._in_flight += 1  # it ends now, and is handed out as it ends
                self._ended_early(handle, reason)
            return
        if handle._scope is not None:  # running: its runner finishes it
            handle._stop_reason = handle._stop_reason or reason  # the first reason wins
            handle._scope.cancel()
            return
        self._finish(handle, ModelStatus.Interrupted, ModelInterrupted(
            **self._stamp(), model_id=handle.model_id, reason=reason))

    def _finish(self, handle: ModelHandle, status: ModelStatus,
                event: _FinalEvent) -> None:
        """``handle`` ends with ``status``: emit its final ``event`` and resolve it."""
        handle.model.status = status
        handle.ended_at = time.time()
        if (self._checkpoints is not None and handle._may_have_checkpoints
                and os.path.lexists(self._checkpoint_folder(handle.model_id))):
            self._checkpoints.remove(handle.model_id)  # it cannot be resumed: free its disk
        seq = self._emit(event)
        if self._journal is not None:
            self._journal.finished(handle, seq)
        else:
            self._resolve(handle)

    def _resolve(self, handle: ModelHandle) -> None:
        """``handle``'s result is final (and durable, with a journal): hand it out."""
        # Only an in-flight model can be submitted again by mistake: a completed one is
        # refused by its status, so the object no longer needs to be known.
        self._by_object.pop(id(handle.model), None)
        self._in_flight -= 1
        self._finished.append(handle)
        handle._set_done()
        self._changed.notify()

    def _stamp(self) -> Stamp:
        """The ``seq`` and ``time`` of the next event: build it with ``Kind(**stamp, ...)``
        and emit it before any other (mypy checks the fields at every call site)."""
        return {"seq": self._log.next_seq, "time": time.time()}

    def _emit(self, event: Event) -> int:
        """Hand ``event`` (built with :meth:`_stamp`) to subscribers and the journal."""
        self._log.append(event)
        if self._journal is not None:
            self._journal.append(event)
        return event.seq


def _broke_constraint(stored: StoredModel) -> bool:
    return stored.status is ModelStatus.Invalid and (stored.reason or "").startswith(
        VIOLATION_PREFIX)


def _tail(text: str) -> str:
    if len(text) <= OUTPUT_TAIL:
        return text
    dropped = len(text) - OUTPUT_TAIL
    return f"[... {dropped} earlier characters dropped ...]\n{text[-OUTPUT_TAIL:]}"
