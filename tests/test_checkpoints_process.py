"""Checkpoints in ProcessPool workers: a model whose worker died is retried from its
last checkpoint (torch state dicts and optimizer state), and a paused model's worker is
freed and the model continues from its checkpoint on another worker."""

from __future__ import annotations

import pytest

from engine import Engine, ModelHandle, ModelStatus, ProcessPool
from engine import events as ev
from tests._checkpoint_fixtures import EPOCHS, climb_sync, fit, space, value

pytestmark = pytest.mark.anyio


async def test_a_model_whose_worker_died_continues_from_its_torch_checkpoint() -> None:
    async with Engine(ProcessPool(2, prefetch=0), max_retries=1) as engine:
        log = engine.subscribe()
        died = await engine.submit(space(fit, die_at=2).freeze({"x": 1}))
        whole = await engine.submit(space(fit).freeze({"x": 1}))
        await died
        await whole
        root = engine._checkpoints
    events = [event async for event in log]
    assert died.status is ModelStatus.Trained
    assert died.attempts == 2
    assert any(isinstance(e, ev.ModelRetrying) and "WorkerLost" in e.reason for e in events)
    starts = [e.resume_step for e in events
              if isinstance(e, ev.TrainingStarted) and e.model_id == died.model_id]
    assert starts == [0, 2]
    assert died.model.metric == 2.0  # it loaded the checkpoint of epoch 2
    # Model and optimizer state came back whole: the same curve as uninterrupted.
    assert len(died.model.metrics.intermediates) == EPOCHS
    assert died.model.metrics.intermediates == whole.model.metrics.intermediates
    assert root is not None
    assert not root.path.exists()


async def test_a_paused_model_frees_its_worker_process() -> None:
    paused_once: set[int] = set()

    def hear(handle: ModelHandle, step: int, _: float) -> None:
        if step == 2 and handle.model_id == 1 and handle.model_id not in paused_once:
            paused_once.add(handle.model_id)
            handle.pause()

    async with Engine(ProcessPool(1, prefetch=0)) as engine:
        log = engine.subscribe()
        watch = engine.subscribe()
        engine.listen(hear)
        handle = await engine.submit(space(climb_sync).freeze({"x": 2}))
        async for event in watch:
            if isinstance(event, ev.ModelPaused):
                break
        assert engine.in_flight == 0
        # Its worker is free: another model trains on it.
        other = await engine.submit(space(climb_sync).freeze({"x": 3}))
        assert (await other).status is ModelStatus.Trained
        await handle.resume()
        await handle
    events = [event async for event in log]
    assert handle.status is ModelStatus.Trained
    assert handle.model.metrics.intermediates == [value(2, s) for s in range(1, EPOCHS + 1)]
    paused = next(e for e in events if isinstance(e, ev.ModelPaused))
    # The worker trains on until the halt reaches it, saving checkpoints past step 2;
    # the engine keeps step 2's all the same (tests/test_pause_race.py forces that
    # race), and the resume continues from it, as climb_sync's result (the step it
    # started from) says.
    assert (paused.step, paused.checkpoint) == (2, 2)
    assert handle.model.metric == 2.0
    died = [e for e in events if isinstance(e, ev.WorkerDied)]
    assert died == []  # the paused trial ended at a report: its worker was kept
