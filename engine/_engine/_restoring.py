"""Opening a run: its journal (a resumed run's models, handles and counters restored
from the run file) and its checkpoint folder, as ``Engine.__aenter__`` starts."""

from __future__ import annotations

from pathlib import Path

import anyio

from engine._checkpoint import CheckpointRoot
from engine._engine._base import EngineBase
from engine._handle import ModelHandle
from engine._journal import Journal, RestoredModel, is_duplicate_reason, rebuild, restore_finished
from engine._objective import objectives_from_meta, sample_key
from engine.events import ModelQueued
from engine.profile import VIOLATION_PREFIX
from engine.space import ModelStatus
from engine.store import StoredModel

__all__ = ("Restoring",)


class Restoring(EngineBase):
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
                self._samples.setdefault(sample_key(stored.sample), stored.id)
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

    def _requeue(self) -> None:
        """Events for the models a resumed run trains again (or cannot)."""
        for handle, why in self._unresumable:
            handle.model.status = ModelStatus.Training
            self._failed(handle, "NotResumable", f"model {handle.model_id} cannot be "
                         f"trained again: {why}", "", retry=False)
        for handle in self._requeued:
            self._emit(ModelQueued(**self._stamp(), model_id=handle.model_id,
                                   sample=handle.model.sample or {}))


def _broke_constraint(stored: StoredModel) -> bool:
    return stored.status is ModelStatus.Invalid and (stored.reason or "").startswith(
        VIOLATION_PREFIX)
