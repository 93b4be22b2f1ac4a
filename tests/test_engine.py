from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskStatus

import engine as e
from engine import Engine, InlinePool, ModelStatus
from engine import events as ev

pytestmark = pytest.mark.anyio


class Toy(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(20)), label="x"))


def score(model: Toy) -> float:
    e.report_intermediate(model.x / 100)
    return float(model.x)


def boom(model: Toy) -> float:
    raise ValueError(f"boom {model.x}")


_flaky_calls: dict[int, int] = defaultdict(int)
_flaky_keys = itertools.count()


def flaky(model: Toy, key: int) -> float:
    _flaky_calls[key] += 1
    if _flaky_calls[key] == 1:
        raise RuntimeError("first attempt fails")
    return 1.0


def slow(model: Toy) -> float:
    while True:  # a training loop that reports: stops at the next report once cancelled
        e.report_intermediate(0.0)
        time.sleep(0.005)


async def async_score(model: Toy) -> float:
    await anyio.lowlevel.checkpoint()
    e.report_intermediate(0.5)
    e.report_final(model.x * 2)
    return -1.0


async def async_forever(model: Toy) -> float:
    await anyio.sleep_forever()
    raise AssertionError


def invalid(model: Toy) -> float:
    raise e.SampleValidationError("this architecture cannot be built", ["model", "x"])


def no_metric(model: Toy) -> None:
    return None


def space(fn: Any = score, **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Toy(), e.FunctionEvaluator(fn, **kwargs))


async def collect(engine: Engine, into: list[ev.Event], *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    subscription = engine.subscribe()
    task_status.started()
    async for event in subscription:
        into.append(event)


def by_model(events: list[ev.Event]) -> dict[int, list[str]]:
    kinds: dict[int, list[str]] = defaultdict(list)
    for event in events:
        if isinstance(event, ev.ModelEvent):
            kinds[event.model_id].append(type(event).__struct_config__.tag)  # type: ignore[arg-type]
    return kinds


async def run_models(engine: Engine, models: list[e.ExecutableModelSpace]) -> list[ev.Event]:
    events: list[ev.Event] = []
    async with anyio.create_task_group() as tg:
        await tg.start(collect, engine, events)
        async with engine:
            handles = [await engine.submit(m) for m in models]
            for h in handles:
                await h
    return events


async def test_events_in_order_and_contiguous() -> None:
    s = space()
    events = await run_models(Engine(InlinePool(2)), [s.freeze({"x": i}) for i in range(6)])
    assert [x.seq for x in events] == list(range(1, len(events) + 1))
    assert isinstance(events[0], ev.WorkerStarted)
    assert isinstance(events[-1], ev.EngineStopped)
    assert events[-1].reason == "finished"
    for kinds in by_model(events).values():
        assert kinds == ["queued", "training", "metric", "trained"]
    trained = [x for x in events if isinstance(x, ev.ModelTrained)]
    assert sorted(x.final for x in trained) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    times = [x.time for x in events]
    assert times == sorted(times)


async def test_events_round_trip_through_codecs() -> None:
    events = await run_models(Engine(), [space(boom).freeze({"x": 1})])
    for event in events:
        assert ev.decode_json(ev.encode_json(event)) == event
        assert ev.decode_msgpack(ev.encode_msgpack(event)) == event


async def test_failed_with_traceback() -> None:
    async with Engine() as engine:
        handle = await engine.submit(space(boom).freeze({"x": 3}))
        events = engine.subscribe()
        model = await handle
    assert model.status is ModelStatus.Failed
    assert model.metric is None
    failed = [x async for x in events if isinstance(x, ev.ModelFailed)]
    assert failed[0].error_type == "ValueError"
    assert failed[0].message == "boom 3"
    assert "in boom" in failed[0].traceback
    assert failed[0].attempt == 1


async def test_retry_then_success() -> None:
    key = next(_flaky_keys)
    events = await run_models(Engine(max_retries=2), [space(flaky, key=key).freeze({"x": 1})])
    assert by_model(events)[1] == ["queued", "training", "retrying", "training", "trained"]
    retrying = next(x for x in events if isinstance(x, ev.ModelRetrying))
    assert retrying.attempt == 2
    assert retrying.reason == "RuntimeError: first attempt fails"
    training = [x.attempt for x in events if isinstance(x, ev.TrainingStarted)]
    assert training == [1, 2]


async def test_retries_run_out() -> None:
    events = await run_models(Engine(max_retries=1), [space(boom).freeze({"x": 1})])
    assert by_model(events)[1] == ["queued", "training", "retrying", "training", "failed"]


async def test_timeout_interrupts() -> None:
    for fn in (slow, async_forever):
        events = await run_models(Engine(trial_timeout=0.2), [space(fn).freeze({"x": 1})])
        interrupted = [x for x in events if isinstance(x, ev.ModelInterrupted)]
        assert [x.reason for x in interrupted] == [ev.InterruptReason.timeout]
        assert by_model(events)[1][-1] == "interrupted"


async def test_cancel_running_and_queued_handles() -> None:
    s = space(slow)
    async with Engine(InlinePool(1), queue_size=2) as engine:
        running = await engine.submit(s.freeze({"x": 1}))
        queued = await engine.submit(s.freeze({"x": 2}))
        events = engine.subscribe()
        async for event in events:  # wait until the first one really trains
            if isinstance(event, ev.MetricReported):
                break
        queued.cancel()
        running.cancel()
        assert (await queued).status is ModelStatus.Interrupted
        assert (await running).status is ModelStatus.Interrupted
        running.cancel()  # no effect once completed
    reasons = [x.reason async for x in events if isinstance(x, ev.ModelInterrupted)]
    assert reasons == [ev.InterruptReason.cancelled] * 2


async def test_invalid_from_execute() -> None:
    events = await run_models(Engine(), [space(invalid).freeze({"x": 1})])
    bad = next(x for x in events if isinstance(x, ev.ModelInvalid))
    assert bad.paths == ("model", "x")
    assert bad.message == "this architecture cannot be built"


async def test_missing_final_metric_fails() -> None:
    events = await run_models(Engine(max_retries=3), [space(no_metric).freeze({"x": 1})])
    failed = next(x for x in events if isinstance(x, ev.ModelFailed))
    assert failed.error_type == "NoFinalMetric"
    assert by_model(events)[1] == ["queued", "training", "failed"]


async def test_async_evaluator_final_wins() -> None:
    async with Engine(InlinePool(2)) as engine:
        model = await (await engine.submit(space(async_score).freeze({"x": 4})))
    assert model.metric == 8.0
    assert model.metrics.intermediates == [0.5]


async def test_raw_format_runs_inline() -> None:
    raw = e.RawFormatModelSpace(Toy(), e.FunctionEvaluator(score))
    async with Engine() as engine:
        model = await (await engine.submit(raw.freeze({"x": 7})))
    assert model.metric == 7.0


async def test_max_trials_exact() -> None:
    s = space()
    async with Engine(InlinePool(2), max_trials=3) as engine:
        for i in range(3):
            await engine.submit(s.freeze({"x": i}))
        assert engine.budget_left == 0
        assert engine.exhausted
        with pytest.raises(e.BudgetExhausted, match="max_trials=3"):
            await engine.submit(s.freeze({"x": 9}))
    assert len(engine.handles()) == 3
    assert all(h.status is ModelStatus.Trained for h in engine.handles())


async def test_max_duration_stops_everything() -> None:
    s = space(slow)
    async with Engine(InlinePool(1), max_duration=0.3, queue_size=4) as engine:
        handles = [await engine.submit(s.freeze({"x": i})) for i in range(3)]
        for h in handles:
            await h
        assert engine.exhausted
        with pytest.raises(e.BudgetExhausted, match="stopping"):
            await engine.submit(s.freeze({"x": 5}))
    assert [h.status for h in handles] == [ModelStatus.Interrupted] * 3


async def test_deduplicate() -> None:
    s = space()
    async with Engine(deduplicate=True, max_trials=2) as engine:
        first = await engine.submit(s.freeze({"x": 1}))
        second = await engine.submit(s.freeze({"x": 1}))
        assert (await second).status is ModelStatus.Invalid
        assert engine.budget_left == 1
        await engine.submit(s.freeze({"x": 2}))
    assert (await first).status is ModelStatus.Trained


async def test_bad_submissions() -> None:
    s = space()
    model = s.freeze({"x": 1})
    with pytest.raises(e.EngineClosed, match="not running"):
        await Engine().submit(model)
    async with Engine() as engine:
        with pytest.raises(ValueError, match="status initialized"):
            await engine.submit(s)
        with pytest.raises(TypeError, match="got int"):
            await engine.submit(3)  # type: ignore[arg-type]
        handle = await engine.submit(model)
        with pytest.raises(ValueError, match="already submitted as model 1"):
            await engine.submit(model)
        no_eval = e.SimplifiedModelSpace.from_model(Toy()).freeze({"x": 1})
        with pytest.raises(ValueError, match="no evaluator"):
            await engine.submit(no_eval)
    assert handle.done
    with pytest.raises(e.EngineClosed):
        await engine.submit(s.freeze({"x": 2}))
    with pytest.raises(e.EngineClosed):
        engine.subscribe()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_trials": 0}, "max_trials"), ({"max_trials": 1.5}, "max_trials"),
     ({"trial_timeout": -1}, "trial_timeout"), ({"max_duration": float("inf")}, "max_duration"),
     ({"max_retries": -1}, "max_retries"), ({"queue_size": 0}, "queue_size")],
)
def test_bad_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Engine(**kwargs)


async def test_late_subscriber_sees_from_its_start() -> None:
    s = space()
    async with Engine() as engine:
        await (await engine.submit(s.freeze({"x": 1})))
        late = engine.subscribe()
        await (await engine.submit(s.freeze({"x": 2})))
    events = [x async for x in late]
    assert isinstance(events[0], ev.ModelQueued)
    assert events[0].model_id == 2
    assert isinstance(events[-1], ev.EngineStopped)
    assert [x.seq for x in events] == list(range(events[0].seq, events[-1].seq + 1))


async def test_slow_subscriber_within_buffer_gets_everything() -> None:
    s = space()
    slow_events: list[ev.Event] = []
    fast_events: list[ev.Event] = []

    async def slow_reader(sub: e.Subscription) -> None:
        async for event in sub:
            slow_events.append(event)
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        engine = Engine(InlinePool(2))
        tg.start_soon(slow_reader, engine.subscribe())
        await tg.start(collect, engine, fast_events)
        async with engine:
            for i in range(20):
                await engine.submit(s.freeze({"x": i}))
    assert slow_events == fast_events
    assert len(slow_events) == 3 + 4 * 20 + 1


async def test_lagging_subscriber_is_told() -> None:
    s = space()
    async with Engine(event_buffer=4) as engine:
        sub = engine.subscribe()
        for i in range(5):
            await (await engine.submit(s.freeze({"x": i})))
        with pytest.raises(e.SubscriberLagged, match=r"events \d+\.\.\d+"):
            await sub.__anext__()


async def test_wait_capacity_and_next_finished() -> None:
    s = space()
    order: list[int] = []
    async with Engine(InlinePool(2)) as engine:
        assert await engine.next_finished() is None
        for i in range(6):
            await engine.wait_capacity()
            assert engine.in_flight < 2
            await engine.submit(s.freeze({"x": i}))
        while (handle := await engine.next_finished()) is not None:
            order.append(handle.model_id)
    assert sorted(order) == [1, 2, 3, 4, 5, 6]


async def test_cancelling_the_engine_interrupts_everything() -> None:
    s = space(slow)
    handles: list[e.ModelHandle] = []
    engine = Engine(InlinePool(2), queue_size=4)
    record = engine.subscribe()
    with anyio.CancelScope() as outer:
        async with engine:
            for i in range(4):
                handles.append(await engine.submit(s.freeze({"x": i})))
            async for event in engine.subscribe():
                if isinstance(event, ev.MetricReported):
                    outer.cancel()
                    await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert all(h.status is ModelStatus.Interrupted for h in handles)
    events = [x async for x in record]
    reasons = [x.reason for x in events if isinstance(x, ev.ModelInterrupted)]
    assert reasons == [ev.InterruptReason.shutdown] * 4
    stopped = events[-1]
    assert isinstance(stopped, ev.EngineStopped)
    assert stopped.reason == "cancelled"


async def test_error_in_block_interrupts_and_propagates() -> None:
    s = space(slow)
    handles: list[e.ModelHandle] = []

    async def fail_inside() -> None:
        async with Engine() as engine:
            handles.append(await engine.submit(s.freeze({"x": 1})))
            raise KeyError("user code failed")

    with pytest.raises(KeyError, match="user code failed"):
        await fail_inside()
    assert handles[0].status is ModelStatus.Interrupted


async def test_stuck_thread_is_abandoned_after_grace() -> None:
    release = threading.Event()

    def stuck(model: Toy) -> float:
        release.wait(10)
        return 1.0

    async with Engine(InlinePool(1, grace=0.1), trial_timeout=0.1) as engine:
        model = await (await engine.submit(space(stuck).freeze({"x": 1})))
    release.set()
    assert model.status is ModelStatus.Interrupted


async def test_engine_enters_once() -> None:
    engine = Engine()
    async with engine:
        pass
    with pytest.raises(RuntimeError, match="entered once"):
        async with engine:
            pass


async def test_best() -> None:
    s = space()
    async with Engine(InlinePool(2)) as engine:
        assert engine.best() is None
        for i in (3, 9, 1):
            await engine.submit(s.freeze({"x": i}))
    best, worst = engine.best("max"), engine.best("min")
    assert best is not None
    assert worst is not None
    assert (best.metric, worst.metric) == (9.0, 1.0)
    with pytest.raises(ValueError, match="mode"):
        engine.best("median")
