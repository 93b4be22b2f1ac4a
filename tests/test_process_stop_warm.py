"""A ProcessPool trial that its strategy stops or pauses ends at its next report and
keeps its worker process (torch imported, warm) for the next model; one that does not
report again within ``HALT_GRACE`` has its worker killed, as do a cancel and a timeout.
"""

from __future__ import annotations

import pytest

import engine.workers.process as process
from engine import Engine, ModelStatus, ProcessPool
from engine import events as ev
from tests._stop_warm_fixtures import at_step, go_quiet, keep_reporting, pause_me, pid, space

pytestmark = pytest.mark.anyio


def workers(events: list[ev.Event]) -> tuple[list[int | None], list[ev.WorkerDied]]:
    started = [e.pid for e in events if isinstance(e, ev.WorkerStarted)]
    return started, [e for e in events if isinstance(e, ev.WorkerDied)]


async def test_a_stopped_model_keeps_its_worker_for_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "HALT_GRACE", 60.0)  # a kill would not come in time
    engine = Engine(ProcessPool(1, prefetch=0))
    log = engine.subscribe()  # before it starts: its workers' events too
    async with engine:
        engine.listen(at_step(2, "stop"))
        stopped = await engine.submit(space(keep_reporting).freeze({"x": 1}))
        await stopped
        following = await engine.submit(space(pid).freeze({"x": 2}))
        await following
    events = [event async for event in log]
    started, died = workers(events)
    assert died == []
    assert len(started) == 1
    assert following.status is ModelStatus.Trained
    assert following.model.metric == float(started[0])  # the same process, still alive
    # The stop's result and events are the ones a killed worker gives.
    assert stopped.status is ModelStatus.Trained
    assert stopped.model.metrics.intermediates == [1.0, 2.0]
    assert stopped.model.metrics.stopped_at == 2
    trained = [e for e in events if isinstance(e, ev.ModelTrained)
               and e.model_id == stopped.model_id]
    assert [(e.final, e.stopped_at) for e in trained] == [(2.0, 2)]


async def test_a_paused_model_keeps_its_worker_and_resumes_from_its_checkpoint(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "HALT_GRACE", 60.0)
    engine = Engine(ProcessPool(1, prefetch=0))
    log = engine.subscribe()  # before it starts: its workers' events too
    async with engine:
        watch = engine.subscribe()
        engine.listen(at_step(2, "pause"))
        paused = await engine.submit(space(pause_me).freeze({"x": 1}))
        async for event in watch:
            if isinstance(event, ev.ModelPaused):
                break
        following = await engine.submit(space(pid).freeze({"x": 2}))
        await following
        await paused.resume()
        await paused
    events = [event async for event in log]
    started, died = workers(events)
    assert died == []
    assert following.model.metric == float(started[0])
    assert paused.status is ModelStatus.Trained
    assert paused.model.metrics.intermediates == [1.0, 2.0, 3.0, 4.0]
    assert paused.model.metric == 2.0  # continued from the checkpoint of epoch 2
    pause = next(e for e in events if isinstance(e, ev.ModelPaused))
    assert (pause.step, pause.checkpoint) == (2, 2)
    assert [e.resume_step for e in events if isinstance(e, ev.TrainingStarted)
            and e.model_id == paused.model_id] == [0, 2]


async def test_a_stopped_trial_that_never_reports_again_is_killed_after_the_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "HALT_GRACE", 0.2)
    engine = Engine(ProcessPool(1, prefetch=0))
    log = engine.subscribe()  # before it starts: its workers' events too
    async with engine:
        engine.listen(at_step(2, "stop"))
        stopped = await engine.submit(space(go_quiet).freeze({"x": 1}))
        await stopped
        following = await engine.submit(space(pid).freeze({"x": 2}))
        await following
    events = [event async for event in log]
    started, died = workers(events)
    assert [d.pid for d in died] == started[:1]
    assert "was stopped" in died[0].reason
    assert len(started) == 2
    assert following.model.metric == float(started[1])  # on the replacement
    assert stopped.status is ModelStatus.Trained
    assert stopped.model.metrics.stopped_at == 2


@pytest.mark.parametrize("ending", ["cancel", "timeout"])
async def test_a_cancel_or_a_timeout_still_kills_the_worker(
        monkeypatch: pytest.MonkeyPatch, ending: str) -> None:
    monkeypatch.setattr(process, "HALT_GRACE", 60.0)  # a halt would keep the worker
    timeout = 0.5 if ending == "timeout" else None
    engine = Engine(ProcessPool(1, prefetch=0), trial_timeout=timeout)
    log = engine.subscribe()  # before it starts: its workers' events too
    async with engine:
        if ending == "cancel":
            engine.listen(at_step(2, "cancel"))
        ended = await engine.submit(space(keep_reporting).freeze({"x": 1}))
        await ended
    events = [event async for event in log]
    started, died = workers(events)
    assert [d.pid for d in died] == started[:1]
    assert ended.status is ModelStatus.Interrupted
    reason = next(e.reason for e in events if isinstance(e, ev.ModelInterrupted))
    assert reason.value == ("cancelled" if ending == "cancel" else "timeout")
