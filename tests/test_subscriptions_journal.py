"""Subscribers of an engine with a journal read missed events back from it: during the
run and after it, without a gap, and without a connection left open."""

from __future__ import annotations

import gc
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, InlinePool
from engine import events as ev
from engine.store import RunReader
from tests._journal_fixtures import journal_space

pytestmark = pytest.mark.anyio


def journal_events(run: Path) -> list[ev.Event]:
    with RunReader(run) as reader:
        return list(reader.events())


def side_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.parent.iterdir() if p.name != run.name)


async def test_subscribers_read_back_after_the_engine_closed(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    space = journal_space()
    async with Engine(journal=run, event_buffer=4) as engine:
        early, late = engine.subscribe(), engine.subscribe()
        for i in range(10):
            await (await engine.submit(space.freeze({"x": i})))
        first = await early.__anext__()  # a read-back while the journal is open
    # Both read back after the store closed: the one that already read back, and one
    # that never did.
    events = [first, *[x async for x in early]]
    others = [x async for x in late]
    gc.collect()
    assert side_files(run) == []  # no -wal/-shm left by a read-back connection
    expected = journal_events(run)[first.seq - 1:]  # from when they subscribed
    assert [x.seq for x in events] == [x.seq for x in expected]
    assert events == expected == others


async def _slow_reader(subscription: e.Subscription, seen: list[int], every: int) -> None:
    async for event in subscription:
        seen.append(event.seq)
        if event.seq % every == 0:
            await anyio.sleep(0.001)  # falls behind the engine, reads back


async def test_read_backs_racing_the_writer_miss_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    space = journal_space()
    seen: list[list[int]] = [[], [], []]
    engine = Engine(InlinePool(4), journal=run, event_buffer=8, queue_size=16)
    async with anyio.create_task_group() as tg:
        for i, got in enumerate(seen):
            tg.start_soon(_slow_reader, engine.subscribe(), got, 3 + 4 * i)
        async with engine:
            for i in range(150):
                await engine.submit(space.freeze({"x": i % 20}))
    assert side_files(run) == []
    expected = [x.seq for x in journal_events(run)]
    assert len(expected) > 150 * 4
    for got in seen:
        assert got == expected
