"""Subscriptions: every event, in seq order, during and after the run; a lag error only
for a subscriber that really is slower than the engine."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from engine._eventlog import EventLog, Subscription
from engine.errors import SubscriberLagged
from engine.events import EngineStarted, Event, MetricReported

pytestmark = pytest.mark.anyio


def _metric(seq: int) -> Event:
    return MetricReported(seq=seq, time=0.0, model_id=1, value=0.0, step=seq)


async def _count(subscription: Subscription, seen: list[int]) -> None:
    async for event in subscription:
        seen.append(event.seq)


async def test_a_counting_subscriber_keeps_up_with_bursts() -> None:
    # A pool appends a whole pipe read (here 450 events) per turn of the loop; the log
    # keeps 1000 (trio may run the producer twice between two turns of the subscriber).
    # A subscriber that yields every 64 events lags after a few bursts.
    log = EventLog(1000)
    seen: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_count, log.subscribe(), seen)
        await anyio.lowlevel.checkpoint()
        seq = 0
        for _ in range(400):
            for _ in range(450):
                seq += 1
                log.append(_metric(seq))
            await anyio.lowlevel.checkpoint()
        log.close()
    assert seen == list(range(1, seq + 1))


async def test_a_subscriber_slower_than_the_engine_is_told_what_it_missed() -> None:
    log = EventLog(10)
    subscription = log.subscribe()
    for seq in range(1, 40):
        log.append(_metric(seq))
    with pytest.raises(SubscriberLagged) as info:
        await subscription.__anext__()
    assert (info.value.missed_from, info.value.missed_to) == (1, 20)


async def test_a_read_back_with_a_gap_names_the_gap() -> None:
    log = EventLog(4)
    subscription = log.subscribe()
    for seq in range(1, 20):
        log.append(_metric(seq))

    async def holey(first: int, last: int) -> list[Event]:
        return [_metric(s) for s in range(first, last + 1) if s != 5]

    log.backfill = holey
    got = [(await subscription.__anext__()).seq for _ in range(4)]
    assert got == [1, 2, 3, 4]
    with pytest.raises(SubscriberLagged) as info:
        await subscription.__anext__()
    assert (info.value.missed_from, info.value.missed_to) == (5, 5)


async def test_a_subscriber_gets_the_first_event_of_a_rebased_log() -> None:
    log = EventLog(8)
    subscription = log.subscribe()
    log.rebase(41)
    log.append(EngineStarted(seq=41, time=0.0, pool="inline", capacity=1))
    log.close()
    assert [e.seq async for e in subscription] == [41]


async def test_a_cancelled_read_loses_no_event() -> None:
    log = EventLog(1000)
    subscription = log.subscribe()
    for seq in range(1, 301):
        log.append(_metric(seq))
    got = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        while True:  # reads without a checkpoint until it yields, then is cancelled
            got.append((await subscription.__anext__()).seq)
    assert scope.cancelled_caught
    got.append((await subscription.__anext__()).seq)
    assert got == list(range(1, len(got) + 1))
