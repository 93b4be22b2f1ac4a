"""Pausing, resuming and interrupting a model: what ``ModelHandle.pause``, ``resume``,
``stop`` and ``cancel`` (and the engine's shutdown) do to a queued, running or paused
model."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from engine._engine._base import EngineBase
from engine._handle import ModelHandle
from engine.errors import BudgetExhausted, EngineClosed
from engine.events import InterruptReason, ModelInterrupted, ModelPaused, ModelResumed
from engine.space import ModelStatus

__all__ = ("Control",)


class Control(EngineBase):
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
