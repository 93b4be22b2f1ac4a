"""``handle.pause()`` and ``await handle.resume()``: a paused model frees its worker,
keeps its intermediates and checkpoint, and continues from that checkpoint."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import TaskStatus

from engine import Engine, EngineClosed, InlinePool, ModelHandle, ModelStatus
from engine import events as ev
from engine._progress import Progress
from engine.cli import main
from engine.results import open_run
from engine.space import ExecutableModelSpace
from engine.store import RunReader
from engine.testing import MockPool
from engine.workers._base import Trial, TrialOutput
from strategies import RandomSearch, search
from tests._checkpoint_fixtures import EPOCHS, idle, space, value

pytestmark = pytest.mark.anyio


def pause_at(engine: Engine, step: int, only: set[int] | None = None) -> None:
    """Pause every model (of ``only``) once, when it reports ``step`` (as a strategy
    would)."""
    paused: set[int] = set()

    def hear(handle: ModelHandle, at: int, _: float) -> None:
        if only is not None and handle.model_id not in only:
            return
        if at == step and handle.model_id not in paused:
            paused.add(handle.model_id)
            handle.pause()

    engine.listen(hear)


async def until(events: ev.EventBase | object, kind: type[ev.EventBase],
                *model_ids: int) -> None:
    """Read ``events`` (a subscription) up to the first ``kind`` event of each of
    ``model_ids``, in whatever order they come (models running side by side pause in
    any order)."""
    waiting = set(model_ids)
    async for event in events:  # type: ignore[attr-defined]
        if isinstance(event, kind):
            waiting.discard(getattr(event, "model_id", -1))
            if not waiting:
                return


def kinds(events: list[ev.Event], model_id: int) -> list[str]:
    return [e.kind for e in events if getattr(e, "model_id", None) == model_id]


async def test_a_paused_model_frees_its_worker_and_resumes_from_its_checkpoint() -> None:
    async with Engine(InlinePool(1)) as engine:
        log = engine.subscribe()
        watch = engine.subscribe()
        pause_at(engine, 2)
        first = await engine.submit(space().freeze({"x": 1}))
        await until(watch, ev.ModelPaused, first.model_id)
        assert first.status is ModelStatus.Paused
        assert engine.in_flight == 0
        assert first.model.metrics.intermediates == [value(1, 1), value(1, 2)]
        # Its worker is free: another model trains to its end meanwhile (pausing it at
        # step 2 too, then resuming it).
        other = await engine.submit(space().freeze({"x": 2}))
        await until(watch, ev.ModelPaused, other.model_id)
        await other.resume()
        await first.resume()
        assert first.status is not ModelStatus.Paused
        assert engine.in_flight >= 1  # it counts again (the other may have ended)
        model = await first
        await other
    events = [event async for event in log]
    assert model.status is ModelStatus.Trained
    assert model.metrics.intermediates == [value(1, s) for s in range(1, EPOCHS + 1)]
    assert model.metric == 2.0  # load_checkpoint gave it the state of epoch 2
    assert first.attempts == 2
    assert kinds(events, first.model_id) == [
        "queued", "training", "metric", "metric", "paused", "resumed", "training", "metric",
        "metric", "trained"]
    paused = next(e for e in events if isinstance(e, ev.ModelPaused))
    assert (paused.step, paused.checkpoint) == (2, 2)
    starts = [e for e in events if isinstance(e, ev.TrainingStarted)
              and e.model_id == first.model_id]
    assert [s.resume_step for s in starts] == [0, 2]
    steps = [e.step for e in events if isinstance(e, ev.MetricReported)
             and e.model_id == first.model_id]
    assert steps == [1, 2, 3, 4]


async def test_await_handle_waits_through_the_pause() -> None:
    got: list[ModelStatus] = []

    async def waiter(handle: ModelHandle, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        got.append((await handle).status)

    async with Engine(InlinePool(1)) as engine:
        watch = engine.subscribe()
        pause_at(engine, 1)
        handle = await engine.submit(space().freeze({"x": 3}))
        async with anyio.create_task_group() as tg:
            await tg.start(waiter, handle)
            await until(watch, ev.ModelPaused, handle.model_id)
            await wait_all_tasks_blocked()
            assert got == []
            assert not handle.done
            await handle.resume()
    assert got == [ModelStatus.Trained]


async def test_a_queued_model_can_be_paused_and_resumed() -> None:
    async with Engine(InlinePool(1), queue_size=2) as engine:
        watch = engine.subscribe()
        busy = await engine.submit(space().freeze({"x": 1}))
        queued = await engine.submit(space().freeze({"x": 2}))
        queued.pause()  # still waiting for the one worker
        assert queued.status is ModelStatus.Paused
        assert engine.in_flight == 1
        queued.pause()  # no effect the second time
        await busy
        assert queued.status is ModelStatus.Paused  # its runner skipped it
        await queued.resume()
        assert (await queued).status is ModelStatus.Trained
        assert queued.model.metric == 0.0  # it had not started: nothing to continue
        assert queued.attempts == 1
        del watch


async def test_stop_and_cancel_end_a_paused_model() -> None:
    async with Engine(InlinePool(2)) as engine:
        watch = engine.subscribe()
        pause_at(engine, 2)
        stopped = await engine.submit(space().freeze({"x": 1}))
        cancelled = await engine.submit(space().freeze({"x": 2}))
        await until(watch, ev.ModelPaused, stopped.model_id, cancelled.model_id)
        stopped.stop()
        cancelled.cancel()
        assert (await stopped).status is ModelStatus.Trained
        assert stopped.model.metrics.stopped_at == 2
        assert stopped.model.metric == value(1, 2)
        assert (await cancelled).status is ModelStatus.Interrupted
        assert engine.in_flight == 0
        with pytest.raises(ValueError, match="ended \\(trained\\): only a paused model"):
            await stopped.resume()


async def test_the_engine_ends_with_paused_models_still_paused(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    got: list[ModelStatus] = []

    async def waiter(handle: ModelHandle) -> None:
        got.append((await handle).status)

    async with anyio.create_task_group() as tg:
        async with Engine(InlinePool(1), journal=run) as engine:
            watch = engine.subscribe()
            pause_at(engine, 2)
            handle = await engine.submit(space().freeze({"x": 4}))
            tg.start_soon(waiter, handle)
            await until(watch, ev.ModelPaused, handle.model_id)
            # The block ends while it is paused: nothing is in flight, so the engine
            # stops, and hands the paused model to whoever awaits it.
    assert got == [ModelStatus.Paused]
    assert handle.done
    folder = run.with_name(run.name + ".checkpoints") / str(handle.model_id)
    # The two newest checkpoints (.pt when torch is imported in this process, else .pkl).
    assert sorted(p.stem for p in folder.iterdir()) == ["step-00000001", "step-00000002"]
    with RunReader(run) as reader:
        (stored,) = reader.models()
    assert stored.status is ModelStatus.Paused
    assert (stored.checkpoint, stored.metrics.intermediates) == (2, [value(4, 1), value(4, 2)])
    with pytest.raises(EngineClosed, match="not running"):
        await handle.resume()
    with open_run(run) as results:
        record = results.model(handle.model_id)
    assert record.status is ModelStatus.Paused
    assert record.curve == [(1, value(4, 1)), (2, value(4, 2))]


async def test_cancelled_resume_queues_nothing() -> None:
    async with Engine(InlinePool(1), queue_size=1) as engine:
        watch = engine.subscribe()
        pause_at(engine, 1, only={1})
        paused = await engine.submit(space().freeze({"x": 1}))
        await until(watch, ev.ModelPaused, paused.model_id)
        busy = await engine.submit(space(idle).freeze({"x": 2}))
        await until(watch, ev.TrainingStarted, busy.model_id)
        waiting = await engine.submit(space().freeze({"x": 3}))  # the queue is full now
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(paused.resume)
                await wait_all_tasks_blocked()
                assert paused.status is ModelStatus.Paused  # it waits for a place
                scope.cancel()
        assert paused.status is ModelStatus.Paused
        assert engine.in_flight == 2
        busy.cancel()
        await waiting
        await paused.resume()
        assert (await paused).metric == 1.0


async def test_show_lists_paused_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run.nasrun"
    async with Engine(InlinePool(1), journal=run) as engine:
        watch = engine.subscribe()
        pause_at(engine, 2)
        handle = await engine.submit(space().freeze({"x": 4}))
        await until(watch, ev.ModelPaused, handle.model_id)
    assert main(["show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "models  1: paused 1" in shown
    assert ("paused  1 models, resumable by a later run of this file: 1 at step 2 "
            "(checkpoint of step 2)") in shown
    assert main(["show", str(run), "--model", "1"]) == 0
    shown = capsys.readouterr().out
    assert "reason  paused at step 2" in shown
    assert "checkpoint  step 2 (a resume continues from it)" in shown


async def test_results_and_progress_follow_a_pause(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    progress = Progress()
    async with Engine(InlinePool(1), journal=run) as engine:
        log = engine.subscribe()
        watch = engine.subscribe()
        pause_at(engine, 2)
        handle = await engine.submit(space().freeze({"x": 2}))
        await until(watch, ev.ModelPaused, handle.model_id)
        async for event in log:
            progress.update(event)
            if isinstance(event, ev.ModelPaused):
                break
        assert "| 1 paused |" in progress.line()
        assert progress.running == 0
        await handle.resume()
        await handle
    with open_run(run) as results:
        record = results.model(handle.model_id)
    assert record.status is ModelStatus.Trained
    assert record.curve == [(s, value(2, s)) for s in range(1, EPOCHS + 1)]


async def test_a_search_resumed_with_a_paused_model_ends(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    async with Engine(InlinePool(1), journal=run) as engine:
        watch = engine.subscribe()
        pause_at(engine, 2)
        handle = await engine.submit(space().freeze({"x": 1}))
        await until(watch, ev.ModelPaused, handle.model_id)
    # A strategy that does not pause models leaves it paused, and does not wait for it.
    async with Engine(InlinePool(1), journal=run, max_trials=3) as engine:
        await search(space(), RandomSearch(seed=0), engine)
        statuses = sorted(h.status.value for h in engine.handles())
    assert statuses == ["paused", "trained", "trained"]


class Replay(MockPool):
    """A pool that runs no training code, like a simulation: it reports steps
    ``trial.resume_step + 1`` to 4, so a resumed model continues at any step."""

    resumes_from_step = True

    def __init__(self) -> None:
        super().__init__(lambda _: None)
        self.starts: list[int] = []

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        resume_step: int = getattr(trial, "resume_step", 0)
        self.starts.append(resume_step)
        trial.started("replay")
        for step in range(resume_step + 1, 5):
            trial.intermediate(float(step))
            await anyio.lowlevel.checkpoint()
        trial.final(4.0)
        return TrialOutput()


async def test_a_pool_without_training_code_continues_from_the_step_reached() -> None:
    pool = Replay()
    async with Engine(pool) as engine:
        pause_at(engine, 3)
        handle = await engine.submit(space().freeze({"x": 1}))
        assert await engine.next_finished() is None  # paused at step 3, no checkpoint
        assert handle.model.metrics.intermediates == [1.0, 2.0, 3.0]
        await handle.resume()
        await handle
    assert pool.starts == [0, 3]
    assert handle.model.metrics.intermediates == [1.0, 2.0, 3.0, 4.0]
