"""Leaving the engine cannot stop halfway: a failed journal writer, an unstorable sample,
a cancellation while the pool starts."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from anyio.abc import TaskStatus

import engine as e
from engine import Engine, InlinePool, ModelStatus, ProcessPool
from engine import events as ev
from tests.process_fixtures import children, sleep_for
from tests.process_fixtures import model as process_model

pytestmark = pytest.mark.anyio


class Wide(e.BaseModelSpace):
    def __init__(self) -> None:
        self.name = e.ensure_frozen(e.Categorical(["a" * 200_000, "b" * 200_000], label="name"))


def score(model: Wide) -> float:
    return float(len(model.name))


async def collect(engine: Engine, into: list[ev.Event], *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    subscription = engine.subscribe()
    task_status.started()
    async for event in subscription:
        into.append(event)


async def fill_the_disk(engine: Engine) -> None:
    """Let the journal's file grow no more (SQLite's own "database or disk is full")."""
    store = engine._journal.store  # type: ignore[union-attr]
    await store.flushed(engine._log.next_seq - 1)  # all written: the writer is idle
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")


async def run_until_the_disk_is_full(run: Path, events: list[ev.Event],
                                     handles: list[e.ModelHandle]) -> None:
    async with anyio.create_task_group() as tg:
        engine = Engine(ProcessPool(1), journal=run)
        await tg.start(collect, engine, events)
        async with engine:
            handles.append(await engine.submit(process_model(sleep_for, seconds=60)))
            await fill_the_disk(engine)
            space = e.SimplifiedModelSpace.from_model(Wide(), e.FunctionEvaluator(score))
            handles.append(await engine.submit(space.freeze({"name": "a" * 200_000})))
            await anyio.sleep_forever()  # cancelled when the writer fails
        raise AssertionError("the writer's error must come out of the block")


async def test_a_failed_journal_writer_reaches_the_caller_and_cleanup_completes(
        tmp_path: Path) -> None:
    events: list[ev.Event] = []
    handles: list[e.ModelHandle] = []
    with pytest.raises(ExceptionGroup) as caught:  # the test's own task group's
        await run_until_the_disk_is_full(tmp_path / "run.nasrun", events, handles)
    [error] = caught.value.exceptions  # the writer's own error, not RunStoreClosed
    assert isinstance(error, sqlite3.OperationalError)  # as the writer raised it
    assert isinstance(events[-1], ev.EngineStopped)
    assert events[-1].reason == "cancelled"
    assert [h.status for h in handles] == [ModelStatus.Interrupted] * 2
    assert all(h.done for h in handles)
    assert children() == []


class Raw(e.BaseModelSpace):
    def __init__(self) -> None:
        self.k = e.ensure_frozen(e.Categorical(np.arange(3), label="kernel"))


def raw_score(model: Raw) -> float:
    return float(model.k)


async def test_a_sample_the_journal_cannot_store_is_refused_at_submit(tmp_path: Path) -> None:
    raw = e.RawFormatModelSpace(Raw(), e.FunctionEvaluator(raw_score))
    model = raw.freeze({"kernel": np.int64(1)})
    events: list[ev.Event] = []
    async with anyio.create_task_group() as tg:
        engine = Engine(journal=tmp_path / "run.nasrun")
        await tg.start(collect, engine, events)
        async with engine:
            with pytest.raises(TypeError, match=r"'kernel'.*numpy"):
                await engine.submit(model)
            assert engine.handles() == []
            assert engine.budget_left is None
    assert [x.kind for x in events] == ["worker_started", "engine_started", "engine_stopped"]
    assert events[-1].reason == "finished"  # type: ignore[union-attr]


async def test_without_a_journal_any_sample_is_accepted() -> None:
    raw = e.RawFormatModelSpace(Raw(), e.FunctionEvaluator(raw_score))
    async with Engine() as engine:
        done = await (await engine.submit(raw.freeze({"kernel": np.int64(2)})))
    assert done.metric == 2.0


class SlowStart(InlinePool):
    """Announces its worker, then takes its time to be ready."""

    def __init__(self, announced: anyio.Event) -> None:
        super().__init__(1)
        self._announced = announced

    async def serve(self, monitor: Any, *, task_status: TaskStatus[None]) -> None:
        monitor.worker_started("slow-0", None, ())
        self._announced.set()
        await anyio.sleep_forever()


async def test_cancelled_while_the_pool_starts_ends_every_subscription() -> None:
    announced, events = anyio.Event(), []
    async with anyio.create_task_group() as tg:
        engine = Engine(SlowStart(announced))
        await tg.start(collect, engine, events)
        scope = await tg.start(_enter, engine)
        await announced.wait()
        scope.cancel()
    assert [x.kind for x in events] == ["worker_started", "engine_stopped"]
    assert events[-1].reason == "cancelled"  # type: ignore[union-attr]


async def _enter(engine: Engine, *, task_status: TaskStatus[anyio.CancelScope]) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        async with engine:
            raise AssertionError("the pool never starts")
