"""What BayesOpt and ModelBased both promise (issue 17): distinct samples in flight,
reproducible by seed and, with ``deterministic``, whatever the completion order;
resumable from a journal; minimizing; better than random search on a small table. Each
case keeps the sizes its strategy was tested at."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, InlinePool
from engine.testing import MockPool
from strategies import BayesOpt, ModelBased, RandomSearch, StopReason, sample_key
from strategies.base import BaseStrategy
from strategies.evolution import Reevaluation
from tests._surrogate_fixtures import LABELS, Cell, cell, run, samples, table_score

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Case:
    """A surrogate strategy and the sizes of its tests."""

    make: Callable[..., BaseStrategy]
    seeded_trials: int  # trials of the same-seed search
    deterministic_trials: int
    minimize: dict[str, Any]  # the minimizing search's arguments
    minimize_trials: int
    searches: int  # against random search, and how many it must win or tie
    wins: int


CASES = {
    "bayes-opt": Case(BayesOpt, 30, 25, {}, 50, 6, 5),
    "model-based": Case(ModelBased, 40, 30, {"n_initial": 5}, 60, 8, 7),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


async def test_four_workers_never_train_the_same_sample_at_once(case: Case) -> None:
    flying: list[bytes] = []
    overlaps: list[int] = []
    rng = random.Random(0)

    async def trial(model: e.ExecutableModelSpace) -> float:
        key = sample_key(model.sample or {})
        assert key not in flying, f"{model.sample} is already in flight"
        flying.append(key)
        overlaps.append(len(flying))
        for _ in range(rng.randrange(20, 60)):  # finish in a random order
            await anyio.lowlevel.checkpoint()
        flying.remove(key)
        return table_score([(model.sample or {})[label] for label in LABELS])

    strategy = case.make(n_initial=4, reevaluate=Reevaluation(share=0.3, evaluations=3),
                         seed=2)
    async with Engine(MockPool(trial, capacity=4), max_trials=60) as engine:
        await strategy.run(engine, cell())
    assert len(engine.handles()) == 60
    assert max(overlaps) == 4  # four were in flight together, never one sample twice
    assert len({sample_key(s) for s in samples(engine.handles())}) < 60  # re-evaluations


async def test_same_seed_and_one_worker_give_the_same_samples(case: Case) -> None:
    first = samples(await run(case.make(seed=5), cell(), case.seeded_trials))
    again = samples(await run(case.make(seed=5), cell(), case.seeded_trials))
    other = samples(await run(case.make(seed=6), cell(), case.seeded_trials))
    assert first == again
    assert first != other


async def test_deterministic_ignores_the_completion_order(case: Case) -> None:
    async def once(salt: int) -> list[dict[str, Any]]:
        order = random.Random(salt)

        async def trial(model: e.ExecutableModelSpace) -> float:
            for _ in range(order.randrange(10)):
                await anyio.lowlevel.checkpoint()
            return table_score([(model.sample or {})[label] for label in LABELS])

        strategy = case.make(n_initial=4, seed=3, deterministic=True)
        async with Engine(MockPool(trial, capacity=3),
                          max_trials=case.deterministic_trials) as engine:
            await strategy.run(engine, cell())
        return samples(engine.handles())

    assert await once(1) == await once(2)


async def test_a_resumed_journal_continues_the_search(case: Case, tmp_path: Path) -> None:
    journal = tmp_path / "run.nasrun"
    noisy = random.Random(0)

    async def noisy_score(model: Cell) -> float:
        return table_score(list(model.ops)) + noisy.gauss(0.0, 0.5)

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(noisy_score))

    def make() -> Any:
        return case.make(n_initial=4, reevaluate=Reevaluation(share=0.3), seed=4)

    async with Engine(InlinePool(1), max_trials=12, journal=journal) as engine:
        await make().run(engine, space)
    async with Engine(InlinePool(1), max_trials=24, journal=journal) as engine:
        found = engine.handles()
        assert len(found) == 12
        resumed = make()
        await resumed.run(engine, space)
    handles = engine.handles()
    assert len(handles) == 24
    assert resumed.stop_reason is StopReason.budget
    for handle in found:  # every result of the journal is known, with its repeats
        metrics = [h.model.metric for h in found if h.model.sample == handle.model.sample]
        assert resumed.metrics_of(handle.model.sample or {})[:len(metrics)] == metrics
    assert not any(resumed.is_new(sample) for sample in samples(found))
    distinct = {sample_key(s): s for s in samples(handles)}.values()
    assert sum(len(resumed.metrics_of(s)) for s in distinct) == 24  # every result, once


async def test_it_minimizes(case: Case) -> None:
    async def loss(model: Cell) -> float:
        return -table_score(list(model.ops))

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(loss))
    handles = await run(case.make(**case.minimize, seed=0, mode="min"), space,
                        case.minimize_trials)
    assert min(h.model.metric or 0.0 for h in handles) <= -6.0


async def test_it_beats_random_search_on_a_small_table(case: Case) -> None:
    """With fixed seeds: the best value found in 40 trials, over several searches."""
    ours: list[float] = []
    theirs: list[float] = []
    for seed in range(case.searches):
        for strategy, found in ((case.make(seed=seed), ours), (RandomSearch(seed), theirs)):
            handles = await run(strategy, cell(), 40)
            found.append(max(h.model.metric or 0.0 for h in handles))
    assert statistics.fmean(ours) > statistics.fmean(theirs) + 1.0
    assert sum(a >= b for a, b in zip(ours, theirs, strict=True)) >= case.wins
