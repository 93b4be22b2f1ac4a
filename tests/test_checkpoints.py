"""save_checkpoint / load_checkpoint in the evaluator context: atomic saves, a bounded
folder, retries that continue from the last checkpoint, and clear errors."""

from __future__ import annotations

import os
import pickle
import sqlite3
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, InlinePool, ModelHandle, ModelStatus
from engine import events as ev
from engine._checkpoint import KEEP, CheckpointSpot, use_checkpoints
from engine.store import RunReader, RunStore
from engine.store._schema import SCHEMA_VERSION, create_schema
from engine.store._write import write_batch
from engine.testing import MockPool
from tests._checkpoint_fixtures import EPOCHS, climb, climb_sync, space, value

pytestmark = pytest.mark.anyio


async def test_a_failed_attempt_is_retried_from_its_last_checkpoint() -> None:
    async with Engine(InlinePool(1), max_retries=1) as engine:
        log = engine.subscribe()
        handle = await engine.submit(space(climb_sync, fail_at=2).freeze({"x": 1}))
        model = await handle
    events = [event async for event in log]
    assert model.status is ModelStatus.Trained
    assert model.metric == 2.0
    assert model.metrics.intermediates == [value(1, s) for s in range(1, EPOCHS + 1)]
    assert [s.resume_step for s in events if isinstance(s, ev.TrainingStarted)] == [0, 2]


@pytest.mark.parametrize("journal", [False, True])
async def test_checkpoints_stay_bounded_and_go_when_their_model_ends(
        tmp_path: Path, journal: bool) -> None:
    """Without a run file a model keeps its KEEP newest checkpoints; with one, those at
    or below its last committed report, and the newer ones until their reports are
    committed (test_pause_race holds the writer back to show it), so there the count
    depends on when batches commit. Either way a model's folder goes when it ends."""
    run = tmp_path / "run.nasrun"
    counts: list[int] = []

    def hear(handle: ModelHandle, step: int, _: float) -> None:
        counts.append(len(os.listdir(root / str(handle.model_id))))
        if handle.model_id == 3 and step == 2:
            handle.cancel()

    async with Engine(InlinePool(1), journal=run if journal else None) as engine:
        assert engine._checkpoints is not None
        root = engine._checkpoints.path
        assert (root == run.with_name(run.name + ".checkpoints")) is journal
        engine.listen(hear)
        trained = await engine.submit(space(climb, epochs=6).freeze({"x": 1}))
        failed = await engine.submit(space(climb_sync, fail_at=3).freeze({"x": 2}))
        cancelled = await engine.submit(space(climb).freeze({"x": 3}))
        for handle in (trained, failed, cancelled):
            await handle
            assert not (root / str(handle.model_id)).exists()
    assert [h.status for h in (trained, failed, cancelled)] == [
        ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Interrupted]
    assert len(counts) == 6 + 3 + 2
    if not journal:
        assert max(counts) == KEEP
    assert not root.exists()


async def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    spot = CheckpointSpot(str(tmp_path / "7"))
    with use_checkpoints(spot):
        e.save_checkpoint({"epoch": 1})
        spot.reported = 1
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            e.save_checkpoint({"epoch": 2, "bad": lambda: None})
    assert sorted(p.stem for p in (tmp_path / "7").iterdir()) == ["step-00000001"]
    with use_checkpoints(CheckpointSpot(str(tmp_path / "7"), resume_step=1)):
        assert e.load_checkpoint() == {"epoch": 1}
    with use_checkpoints(CheckpointSpot(str(tmp_path / "7"), resume_step=0)):
        assert e.load_checkpoint() is None


async def test_checkpoints_outside_an_engine_are_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"save_checkpoint\(\) was called outside a trial"):
        e.save_checkpoint({"epoch": 1})
    with pytest.raises(RuntimeError, match=r"load_checkpoint\(\) was called outside"):
        e.load_checkpoint()
    model = space(climb).freeze({"x": 1})
    with pytest.raises(RuntimeError, match="while an Engine runs it"):
        await model.execute()


async def test_mock_pool_handlers_keep_checkpoints() -> None:
    starts: list[int] = []

    async def handler(model: e.ExecutableModelSpace) -> float:
        state = e.load_checkpoint()
        start = 0 if state is None else int(state)
        starts.append(start)
        for step in range(start + 1, 4):
            e.save_checkpoint(step)
            e.report_intermediate(float(step))
            await anyio.lowlevel.checkpoint()
        return 3.0

    def hear(handle: ModelHandle, step: int, _: float) -> None:
        if step == 1 and handle.attempts == 1:
            handle.pause()

    async with Engine(MockPool(handler)) as engine:
        engine.listen(hear)
        handle = await engine.submit(space().freeze({"x": 1}))
        assert await engine.next_finished() is None  # paused: nothing in flight
        await handle.resume()
        await handle
    assert starts == [0, 1]
    assert handle.model.metrics.intermediates == [1.0, 2.0, 3.0]


async def test_a_schema_2_run_is_read_and_migrated_for_pauses(tmp_path: Path) -> None:
    path = tmp_path / "old.nasrun"
    conn = sqlite3.connect(path, isolation_level=None)
    create_schema(conn, 0.0)
    write_batch(conn, [ev.ModelQueued(seq=1, time=0.0, model_id=1, sample={"x": 1}),
                       ev.TrainingStarted(seq=2, time=0.0, model_id=1, worker="w", attempt=1),
                       ev.MetricReported(seq=3, time=0.0, model_id=1, value=0.5, step=1)],
                {1: None})
    if sqlite3.sqlite_version_info < (3, 35):
        pytest.skip("this SQLite cannot drop a column to make a schema 2 file")
    conn.execute("ALTER TABLE models DROP COLUMN checkpoint")  # as schema 2 made it
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    with RunReader(path) as reader:  # an older file reads as it is
        assert reader.version == 2
        (model,) = reader.models()
    assert (model.checkpoint, model.metrics.intermediates) == (None, [0.5])
    store = await RunStore.open(path)
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        store.append(ev.ModelPaused(seq=4, time=1.0, model_id=1, step=1, checkpoint=1))
        await store.flushed(4)
        tg.cancel_scope.cancel()
    with RunReader(path) as reader:
        assert reader.version == SCHEMA_VERSION
        (model,) = reader.models()
    assert model.status is ModelStatus.Paused
    assert (model.checkpoint, model.metrics.intermediates) == (1, [0.5])
