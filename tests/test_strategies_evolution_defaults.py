"""RegularizedEvolution's sample size follows its population unless given (issue 12.11)."""

from __future__ import annotations

from typing import Any

import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from strategies import RegularizedEvolution


@pytest.mark.parametrize(("population", "expected"),
                         [(1, 1), (2, 2), (4, 2), (7, 2), (9, 3), (30, 10), (100, 33)])
def test_the_sample_size_is_a_third_of_the_population(population: int, expected: int) -> None:
    assert RegularizedEvolution(population).sample_size == expected
    assert RegularizedEvolution(population_size=population).sample_size == expected


def test_the_defaults_stay_the_tuned_ones() -> None:
    strategy = RegularizedEvolution()
    assert (strategy.population_size, strategy.sample_size) == (30, 10)


@pytest.mark.parametrize(("sample_size", "message"), [
    (5, r"sample_size \(5\) must not exceed population_size \(4\); leave it out"),
    (0, r"sample_size must be an int >= 1 \(or None: a third of the population\), got 0"),
    (True, r"sample_size must be an int >= 1 \(or None: a third of the population\), got True"),
    (2.5, r"sample_size must be an int >= 1 \(or None: a third of the population\), got 2.5"),
])
def test_an_explicit_bad_sample_size_is_refused(sample_size: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegularizedEvolution(4, sample_size)


def test_a_bad_population_is_refused_before_the_sample_size_is_derived() -> None:
    with pytest.raises(ValueError, match=r"population_size must be an int >= 1, got 0"):
        RegularizedEvolution(0)
    with pytest.raises(ValueError, match=r"population_size must be an int >= 1, got '4'"):
        RegularizedEvolution("4")  # type: ignore[arg-type]


class Pair(e.BaseModelSpace):
    def __init__(self) -> None:
        self.a = e.ensure_frozen(e.Categorical(list(range(6)), label="a"))
        self.b = e.ensure_frozen(e.Categorical(list(range(6)), label="b"))


async def score(model: Pair) -> float:
    return float(model.a + model.b)


@pytest.mark.anyio
async def test_a_small_population_searches() -> None:
    strategy = RegularizedEvolution(population_size=4, seed=0)
    space = e.RawFormatModelSpace.from_model(Pair(), e.FunctionEvaluator(score))
    async with Engine(InlinePool(2), max_trials=12) as engine:
        await strategy.run(engine, space)
    assert [h.status for h in engine.handles()] == [ModelStatus.Trained] * 12
    assert len(strategy.population) == 4
