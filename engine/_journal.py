"""The engine's side of a run store: restoring a run and resolving handles once durable.

A model's handle resolves (``await handle`` returns, ``next_finished`` yields it) only
after the store committed its final event, so a result a strategy has seen survives a
crash. Without a store, handles resolve at once.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskStatus

from engine._recipe import RecipeError
from engine.errors import NotRebuildable, TrialError
from engine.space import ExecutableModelSpace, ModelStatus, SimplifiedModelSpace, dump_model
from engine.store import RunStore, RunStoreClosed, StoredModel

__all__ = ("Journal", "RestoredModel", "check_storable", "is_duplicate_reason", "restore_finished")

logger = logging.getLogger("engine")

DUPLICATE_PREFIX = "duplicate of model"

_json_encode = msgspec.json.Encoder().encode


def is_duplicate_reason(reason: str | None) -> bool:
    return reason is not None and reason.startswith(DUPLICATE_PREFIX)


class RestoredModel(ExecutableModelSpace):
    """A finished model read back from a run file that holds no recipe to rebuild it
    (a raw-format model, whose live space stayed in the program that made it): its
    sample, status, metrics, ``reason`` and ``error``. ``executable_model()`` raises
    :class:`~engine.errors.NotRebuildable`.

    A resumed run gives back every other finished model as the
    :class:`~engine.space.SimplifiedModelSpace` it was, rebuilt from its recipe, so its
    ``executable_model()`` works as before the resume."""

    def __init__(self, stored: StoredModel) -> None:
        super().__init__(stored.status)
        self.evaluator = None
        self.sample = dict(stored.sample)
        self.metrics = stored.metrics
        self.reason = stored.reason
        self.model_id = stored.id

    def leaf_mutables(self) -> Any:
        return iter(())

    def executable_model(self) -> Any:
        raise NotRebuildable(
            f"model {self.model_id} was restored from a run file that holds no recipe for "
            "it (it was a raw-format model, or its arguments could not be sent), so it "
            "cannot be built again: rebuild it from its sample with your own space, "
            f"space.freeze({self.sample!r}).executable_model()")

    def __repr__(self) -> str:
        return f"RestoredModel({self.sample!r}, {self.metrics!r}, {self.status.value!r})"


def restore_finished(stored: StoredModel) -> ExecutableModelSpace:
    """A finished model of a resumed run: rebuilt from its recipe when the file holds
    one (its recipe resolves only when it is built), else a :class:`RestoredModel`."""
    model: ExecutableModelSpace | None = None
    if stored.blob is not None:
        with contextlib.suppress(RecipeError, ImportError, AttributeError, TypeError,
                                 ValueError):
            model = SimplifiedModelSpace.load(stored.blob)
    if model is None:
        model = RestoredModel(stored)
    model.status, model.sample, model.metrics = stored.status, dict(stored.sample), stored.metrics
    if stored.status is ModelStatus.Failed:
        kind, _, message = (stored.reason or "").partition(": ")
        model.error = TrialError(type=kind or "Failed", message=message or kind)
    return model


def rebuild(stored: StoredModel) -> SimplifiedModelSpace | str:
    """The frozen model to train again, or why it cannot be rebuilt."""
    if stored.blob is None:
        return ("it was a raw-format model (or its arguments could not be sent), so the "
                "journal holds no recipe to rebuild it from")
    try:
        model = SimplifiedModelSpace.load(stored.blob)
    except (RecipeError, ImportError, AttributeError, TypeError, ValueError) as exc:
        return f"its recipe no longer loads: {exc}"
    model.status = ModelStatus.Frozen
    return model


def check_storable(sample: Mapping[str, Any]) -> None:
    """TypeError naming the label when the journal cannot store ``sample`` as JSON."""
    try:
        _json_encode(sample)  # the whole sample at once: one call in the common case
        return
    except (TypeError, msgspec.EncodeError):
        pass
    for label, value in sample.items():
        try:
            _json_encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(
                f"the run journal cannot store the value of {label!r} "
                f"({type(value).__module__}.{type(value).__qualname__}: {value!r}): a sample "
                "holds JSON values only (str, int, float, bool, None, lists and dicts of "
                f"them); convert the choices of {label!r} to plain Python values ({exc})"
            ) from None


def blob_of(model: ExecutableModelSpace) -> bytes | None:
    """What the journal keeps to rebuild ``model``; None when it cannot leave."""
    try:
        return dump_model(model)
    except (TypeError, ValueError):
        return None


class Journal:
    """Wraps a :class:`RunStore` for one engine."""

    def __init__(self, store: RunStore, resolve: Callable[[Any], None]) -> None:
        self.store = store
        self._resolve = resolve
        self._unresolved: deque[tuple[int, Any]] = deque()
        self._wake = anyio.Event()
        # The writer failed: nothing more is written, handles resolve at once, and the
        # writer's error reaches the engine's caller through the engine's task group.
        self.failed = False

    @classmethod
    async def open(cls, where: str | Path | bool, resolve: Callable[[Any], None]) -> Journal:
        store = await RunStore.open(None if where is True else Path(str(where)))
        logger.info("run journal: %s", store.path)
        return cls(store, resolve)

    @property
    def path(self) -> Path:
        return self.store.path

    async def serve(self, *, task_status: TaskStatus[None]) -> None:
        """The store's writer. Shielded: a cancellation from outside must not close the
        store while the engine still writes its last events; :meth:`close` ends it."""
        with anyio.CancelScope(shield=True):
            await self.store.serve(task_status=task_status)

    def committed_seq(self) -> int:
        """The seq of the run file's last committed event; once the writer failed,
        nothing more will be, and every event counts as committed (so that checkpoint
        pruning goes on)."""
        return sys.maxsize if self.failed else self.store.committed_seq

    def record_model(self, model_id: int, blob: bytes | None) -> None:
        if not self.failed:
            try:
                self.store.record_model(model_id, blob)
            except RunStoreClosed:
                self._fail()

    def append(self, event: Any) -> None:
        """Queue ``event`` for the writer; nothing once the writer failed (never raises:
        the engine emits from its cleanup, which must not stop halfway)."""
        if not self.failed:
            try:
                self.store.append(event)
            except RunStoreClosed:
                self._fail()

    def finished(self, handle: Any, seq: int) -> None:
        """``handle``'s final event is ``seq``: resolve it once that is committed."""
        self._unresolved.append((seq, handle))
        if self.failed:
            self._release(None)
        elif len(self._unresolved) == 1:  # else the resolver is busy and takes this too
            self._wake.set()

    def _fail(self) -> None:
        self.failed = True
        self._release(None)

    async def resolver(self) -> None:
        """Resolve handles as their final events are committed (runs until cancelled)."""
        while True:
            while not self._unresolved:
                await self._wake.wait()
                self._wake = anyio.Event()
            seq = self._unresolved[-1][0]
            try:
                await self.store.flushed(seq)
            except RunStoreClosed:
                self._fail()
            self._release(seq)

    async def close(self) -> None:
        """Commit what is pending (now, not after the batch window), resolve every handle
        and close the store. Shielded: it runs while the engine is being cancelled too."""
        with anyio.CancelScope(shield=True):
            try:
                await self.store.aclose()
            finally:
                self._release(None)

    def _release(self, upto: int | None) -> None:
        while self._unresolved and (upto is None or self._unresolved[0][0] <= upto):
            self._resolve(self._unresolved.popleft()[1])
