"""``submit`` is atomic, and every public await of the engine is a checkpoint."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint

import engine as e
from engine import Engine, InlinePool, ModelStatus
from engine import events as ev
from engine.store import RunReader

pytestmark = pytest.mark.anyio

_gates: dict[str, anyio.Event] = {}


class Toy(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(50)), label="x"))


async def instant(model: Toy) -> float:
    """Never checkpoints: a runner goes from one model to the next at once."""
    e.report_intermediate(0.5)
    return float(model.x)


async def gated(model: Toy, gate: str) -> float:
    await _gates[gate].wait()
    return float(model.x)


def space(fn: Any = instant, **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Toy(), e.FunctionEvaluator(fn, **kwargs))


def new_gate(name: str) -> tuple[str, anyio.Event]:
    _gates[name] = gate = anyio.Event()
    return name, gate


async def collect(engine: Engine, into: list[ev.Event], *,
                  task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    subscription = engine.subscribe()
    task_status.started()
    async for event in subscription:
        into.append(event)


def kinds_by_model(events: list[ev.Event]) -> dict[int, list[str]]:
    kinds: dict[int, list[str]] = defaultdict(list)
    for event in events:
        if isinstance(event, ev.ModelEvent):
            kinds[event.model_id].append(event.kind)
    return kinds


def check_run_file(run: Path, count: int) -> None:
    with RunReader(run) as reader:
        models = reader.models()
    assert [m.id for m in models] == list(range(1, count + 1))
    assert all(m.status is ModelStatus.Trained for m in models)
    assert sorted(m.sample["x"] for m in models) == sorted(m.metrics.final for m in models)


@pytest.mark.parametrize(("workers", "queue_size"), [(2, None), (1, 1)])
async def test_racing_runners_never_see_an_unaccounted_model(
        tmp_path: Path, workers: int, queue_size: int | None) -> None:
    run, events = tmp_path / "run.nasrun", []
    async with anyio.create_task_group() as tg:
        engine = Engine(InlinePool(workers), queue_size=queue_size, journal=run)
        await tg.start(collect, engine, events)
        async with engine:
            handles = [await engine.submit(space().freeze({"x": i})) for i in range(30)]
            for handle in handles:
                await handle
    assert [h.model_id for h in handles] == list(range(1, 31))
    per_model = kinds_by_model(events)
    assert sorted(per_model) == list(range(1, 31))
    for kinds in per_model.values():
        assert kinds == ["queued", "training", "metric", "trained"]
    check_run_file(run, 30)


async def test_blocked_submit_is_accounted_for_before_a_runner_takes_it(
        tmp_path: Path) -> None:
    run, events = tmp_path / "run.nasrun", []
    name, gate = new_gate("blocked")
    handles: dict[int, e.ModelHandle] = {}

    async def submit(x: int) -> None:
        handles[x] = await engine.submit(space().freeze({"x": x}))

    async with anyio.create_task_group() as tg:
        engine = Engine(InlinePool(1), queue_size=1, journal=run)
        await tg.start(collect, engine, events)
        async with engine, anyio.create_task_group() as submitters:
            handles[0] = await engine.submit(space(gated, gate=name).freeze({"x": 0}))
            await wait_all_tasks_blocked()  # the runner trains model 1 now
            handles[1] = await engine.submit(space().freeze({"x": 1}))  # fills the queue
            for x in (2, 3, 4):
                submitters.start_soon(submit, x)
                await wait_all_tasks_blocked()
            assert engine.in_flight == 2
            assert sorted(handles) == [0, 1]  # the others wait, with no id yet
            gate.set()
    assert [handles[x].model_id for x in range(5)] == [1, 2, 3, 4, 5]  # in waiting order
    for kinds in kinds_by_model(events).values():
        assert kinds[0] == "queued"
        assert kinds[-1] == "trained"
    check_run_file(run, 5)


async def test_submit_cancelled_while_waiting_queues_nothing(tmp_path: Path) -> None:
    run, events = tmp_path / "run.nasrun", []
    name, gate = new_gate("cancelled")
    waiting = space().freeze({"x": 7})
    async with anyio.create_task_group() as tg:
        engine = Engine(InlinePool(1), queue_size=1, journal=run, max_trials=3)
        await tg.start(collect, engine, events)
        async with engine:
            first = await engine.submit(space(gated, gate=name).freeze({"x": 0}))
            await wait_all_tasks_blocked()
            await engine.submit(space().freeze({"x": 1}))
            scope = await tg.start(_submit_in_scope, engine, waiting)
            await wait_all_tasks_blocked()  # the queue is full: it waits
            assert engine.budget_left == 0  # held while it waits
            scope.cancel()
            await wait_all_tasks_blocked()
            with anyio.move_on_after(0) as cancelled:
                await engine.submit(waiting)  # the same object: not known, not queued
            assert cancelled.cancelled_caught
            assert engine.budget_left == 1
            assert len(engine.handles()) == 2
            gate.set()
            assert (await first).status is ModelStatus.Trained
            again = await engine.submit(waiting)
        assert again.model_id == 3  # no id was used by the cancelled submits
    assert sorted(kinds_by_model(events)) == [1, 2, 3]
    check_run_file(run, 3)


async def _submit_in_scope(engine: Engine, model: e.ExecutableModelSpace, *,
                           task_status: TaskStatus[anyio.CancelScope]) -> None:
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        await engine.submit(model)
    assert scope.cancelled_caught


async def test_engine_stopping_wakes_a_blocked_submit_with_nothing_queued() -> None:
    name, _ = new_gate("stopping")
    outcome: list[BaseException] = []

    async def submit(engine: Engine) -> None:
        try:
            await engine.submit(space().freeze({"x": 2}))
        except e.EngineClosed as exc:
            outcome.append(exc)

    left = False
    try:
        async with anyio.create_task_group() as tg:
            async with Engine(InlinePool(1), queue_size=1) as engine:
                first = await engine.submit(space(gated, gate=name).freeze({"x": 0}))
                await wait_all_tasks_blocked()
                await engine.submit(space().freeze({"x": 1}))
                tg.start_soon(submit, engine)
                await wait_all_tasks_blocked()
                raise KeyError("leave the block")
    except* KeyError:
        left = True
    assert left
    assert first.status is ModelStatus.Interrupted
    assert [type(x) for x in outcome] == [e.EngineClosed]
    assert "waited for the queue" in str(outcome[0])
    assert [h.model_id for h in engine.handles()] == [1, 2]


@pytest.mark.parametrize("call", ["submit", "wait_capacity", "next_finished"])
async def test_public_awaits_are_checkpoints(call: str) -> None:
    """A strategy-like loop whose awaits never need to wait lets other tasks run."""
    other_ran = anyio.Event()
    async with Engine(InlinePool(1), queue_size=1000) as engine, \
            anyio.create_task_group() as tg:
        s = space()
        tg.start_soon(_set, other_ran)
        for x in range(50):
            if other_ran.is_set():
                break
            if call == "submit":
                await engine.submit(s.freeze({"x": x}))
            elif call == "wait_capacity":
                await engine.wait_capacity()
            else:
                await engine.next_finished()
        assert other_ran.is_set()


async def _set(event: anyio.Event) -> None:
    await checkpoint()
    event.set()


@pytest.mark.parametrize("call", ["submit", "next_finished"])
async def test_public_awaits_notice_cancellation_when_they_need_not_wait(call: str) -> None:
    async with Engine(InlinePool(1), queue_size=10) as engine:
        with anyio.CancelScope() as scope:
            scope.cancel()
            if call == "submit":
                await engine.submit(space().freeze({"x": 1}))
            else:
                await engine.next_finished()
        assert scope.cancelled_caught
        assert engine.handles() == []
