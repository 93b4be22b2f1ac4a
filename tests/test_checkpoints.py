"""save_checkpoint / load_checkpoint in the evaluator context: atomic saves, a bounded
folder, retries that continue from the last checkpoint, and clear errors."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, InlinePool, ModelHandle, ModelStatus
from engine import events as ev
from engine._checkpoint import KEEP, CheckpointSpot, use_checkpoints
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


async def test_checkpoints_stay_bounded_and_go_when_their_model_ends(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    root = run.with_name(run.name + ".checkpoints")
    counts: list[int] = []

    def hear(handle: ModelHandle, step: int, _: float) -> None:
        counts.append(len(os.listdir(root / str(handle.model_id))))
        if handle.model_id == 3 and step == 2:
            handle.cancel()

    async with Engine(InlinePool(1), journal=run) as engine:
        engine.listen(hear)
        trained = await engine.submit(space(climb, epochs=6).freeze({"x": 1}))
        failed = await engine.submit(space(climb_sync, fail_at=3).freeze({"x": 2}))
        cancelled = await engine.submit(space(climb).freeze({"x": 3}))
        for handle in (trained, failed, cancelled):
            await handle
            assert not (root / str(handle.model_id)).exists()
    assert [h.status for h in (trained, failed, cancelled)] == [
        ModelStatus.Trained, ModelStatus.Failed, ModelStatus.Interrupted]
    assert max(counts) == KEEP
    assert len(counts) == 6 + 3 + 2
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
