"""The cleanup ladder ``Engine.__aexit__`` runs (also when ``__aenter__`` fails half
way): interrupt what is in flight, end the runners and the pool, release paused models,
end the subscriptions, close the journal. Every rung runs, whatever the one before
raised. And the wall-clock budget, which shuts the engine down early."""

from __future__ import annotations

import anyio

from engine._engine._base import EngineBase
from engine._engine._unwrap import unwrapped
from engine.events import EngineStopped, InterruptReason
from engine.space import ModelStatus

__all__ = ("Lifecycle",)


class Lifecycle(EngineBase):
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

    def _release_paused(self) -> None:
        """At the stop: models still paused stay paused (a journaled run keeps their
        checkpoints, to resume them in a later run); their waiters get them back."""
        paused = {h.model_id: h for h in self._handles.values()
                  if h.status is ModelStatus.Paused}
        if self._checkpoints is not None:
            self._checkpoints.close(set(paused))
        for handle in paused.values():
            handle._set_done()

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

    def _shutdown(self, reason: InterruptReason) -> None:
        for handle in list(self._handles.values()):
            self._interrupt(handle, reason)

    async def _wall_clock(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self._accepting = False
        self._shutdown(InterruptReason.shutdown)
        self._changed.notify()
