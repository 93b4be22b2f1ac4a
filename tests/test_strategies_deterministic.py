"""Same seed, same search, whatever order models finish in (issue 12.10).

Each run gives every sample its own training time from a per-run salt, so the same
samples finish in another order in each run; the metrics do not depend on the salt.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from strategies import GridSearch, RandomSearch, RegularizedEvolution
from strategies.base import BaseStrategy, pool_window
from strategies.evolution import Reevaluation

LABELS = [f"op{i}" for i in range(5)]


class Cell(e.BaseModelSpace):
    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(4)), label=label) for label in LABELS))


async def score(model: Cell, salt: int) -> float:
    ops = list(model.ops)
    await anyio.sleep(random.Random(f"{salt}{ops}").random() * 0.004)  # order, not a wait
    return float(sum(op * (i + 1) for i, op in enumerate(ops)) % 7 + ops[0] / 10)


async def samples(strategy: BaseStrategy, salt: int, *, workers: int = 3,
                  trials: int = 40) -> list[dict[str, Any]]:
    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(score, salt=salt))
    async with Engine(InlinePool(workers), max_trials=trials) as engine:
        await strategy.run(engine, space)
    assert all(h.status is ModelStatus.Trained for h in engine.handles())
    return [dict(h.model.sample or {}) for h in engine.handles()]


@pytest.mark.parametrize("make", [
    lambda d: RegularizedEvolution(6, seed=0, deterministic=d),
    lambda d: RegularizedEvolution(6, seed=0, deterministic=d,
                                   reevaluate=Reevaluation(share=0.3)),
], ids=["evolution", "evolution-reevaluate"])
@pytest.mark.anyio
async def test_deterministic_evolution_ignores_the_completion_order(make: Any) -> None:
    first = await samples(make(True), salt=1)
    again = await samples(make(True), salt=2)
    assert len(first) == 40
    assert first == again


@pytest.mark.anyio
async def test_without_it_the_completion_order_changes_the_children() -> None:
    """What ``deterministic`` is for: the default follows the results as they come."""
    first = await samples(RegularizedEvolution(6, seed=0), salt=1)
    again = await samples(RegularizedEvolution(6, seed=0), salt=2)
    assert first[:6] == again[:6]  # the random start does not look at results
    assert first != again


@pytest.mark.anyio
async def test_with_one_worker_deterministic_changes_nothing() -> None:
    plain = await samples(RegularizedEvolution(6, seed=3), salt=1, workers=1, trials=20)
    ordered = await samples(RegularizedEvolution(6, seed=3, deterministic=True), salt=2,
                            workers=1, trials=20)
    assert plain == ordered


@pytest.mark.parametrize("make", [lambda: RandomSearch(0, deterministic=True),
                                  lambda: GridSearch(shuffle=True, seed=0, deterministic=True)],
                         ids=["random", "grid"])
@pytest.mark.anyio
async def test_every_strategy_takes_the_option(make: Any) -> None:
    assert await samples(make(), salt=1, trials=20) == await samples(make(), salt=2, trials=20)


def test_the_window_is_what_the_pool_takes_at_once() -> None:
    assert pool_window(Engine(InlinePool(3))) == 3  # type: ignore[arg-type]
    assert pool_window(object()) == 1  # type: ignore[arg-type]


def test_deterministic_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="deterministic must be True or False, got 'yes'"):
        RegularizedEvolution(6, deterministic="yes")  # type: ignore[arg-type]
