"""The engine's event log and its subscriptions.

Policy for slow subscribers: the engine never waits for a subscriber and never drops
an event silently. It keeps the last ``capacity`` events in memory; every subscription
is a cursor (the seq of its next event) into that log. A subscriber that falls further
behind than that gets :class:`~engine.errors.SubscriberLagged` (naming the events it
missed) on its next read, unless the engine has a journal, from which the missed events
are read back, during the run and after it.

Keeping up. A pool may append thousands of events in one turn of the loop (a whole pipe
read). A subscription reads without a checkpoint while events are waiting, and yields
to the loop only once it has read the backlog it found at its previous yield (at least
``_YIELD_EVERY`` events): in each of its turns it catches up with what the engine
appended in the engine's turns, so a subscriber lags only when it really is slower.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
import anyio.lowlevel

from engine.errors import EngineClosed, SubscriberLagged
from engine.events import Event

__all__ = ("EventLog", "Subscription")

# A subscriber with events waiting reads them without a checkpoint (a checkpoint costs
# more than the read); it yields after the backlog it found at its last yield, and
# after at least this many events.
_YIELD_EVERY = 64
_READ_BACK = 4096  # events read back from the journal at a time


class EventLog:
    """Events in seq order; only the loop thread appends."""

    def __init__(self, capacity: int, first_seq: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"event buffer must hold at least 1 event, got {capacity}")
        self.capacity = capacity
        self._events: list[Event] = []
        self._base = first_seq  # seq of self._events[0]
        self.origin = first_seq  # seq of the first event this log ever held
        self._waiter: anyio.Event | None = None
        self.closed = False
        # Reads events that fell out of memory: (first, last) -> events. Set by a journal.
        self.backfill: Callable[[int, int], Awaitable[list[Event]]] | None = None

    @property
    def next_seq(self) -> int:
        return self._base + len(self._events)

    @property
    def first_seq(self) -> int:
        """The oldest event still in memory (or the next one, when none is)."""
        return self._base

    def rebase(self, first_seq: int) -> None:
        """Number the first event ``first_seq`` (a resumed run); only before any event."""
        if self.next_seq != self.origin:
            raise RuntimeError("the event log already holds events")
        self._base = self.origin = first_seq

    def append(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) >= 2 * self.capacity:
            drop = len(self._events) - self.capacity
            del self._events[:drop]
            self._base += drop
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def get(self, seq: int) -> Event | None:
        """The event ``seq`` if it is in memory; None if it is not written yet.
        Raises SubscriberLagged when it fell out of memory."""
        index = seq - self._base
        if index >= len(self._events):
            return None
        if index >= 0:
            return self._events[index]
        raise SubscriberLagged(seq, self._base - 1)

    async def wait(self) -> None:
        """Return after the next append or close. Cancellation leaves the log unchanged."""
        if self._waiter is None:
            self._waiter = anyio.Event()
        await self._waiter.wait()

    def subscribe(self) -> Subscription:
        if self.closed:
            raise EngineClosed("the engine has stopped: subscribe before or while it runs")
        # Before the first event, start at whatever the first event will be numbered.
        return Subscription(self, self.next_seq if self.next_seq != self.origin else None)


class Subscription:
    """An async iterator of every event from the moment it was made, in order.
    It ends after the engine's last event. Closing it early releases nothing but itself.
    Cancelling ``__anext__`` loses no event: the next call returns the one it would have."""

    def __init__(self, log: EventLog, start: int | None) -> None:
        self._log = log
        self._next = start  # None: from the log's first event, whatever it is numbered
        self._budget = _YIELD_EVERY  # events it may still read before it yields
        self._closed = False
        self._backlog: list[Event] = []  # events read back from the journal, reversed

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        # The common case, without the loop below: the next event is in memory and the
        # budget allows taking it without a checkpoint (about a third of the cost).
        seq, log = self._next, self._log
        if seq is not None and self._budget > 0 and not self._backlog and not self._closed:
            index = seq - log._base
            if 0 <= index < len(log._events):
                self._next = seq + 1
                self._budget -= 1
                return log._events[index]  # the log holds contiguous seqs
        return await self._next_event()

    async def _next_event(self) -> Event:
        while not self._closed:
            if self._next is None:
                if self._log.next_seq == self._log.origin and not self._log.closed:
                    await self._log.wait()
                    continue
                self._next = self._log.origin
            try:
                event = self._backlog[-1] if self._backlog else self._log.get(self._next)
            except SubscriberLagged:
                if self._log.backfill is None:
                    raise
                await self._read_back()
                self._refill()
                continue
            if event is not None:
                if self._budget <= 0:  # yield before taking it: a cancellation loses nothing
                    await anyio.lowlevel.checkpoint()
                    self._refill()
                    continue
                if event.seq != self._next:  # the cursor is a seq, never a count
                    raise SubscriberLagged(self._next, event.seq - 1)
                if self._backlog:
                    self._backlog.pop()
                self._next = event.seq + 1
                self._budget -= 1
                return event
            if self._log.closed:
                break
            await self._log.wait()
            self._refill()
        raise StopAsyncIteration

    def _refill(self) -> None:
        """After a turn of the loop: read what the engine appended meanwhile before
        yielding again."""
        assert self._next is not None
        self._budget = max(_YIELD_EVERY, self._log.next_seq - self._next)

    async def _read_back(self) -> None:
        """Read a batch of evicted events back from the journal (off the event loop).
        SubscriberLagged names the events the journal does not have."""
        assert self._log.backfill is not None
        assert self._next is not None
        last = min(self._next + _READ_BACK - 1, self._log.first_seq - 1)
        events = await self._log.backfill(self._next, last)
        if not events or events[0].seq != self._next:
            raise SubscriberLagged(self._next, events[0].seq - 1 if events else last)
        self._backlog = events[::-1]

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
