from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from engine import events as ev
from engine.store import RunFileError, RunReader
from tests._journal_fixtures import journal_slow, journal_space

pytestmark = pytest.mark.anyio


async def read_all(sub: e.Subscription) -> list[ev.Event]:
    return [x async for x in sub]


async def test_journal_holds_every_event_and_model(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    space = journal_space()
    engine = Engine(InlinePool(2), journal=run)
    sub = engine.subscribe()
    async with engine:
        assert engine.journal_path == run
        handles = [await engine.submit(space.freeze({"x": i})) for i in range(5)]
        first = await handles[0]
        with RunReader(run) as reader:  # resolved only once its final event is committed
            kinds = [type(x).__name__ for x in reader.events() if
                     isinstance(x, ev.ModelEvent) and x.model_id == handles[0].model_id]
        assert kinds[-1] == "ModelTrained"
        assert first.metric == 0.0
    seen = await read_all(sub)
    with RunReader(run) as reader:
        stored = list(reader.events())
        models = reader.models()
    assert stored == seen
    assert isinstance(seen[0], ev.WorkerStarted)
    started = next(x for x in seen if isinstance(x, ev.EngineStarted))
    assert started.journal == str(run)
    assert not started.resumed
    assert [m.status for m in models] == [ModelStatus.Trained] * 5
    assert [m.metrics.final for m in models] == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_resume_trains_only_what_was_unfinished(tmp_path: Path) -> None:
    run, gate = tmp_path / "run.nasrun", tmp_path / "gate"
    space = journal_space(journal_slow, gate=str(gate))
    with anyio.CancelScope() as scope:
        async with Engine(InlinePool(1), journal=run, queue_size=4) as engine:
            done = await engine.submit(journal_space().freeze({"x": 9}))
            await done
            for i in range(3):
                await engine.submit(space.freeze({"x": i}))
            async for event in engine.subscribe():
                if isinstance(event, ev.MetricReported):
                    scope.cancel()
    with RunReader(run) as reader:
        before = reader.models()
        last_seq = reader.last_seq()
    assert [m.status for m in before] == [ModelStatus.Trained] + [ModelStatus.Interrupted] * 3
    gate.touch()  # the resumed trainings now finish
    engine = Engine(InlinePool(2), journal=run, max_trials=5)
    sub = engine.subscribe()
    async with engine:
        handles = engine.handles()
        assert [h.model_id for h in handles] == [1, 2, 3, 4]
        assert handles[0].done
        assert handles[0].model.metric == 9.0
        assert engine.budget_left == 1
        new = await engine.submit(journal_space().freeze({"x": 7}))
        assert new.model_id == 5
    events = await read_all(sub)
    assert events[0].seq == last_seq + 1
    assert [x.seq for x in events] == list(range(last_seq + 1, last_seq + 1 + len(events)))
    started = next(x for x in events if isinstance(x, ev.EngineStarted))
    assert started.resumed
    trained = {x.model_id: x.final for x in events if isinstance(x, ev.ModelTrained)}
    assert trained == {2: 0.0, 3: 1.0, 4: 2.0, 5: 7.0}  # model 1 finished before: not trained again
    attempts = {x.model_id: x.attempt for x in events if isinstance(x, ev.TrainingStarted)}
    assert attempts[2] == 2  # the interrupted attempt counts
    with RunReader(run) as reader:
        assert [m.status for m in reader.models()] == [ModelStatus.Trained] * 5


async def test_raw_format_model_is_not_resumable(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    raw = e.RawFormatModelSpace(*journal_space(journal_slow).model_and_evaluator())
    with anyio.CancelScope() as scope:
        async with Engine(journal=run) as engine:
            await engine.submit(raw.freeze({"x": 1}))
            async for event in engine.subscribe():
                if isinstance(event, ev.MetricReported):
                    scope.cancel()
    async with Engine(journal=run) as engine:
        (handle,) = engine.handles()
        model = await handle
    assert model.status is ModelStatus.Failed
    with RunReader(run) as reader:
        failed = [x for x in reader.events() if isinstance(x, ev.ModelFailed)]
    assert failed[0].error_type == "NotResumable"
    assert "raw-format" in failed[0].message


async def test_lagging_subscriber_reads_back_from_the_journal(tmp_path: Path) -> None:
    space = journal_space()
    async with Engine(journal=tmp_path / "run.nasrun", event_buffer=4) as engine:
        sub = engine.subscribe()
        for i in range(10):
            await (await engine.submit(space.freeze({"x": i})))
    events = await read_all(sub)
    assert len(events) > 4 * 10
    assert [x.seq for x in events] == list(range(events[0].seq, events[-1].seq + 1))


async def test_default_journal_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with Engine(journal=True) as engine:
        path = engine.journal_path
    assert path is not None
    assert path.parent == tmp_path / "runs"
    assert path.name.startswith("run-")
    assert path.suffix == ".nasrun"


async def test_bad_journal_leaves_nothing_running(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-run.nasrun"
    bad.write_bytes(b"hello, this is not SQLite" * 10)
    before = bad.read_bytes()
    engine = Engine(journal=bad)
    with pytest.raises(RunFileError, match="not an SQLite database"):
        async with engine:
            pass
    assert bad.read_bytes() == before
    with pytest.raises(e.EngineClosed):
        await engine.submit(journal_space().freeze({"x": 1}))


async def test_journal_in_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match="does not exist"):
        async with Engine(journal=tmp_path / "nope" / "run.nasrun"):
            pass


async def test_engine_flushes_final_events_before_stopping(tmp_path: Path) -> None:
    run = tmp_path / "run.nasrun"
    started = time.time()
    async with Engine(InlinePool(2), journal=run) as engine:
        for i in range(20):
            await engine.submit(journal_space().freeze({"x": i}))
    with RunReader(run) as reader:
        last = reader.last_engine_event()
        assert [m.status for m in reader.models()] == [ModelStatus.Trained] * 20
    assert isinstance(last, ev.EngineStopped)
    assert last.time >= started
