"""What every part of the Engine shares: its state, declared once here, and the few
primitives they all call: stamping and emitting an event, and ending a model (its final
event, then its handle handed out).

The parts are mixins over :class:`EngineBase`, composed by ``engine.engine.Engine``,
which sets this state in its ``__init__``. A call one part makes into another is
declared below (for mypy only), so each part type-checks against this class alone, and
so do the handles (``engine._handle``), which call back into the engine.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from anyio.abc import TaskGroup

from engine._checkpoint import CheckpointRoot
from engine._eventlog import EventLog
from engine._handle import ModelHandle, Signal
from engine._journal import Journal
from engine._objective import MetricValue, Objective
from engine._queue import ModelQueue
from engine.errors import TrialError
from engine.events import (
    Event,
    InterruptReason,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelRetrying,
    ModelTrained,
    Stamp,
)
from engine.profile import Profiler
from engine.space import ExecutableModelSpace, ModelStatus
from engine.workers._base import WorkerPool

__all__ = ("EngineBase", "IntermediateListener")

FinalEvent: TypeAlias = ModelTrained | ModelFailed | ModelInterrupted | ModelInvalid
#: ``listener(handle, step, value)``: see :meth:`Engine.listen`.
IntermediateListener: TypeAlias = Callable[[ModelHandle, int, MetricValue], None]

# The package's logger: one warning line per failed model. No handler is installed:
# the program decides where log lines go (logging's last resort prints warnings).
logger = logging.getLogger("engine")


class EngineBase:
    """The Engine's state (all on the event-loop thread) and its shared primitives."""

    # Options (see Engine): public, read by every part.
    pool: WorkerPool
    max_trials: int | None
    max_duration: float | None
    trial_timeout: float | None
    max_retries: int
    deduplicate: bool
    allow_changed_space: bool
    # Models and their accounting.
    _slots: int  # models a pool takes at once: its capacity plus its prefetch
    _queue_size: int
    _queue: ModelQueue[ModelHandle]
    _handles: dict[int, ModelHandle]  # every model of the run, by id
    _by_object: dict[int, ModelHandle]  # id(model) -> handle, while it is in flight
    _samples: dict[bytes, int]  # sample key -> first model id (with deduplicate)
    _finished: deque[ModelHandle]  # completed, not yet handed out by next_finished
    _changed: Signal  # notified when in_flight, _finished or accepting changes
    _next_id: int
    _trials: int  # accepted models, counted against max_trials
    _in_flight: int
    _violations: int  # models ended invalid by a profiler's constraint
    _running: bool
    _accepting: bool
    # Events, listeners, objectives, profiles.
    _log: EventLog
    _listeners: list[IntermediateListener]  # see Engine.listen
    _objectives: tuple[Objective, ...]  # see Engine.set_objectives
    _profiler: Profiler | None  # see Engine.set_profiler
    # The run file, resumed models, checkpoints.
    _journal_where: str | Path | bool | None
    _journal: Journal | None
    _requeued: deque[ModelHandle]  # models a resumed run trains again
    _unresumable: list[tuple[ModelHandle, str]]  # and those it cannot, with why
    _checkpoints: CheckpointRoot | None  # see engine._checkpoint
    _checkpoint_root: str  # str(self._checkpoints.path)
    # Task groups: the journal's tasks (outer), the pool and the runners (inner).
    _outer: TaskGroup | None
    _tg: TaskGroup | None

    if TYPE_CHECKING:  # defined by the parts or by Engine; see the module docstring
        @property
        def journal_path(self) -> Path | None: ...
        @property
        def budget_left(self) -> int | None: ...
        def _interrupt(self, handle: ModelHandle, reason: InterruptReason) -> None: ...
        def _pause(self, handle: ModelHandle) -> None: ...
        def _paused(self, handle: ModelHandle) -> None: ...
        async def _resume(self, handle: ModelHandle) -> None: ...
        def _loading(self, handle: ModelHandle) -> None: ...
        def _training(self, handle: ModelHandle, worker: str, gpus: tuple[int, ...],
                      setup: float = 0.0, resume_step: int = 0) -> None: ...
        def _runnable(self, model: ExecutableModelSpace) -> ExecutableModelSpace: ...
        def _record_objectives(self, recorded: tuple[Objective, ...]) -> None: ...

    # -- emitting -------------------------------------------------------------------------

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

    def _heard(self, handle: ModelHandle, step: int, value: MetricValue) -> None:
        for listener in list(self._listeners):
            try:
                listener(handle, step, value)
            except Exception:
                logger.exception("an intermediate-result listener failed on model %d "
                                 "step %d", handle.model_id, step)

    # -- finishing ------------------------------------------------------------------------

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
        logger.warning("model %d failed: %s: %s", handle.model_id, error_type, message)
        self._finish(handle, ModelStatus.Failed, ModelFailed(
            **self._stamp(), model_id=handle.model_id, error_type=error_type,
            message=message, traceback=traceback, attempt=handle.attempts))

    def _finish(self, handle: ModelHandle, status: ModelStatus,
                event: FinalEvent) -> None:
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

    def _checkpoint_folder(self, model_id: int) -> str:
        """``str(self._checkpoints.folder(model_id))``, without a Path per call (a hot
        path: every attempt and every finished model)."""
        return f"{self._checkpoint_root}{os.sep}{model_id}"  # the root never ends in sep
