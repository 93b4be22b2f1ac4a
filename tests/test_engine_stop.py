"""Strategies hear intermediate results as they arrive, and stop models early
(``handle.stop()``): the decision is recorded as such, and ranking knows fidelity."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, ModelStatus
from engine import events as ev
from engine.cli import main
from engine.store._read import RunReader
from engine.testing import MockPool
from strategies import RandomSearch, rank, search
from strategies.base import HandleLike

pytestmark = pytest.mark.anyio

STEPS = 4


class Grid(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical([1, 2, 3, 4, 5, 6], label="x"))


def curve(x: int, step: int) -> float:
    """Model ``x``'s value at ``step``: bigger x is better at every step."""
    return x * 10 + step


async def climb(model: e.ExecutableModelSpace) -> float:
    """Reports ``curve(x, step)`` for each step, a checkpoint between reports."""
    x = int((model.sample or {})["x"])
    for step in range(1, STEPS + 1):
        e.report_intermediate(curve(x, step))
        await anyio.lowlevel.checkpoint()
    return curve(x, STEPS)


def grid_space() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Grid(), e.FunctionEvaluator(lambda _: 0.0))


class Listening(RandomSearch):
    """Random search that records what it hears and stops models below ``cut`` at
    ``at_step``."""

    def __init__(self, seed: int, *, cut: int = 0, at_step: int = 2) -> None:
        super().__init__(seed)
        self.cut, self.at_step = cut, at_step
        self.heard: list[tuple[int, int, float]] = []

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        self.heard.append((handle.model_id, step, value))
        x = int((handle.model.sample or {})["x"])
        if step == self.at_step and x < self.cut:
            handle.stop()


async def test_strategy_hears_every_intermediate_in_order_per_model() -> None:
    strategy = Listening(0)
    async with Engine(MockPool(climb, capacity=3)) as engine:
        await strategy.run(engine, grid_space())
    by_model: dict[int, list[tuple[int, float]]] = {}
    for model_id, step, value in strategy.heard:
        by_model.setdefault(model_id, []).append((step, value))
    assert len(by_model) == 6
    for handle in engine.handles():
        x = int((handle.model.sample or {})["x"])
        assert by_model[handle.model_id] == [(s, curve(x, s)) for s in range(1, STEPS + 1)]
    # several models ran at once: some model's reports began before another's ended
    spans = {}
    for index, (model_id, _, _) in enumerate(strategy.heard):
        spans[model_id] = (spans.get(model_id, (index, index))[0], index)
    ordered = sorted(spans.values())
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


async def test_a_stopped_model_is_trained_at_its_fidelity(tmp_path: Path) -> None:
    run = tmp_path / "run.db"
    strategy = Listening(0, cut=4, at_step=2)
    events = []
    async with Engine(MockPool(climb, capacity=2), journal=run) as engine:
        subscription = engine.subscribe()
        ranked = await search(grid_space(), strategy, engine)
        best = engine.best()
    async for event in subscription:
        events.append(event)
    stopped = [h for h in engine.handles() if int((h.model.sample or {})["x"]) < 4]
    assert len(stopped) == 3
    for handle in stopped:
        x = int((handle.model.sample or {})["x"])
        assert handle.status is ModelStatus.Trained
        assert handle.model.metrics.stopped_at == 2
        assert handle.model.metrics.intermediates == [curve(x, 1), curve(x, 2)]
        assert handle.model.metric == curve(x, 2)
    trained = [ev_ for ev_ in events if isinstance(ev_, ev.ModelTrained)]
    assert sorted(t.stopped_at or 0 for t in trained) == [0, 0, 0, 2, 2, 2]
    assert not any(isinstance(ev_, ev.ModelInterrupted) for ev_ in events)
    # ranked: full trainings first (best first), then the stopped ones
    xs = [int((m.sample or {})["x"]) for m in ranked]
    assert xs == [6, 5, 4, 3, 2, 1]
    assert best is not None
    assert (best.sample or {})["x"] == 6
    with RunReader(run) as reader:
        rows = {m.id: m for m in reader.models()}
    for handle in stopped:
        row = rows[handle.model_id]
        assert row.reason == "stopped at step 2"
        assert row.metrics.stopped_at == 2
        assert row.status is ModelStatus.Trained


async def test_reports_after_the_stop_are_dropped() -> None:
    async def burst(model: e.ExecutableModelSpace) -> float:
        for step in range(1, STEPS + 1):  # no checkpoint: the stop lands mid-burst
            e.report_intermediate(float(step))
        await anyio.sleep_forever()
        return 0.0

    heard: list[int] = []

    def stop_at_two(handle: e.ModelHandle, step: int, value: float) -> None:
        heard.append(step)
        if step == 2:
            handle.stop()

    async with Engine(MockPool(burst)) as engine:
        engine.listen(stop_at_two)
        handle = await engine.submit(grid_space().freeze({"x": 1}))
        model = await handle
    assert heard == [1, 2]
    assert model.status is ModelStatus.Trained
    assert model.metrics.intermediates == [1.0, 2.0]
    assert model.metric == 2.0


async def test_stop_before_any_report_or_while_queued_interrupts() -> None:
    gate = anyio.Event()

    async def wait_for_gate(model: e.ExecutableModelSpace) -> float:
        await gate.wait()
        return 1.0

    async with Engine(MockPool(wait_for_gate), queue_size=2) as engine:
        subscription = engine.subscribe()
        running = await engine.submit(grid_space().freeze({"x": 1}))
        queued = await engine.submit(grid_space().freeze({"x": 2}))
        await anyio.wait_all_tasks_blocked()
        assert running.status is ModelStatus.Training
        assert queued.status is ModelStatus.Frozen
        queued.stop()
        running.stop()
        running.cancel()  # the first reason wins
        assert (await running).status is ModelStatus.Interrupted
        assert (await queued).status is ModelStatus.Interrupted
    reasons = {event.model_id: event.reason async for event in subscription
               if isinstance(event, ev.ModelInterrupted)}
    assert reasons == {running.model_id: ev.InterruptReason.stopped,
                       queued.model_id: ev.InterruptReason.stopped}


async def test_cancel_is_not_a_stop() -> None:
    async def report_then_wait(model: e.ExecutableModelSpace) -> float:
        e.report_intermediate(0.5)
        await anyio.sleep_forever()
        return 0.0

    async with Engine(MockPool(report_then_wait)) as engine:
        engine.listen(lambda handle, step, value: handle.cancel())
        handle = await engine.submit(grid_space().freeze({"x": 1}))
        model = await handle
    assert model.status is ModelStatus.Interrupted
    assert model.metrics.stopped_at is None


async def test_a_listener_can_be_removed_and_its_error_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    heard: list[int] = []

    def broken(handle: e.ModelHandle, step: int, value: float) -> None:
        raise RuntimeError("listener bug")

    async with Engine(MockPool(climb)) as engine:
        remove_broken = engine.listen(broken)
        remove = engine.listen(lambda handle, step, value: heard.append(step))
        first = await engine.submit(grid_space().freeze({"x": 1}))
        await first
        remove()
        remove()  # a no-op the second time
        remove_broken()
        second = await engine.submit(grid_space().freeze({"x": 2}))
        await second
    assert heard == [1, 2, 3, 4]
    assert first.status is ModelStatus.Trained
    assert second.status is ModelStatus.Trained
    assert "listener bug" in caplog.text


async def test_an_error_in_on_intermediate_stops_the_run() -> None:
    class Broken(RandomSearch):
        def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
            raise ValueError(f"bad hook at step {step}")

    async with Engine(MockPool(climb)) as engine:
        with pytest.raises(ValueError, match="bad hook at step 1"):
            await Broken(0).run(engine, grid_space())


async def test_show_says_which_models_were_stopped(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run.db"
    async with Engine(MockPool(climb, capacity=2), journal=run) as engine:
        await search(grid_space(), Listening(1, cut=3, at_step=3), engine)
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    assert "2 trained models were stopped early by their strategy" in out
    assert out.count("(stopped at step 3)") == 2


async def test_a_resumed_run_keeps_the_fidelity(tmp_path: Path) -> None:
    run = tmp_path / "run.db"
    async with Engine(MockPool(climb, capacity=2), journal=run) as engine:
        await search(grid_space(), Listening(2, cut=6, at_step=1), engine)
    async with Engine(MockPool(climb), journal=run) as engine:
        restored = [h.model for h in engine.handles()]
        best = engine.best()
    assert sorted(m.metrics.stopped_at or 0 for m in restored) == [0, 1, 1, 1, 1, 1]
    assert best is not None
    assert (best.sample or {})["x"] == 6


def test_rank_compares_at_the_fidelity_reached() -> None:
    space = grid_space()

    def model(x: int, final: float, stopped_at: int | None) -> e.ExecutableModelSpace:
        m = space.freeze({"x": x})
        m.status = ModelStatus.Trained
        m.metrics = e.Metrics(intermediates=[final], final=final, stopped_at=stopped_at)
        return m

    models: list[Any] = [model(1, 0.99, 1), model(2, 0.5, None), model(3, 0.7, 3),
                         model(4, 0.6, None), model(5, 0.95, 3)]
    assert [(m.sample or {})["x"] for m in rank(models)] == [4, 2, 5, 3, 1]
    assert [(m.sample or {})["x"] for m in rank(models, "min")] == [2, 4, 3, 5, 1]
    # a sample trained again to its end is ranked by that run only
    models.append(model(1, 0.1, None))
    assert [(m.sample or {})["x"] for m in rank(models)][:3] == [4, 2, 1]
