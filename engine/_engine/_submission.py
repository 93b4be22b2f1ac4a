"""Submission's steps (``Engine.submit`` runs them): the checks on a model, its place
in the queue (or its end as a duplicate), and its acceptance: its id, the in-flight
count, its journal row and its ``queued`` event."""

from __future__ import annotations

import anyio

from engine._engine._base import EngineBase
from engine._handle import ModelHandle
from engine._journal import DUPLICATE_PREFIX, blob_of, check_storable
from engine._objective import sample_key
from engine.errors import BudgetExhausted, EngineClosed
from engine.events import ModelInvalid, ModelQueued
from engine.space import ExecutableModelSpace, ModelStatus

__all__ = ("Submission",)


class Submission(EngineBase):
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
        return self._samples.get(sample_key(model.sample))

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

    def _accept(self, handle: ModelHandle) -> None:
        handle.model_id = self._next_id
        self._next_id += 1
        self._handles[handle.model_id] = handle
        self._in_flight += 1
        sample = handle.model.sample or {}
        if self.deduplicate:
            self._samples.setdefault(sample_key(sample), handle.model_id)
        if self._journal is not None:
            self._journal.record_model(handle.model_id, blob_of(handle.model))
        self._emit(ModelQueued(**self._stamp(), model_id=handle.model_id, sample=sample))
