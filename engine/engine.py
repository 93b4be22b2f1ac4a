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

This module is the Engine's public face: its options, entering and leaving the block,
and its public methods. Its parts are mixins in ``engine._engine`` (the cleanup ladder,
opening a run, submission's steps, the runners, pausing and interrupting), over one base
that declares the state they share.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

import anyio
import anyio.lowlevel

from engine._checks import check_bool, check_count, check_positive, refuse_in_worker
from engine._engine._base import IntermediateListener
from engine._engine._control import Control
from engine._engine._lifecycle import Lifecycle
from engine._engine._restoring import Restoring
from engine._engine._running import OUTPUT_TAIL as OUTPUT_TAIL
from engine._engine._running import Runners
from engine._engine._submission import Submission
from engine._engine._unwrap import is_cancel
from engine._eventlog import EventLog, Subscription
from engine._handle import ModelHandle, Monitor, Signal
from engine._objective import (
    Objective,
    best_ranked,
    check_mode,
    check_objectives,
    declare,
    declare_objectives,
    objectives_meta,
)
from engine._queue import ModelQueue
from engine.errors import EngineClosed
from engine.events import EngineStarted
from engine.profile import Profile, Profiler, merged_name
from engine.space import ExecutableModelSpace, ModelStatus
from engine.workers._base import WorkerPool
from engine.workers.inline import InlinePool

__all__ = ("Engine", "ModelHandle")


class Engine(Lifecycle, Restoring, Submission, Runners, Control):
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
        self.pool = pool if pool is not None else InlinePool(1)
        self.max_trials, self.max_duration = max_trials, max_duration
        self.trial_timeout, self.max_retries = trial_timeout, max_retries
        self.deduplicate = deduplicate
        self.allow_changed_space = allow_changed_space
        # The state the engine's parts share: its types are declared in EngineBase.
        self._slots = self.pool.capacity + self.pool.prefetch
        self._queue_size = queue_size if queue_size is not None else self._slots
        self._log = EventLog(event_buffer)
        self._handles = {}
        self._by_object = {}
        self._samples = {}
        self._finished = deque()
        self._changed = Signal()
        self._next_id = 1
        self._trials = 0
        self._in_flight = 0
        self._running = False
        self._accepting = False
        self._journal_where = journal
        self._journal = None
        self._objectives = ()
        self._outer = None
        self._requeued = deque()
        self._unresumable = []
        self._tg = None
        self._queue = ModelQueue(self._queue_size)
        self._listeners = []
        self._profiler = None
        self._violations = 0
        self._checkpoints = None
        self._checkpoint_root = ""

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

    async def _drain(self) -> None:
        while self.in_flight:
            await self._changed.wait()

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
