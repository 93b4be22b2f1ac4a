"""The multi-objective strategies through the Engine: dict metrics, the declared
objectives, the front search() returns, determinism with several workers, and resuming
from the run file. Every test runs on asyncio and trio."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus, Objective
from engine.pareto import non_dominated
from engine.testing import MockPool
from strategies import (
    MultiObjectiveEvolution,
    MultiObjectiveRandomSearch,
    StopReason,
    sample_key,
    search,
)

pytestmark = pytest.mark.anyio

LABELS = [f"op{i}" for i in range(6)]
OBJECTIVES = [Objective(name="accuracy", mode="max"), Objective(name="latency", mode="min")]
MODES = ["max", "min"]


class Cell(e.BaseModelSpace):
    """Six labels of five values (15625 samples)."""

    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(5)), label=label) for label in LABELS))


def tradeoff(ops: list[int]) -> dict[str, float]:
    """Accuracy grows with the ops' sum, latency with the count of 3s and 4s."""
    return {"accuracy": float(sum(ops)) + 0.1 * ops[0],
            "latency": float(sum(op >= 3 for op in ops)) + 0.01 * sum(ops)}


async def train(model: Cell) -> dict[str, float]:
    ops = list(model.ops)
    if ops[0] == 0 and ops[1] == 0:
        return {"accuracy": 1.0}  # lacks latency: the engine fails the model
    return tradeoff(ops)


def cell_space() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(train))


def point(model: e.ExecutableModelSpace) -> tuple[float, float]:
    final = model.metrics.final
    assert isinstance(final, dict)
    return final["accuracy"], final["latency"]


async def test_search_declares_the_objectives_and_returns_the_front() -> None:
    strategy = MultiObjectiveEvolution(OBJECTIVES, 10, seed=0)
    async with Engine(InlinePool(1), max_trials=60) as engine:
        found = await search(cell_space(), strategy, engine)
        assert engine.objectives == tuple(OBJECTIVES)
    trained = [h.model for h in engine.handles() if h.model.status is ModelStatus.Trained]
    front = {sample_key(trained[i].sample or {})
             for i in non_dominated([point(m) for m in trained], MODES)}
    assert {sample_key(m.sample or {}) for m in found} == front
    assert {sample_key(s) for s, _ in strategy.front()} == front
    assert len({sample_key(h.model.sample or {}) for h in engine.handles()}) == 60


async def test_models_without_every_objective_fail_and_are_not_proposed_again() -> None:
    strategy = MultiObjectiveEvolution(OBJECTIVES, 6, seed=1)
    space = cell_space()

    async def lopsided(model: Cell) -> dict[str, float]:  # op0 = 0: latency missing
        return {"accuracy": 1.0} if model.ops[0] == 0 else tradeoff(list(model.ops))

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(lopsided))
    async with Engine(InlinePool(1), max_trials=80) as engine:
        await strategy.run(engine, space)
    failed = [h.model for h in engine.handles() if h.model.status is ModelStatus.Failed]
    assert failed
    assert all((m.sample or {})["op0"] == 0 for m in failed)
    failed_keys = {strategy.key_of(m.sample or {}) for m in failed}
    assert failed_keys == strategy.archive.failed
    assert not failed_keys & set(strategy.population)
    assert len({sample_key(h.model.sample or {}) for h in engine.handles()}) == 80


def shuffled(seed: int) -> Any:
    """A MockPool trial that finishes after a random number of checkpoints."""
    rng = random.Random(seed)

    async def trial(model: e.ExecutableModelSpace) -> None:
        for _ in range(rng.randrange(12)):
            await anyio.lowlevel.checkpoint()
        # MockPool takes a number as the return value; a dict goes through report_final
        e.report_final(tradeoff([(model.sample or {})[label] for label in LABELS]))

    return trial


@pytest.mark.parametrize("make", [
    lambda: MultiObjectiveEvolution(OBJECTIVES, 8, seed=7, deterministic=True),
    lambda: MultiObjectiveRandomSearch(OBJECTIVES, 7)], ids=["evolution", "random"])
async def test_same_seed_same_samples_whatever_order_models_finish_in(make: Any) -> None:
    runs = []
    for order in (1, 2):
        async with Engine(MockPool(shuffled(order), 3), max_trials=40) as engine:
            await make().run(engine, cell_space())
        runs.append([h.model.sample for h in engine.handles()])
    assert runs[0] == runs[1]
    assert len({sample_key(s or {}) for s in runs[0]}) == 40


@pytest.mark.parametrize("make", [
    lambda: MultiObjectiveEvolution(OBJECTIVES, 6, seed=3),
    lambda: MultiObjectiveRandomSearch(OBJECTIVES, 3)], ids=["evolution", "random"])
async def test_a_resumed_run_file_continues_the_search(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "run.nasrun"
    async with Engine(InlinePool(1), max_trials=15, journal=path) as engine:
        first = make()
        await first.run(engine, cell_space())
    async with Engine(InlinePool(1), max_trials=30, journal=path) as engine:
        assert len(engine.handles()) == 15
        resumed = make()
        resumed.resume(engine)  # what run() does first: the journal's models, observed
        assert resumed.front() == first.front()
        if isinstance(first, MultiObjectiveEvolution):
            assert list(resumed.population) == list(first.population)
            assert resumed.standing() == first.standing()
        await resumed.run(engine, cell_space())
        assert engine.objectives == tuple(OBJECTIVES)
    handles = engine.handles()
    assert len(handles) == 30
    assert len({sample_key(h.model.sample or {}) for h in handles}) == 30
    assert resumed.stop_reason is StopReason.budget


async def test_a_run_with_other_objectives_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    path = tmp_path / "run.nasrun"
    async with Engine(InlinePool(1), max_trials=3, journal=path) as engine:
        await MultiObjectiveRandomSearch(OBJECTIVES, 0).run(engine, cell_space())
    other = [Objective(name="accuracy", mode="max"), Objective(name="size", mode="min")]
    async with Engine(InlinePool(1), max_trials=6, journal=path) as engine:
        with pytest.raises(ValueError, match="latency"):
            await MultiObjectiveEvolution(other, seed=0).run(engine, cell_space())
        assert len(engine.handles()) == 3
