"""The engine's bounded, ordered queue between ``submit`` and the runners.

A submitter takes a place first (:meth:`ModelQueue.reserve`, which may wait) and puts
its model later (:meth:`ModelQueue.put`, which never waits). Between the two the caller
runs without a checkpoint, so it can give the model its id, count it and record it
before any runner can see it: a model is wholly accounted for, or not queued at all.

Places go to waiting submitters in the order they began to wait.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ("ModelQueue",)

T = TypeVar("T")


class _Ticket:
    """A submitter waiting for a place; ``granted`` once a place is held for it."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class ModelQueue(Generic[T]):
    """At most ``size`` items waiting for a runner. Only the loop thread uses it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: deque[T] = deque()
        self._held = 0  # places reserved and not yet put or released
        self._waiting: deque[_Ticket] = deque()
        self._ready: anyio.Event | None = None  # a runner waiting for an item
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self) -> bool:
        """Whether :meth:`reserve` would hold a place now without waiting."""
        return not self.closed and not self._waiting and self._room()

    def _room(self) -> bool:
        return len(self._items) + self._held < self._size

    async def reserve(self) -> bool:
        """Hold one place for the caller, waiting while the queue is full (no checkpoint
        when there is room); True when it waited. The caller then must :meth:`put` or
        :meth:`release` before its next checkpoint. Cancelled: no place is held.
        ``anyio.ClosedResourceError`` once the queue is closed (nothing held)."""
        if self.closed:
            raise anyio.ClosedResourceError
        if not self._waiting and self._room():
            self._held += 1
            return False
        ticket = _Ticket()
        self._waiting.append(ticket)
        try:
            await ticket.event.wait()
        except BaseException:
            if ticket.granted:  # granted as the wait was cancelled: pass the place on
                self.release()
            else:
                self._waiting.remove(ticket)
            raise
        if not ticket.granted:  # woken by close()
            raise anyio.ClosedResourceError
        return True

    def release(self) -> None:
        """Give back a place held by :meth:`reserve` without putting anything."""
        self._held -= 1
        self._grant()

    def put(self, item: T) -> None:
        """Fill the place held by :meth:`reserve`; never waits."""
        self._held -= 1
        self._items.append(item)
        if self._ready is not None:
            self._ready.set()
            self._ready = None

    async def get(self) -> T:
        """The oldest item, waiting for one. ``anyio.EndOfStream`` once the queue is
        closed and empty. Cancelled: the queue is unchanged."""
        while not self._items:
            if self.closed:
                raise anyio.EndOfStream
            if self._ready is None:
                self._ready = anyio.Event()
            await self._ready.wait()
        item = self._items.popleft()
        self._grant()
        return item

    def close(self) -> None:
        """Refuse new submitters and wake the waiting ones (they hold nothing); runners
        take what is left, then get EndOfStream."""
        self.closed = True
        while self._waiting:
            self._waiting.popleft().event.set()
        if self._ready is not None:
            self._ready.set()
            self._ready = None

    def _grant(self) -> None:
        while self._waiting and self._room() and not self.closed:
            ticket = self._waiting.popleft()
            ticket.granted = True
            self._held += 1
            ticket.event.set()
