"""Hyperband (stopping variant): brackets of ASHA, each new model drawn into one."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy
import pytest

import engine as e
from engine import Engine, ModelStatus
from engine.testing import MockPool
from strategies import ASHA, Hyperband, RandomSearch, RegularizedEvolution, search
from strategies.schedulers import bracket_weights
from tests.test_schedulers import STEPS, cell, curves, quality

pytestmark = pytest.mark.anyio


def test_the_brackets_of_synchronous_hyperband() -> None:
    # Li et al.'s table for R=81, eta=3: 81, 34, 15, 8, 5 models per bracket
    assert bracket_weights(4, 3) == (81, 34, 15, 8, 5)
    strategy = Hyperband(max_resource=12, reduction_factor=3, seed=0)
    assert strategy.brackets.rungs == ((1, 3, 9), (3, 9), (9,), ())
    assert strategy.brackets.weights == (27, 12, 6, 4)
    two = Hyperband(min_resource=2, max_resource=16, reduction_factor=2, brackets=2)
    assert two.brackets.rungs == ((2, 4, 8), (4, 8))
    assert ASHA(max_resource=12).brackets.rungs == ((1, 3, 9),)


def test_the_repr_names_the_brackets_only_where_they_are_an_argument() -> None:
    from strategies import PromotionASHA, PromotionHyperband

    tail = "min_resource=2, max_resource=12, reduction_factor=3, "
    for kind in (ASHA, PromotionASHA):
        text = repr(kind(RandomSearch(0), min_resource=2, max_resource=12, max_trials=5))
        assert text.startswith(f"{kind.__name__}(RandomSearch(")
        assert text.endswith(tail + "max_trials=5)")
    for many in (Hyperband, PromotionHyperband):
        text = repr(many(RandomSearch(0), min_resource=2, max_resource=12, brackets=2))
        assert text.startswith(f"{many.__name__}(RandomSearch(")
        assert text.endswith(tail + "brackets=2, max_trials=None)")


@pytest.mark.parametrize("bad", [0, 5, 1.5, True])
def test_hyperband_refuses_bad_brackets(bad: object) -> None:
    with pytest.raises(ValueError, match=r"brackets must be an int from 1 to 4"):
        Hyperband(max_resource=12, brackets=bad)  # type: ignore[arg-type]


def test_models_are_drawn_into_brackets_in_hyperbands_proportions() -> None:
    strategy = Hyperband(max_resource=12, seed=3)
    drawn = [strategy.brackets.of(i) for i in range(4900)]
    counts = collections.Counter(drawn)
    for bracket, weight in enumerate((27, 12, 6, 4)):
        assert counts[bracket] / 4900 == pytest.approx(weight / 49, abs=0.02)
    # the same seed draws the same brackets, whenever asked; another seed others
    again = Hyperband(max_resource=12, seed=3)
    assert [again.brackets.of(i) for i in reversed(range(4900))] == drawn[::-1]
    other = Hyperband(max_resource=12, seed=4)
    assert [other.brackets.of(i) for i in range(4900)] != drawn


def check_hyperband_decisions(strategy: Hyperband, handles: list[e.ModelHandle]) -> None:
    """Each model was judged at its bracket's rungs only: stopped exactly at the first
    rung where it was not in the top 1/eta of what its bracket had recorded there."""
    seen: dict[tuple[int, int], list[float]] = collections.defaultdict(list)
    for handle in sorted(handles, key=lambda h: h.model_id):  # one worker: arrival order
        bracket = strategy.brackets.of(handle.model_id)
        curve = handle.model.metrics.intermediates
        expected = None
        for rung in strategy.brackets.rungs[bracket]:
            if len(curve) < rung:
                break
            values = seen[bracket, rung]
            values.append(curve[rung - 1])
            cutoff = float(numpy.quantile(values, 1 - 1 / 3))  # linear, as the rule says
            if curve[rung - 1] < cutoff:
                expected = rung
                break
        assert handle.status is ModelStatus.Trained
        assert handle.model.metrics.stopped_at == expected, handle
    for (bracket, rung), values in seen.items():
        assert strategy.records[bracket][rung] == values


async def test_hyperband_stops_models_at_their_brackets_rungs() -> None:
    strategy = Hyperband(RandomSearch(0), max_resource=STEPS, reduction_factor=3,
                         max_trials=36, seed=5)
    assert strategy.brackets.rungs == ((1, 3), (3,), ())
    async with Engine(MockPool(curves, capacity=1)) as engine:
        ranked = await search(cell(), strategy, engine)
    handles = engine.handles()
    check_hyperband_decisions(strategy, handles)
    brackets = collections.Counter(strategy.brackets.of(h.model_id) for h in handles)
    assert set(brackets) == {0, 1, 2}  # every bracket got models
    stops = collections.Counter(h.model.metrics.stopped_at for h in handles)
    assert stops[1] >= 5  # stopped at the first rung of each bracket
    assert stops[3] >= 2
    for handle in handles:  # the last bracket trains every model to its end
        if strategy.brackets.of(handle.model_id) == 2:
            assert handle.model.metrics.stopped_at is None
    best = max(handles, key=lambda h: quality(dict(h.model.sample or {})))
    assert best.model.metrics.stopped_at is None
    assert ranked[0] is best.model
    steps = sum(len(h.model.metrics.intermediates) for h in handles)
    assert steps < 0.75 * STEPS * len(handles)


async def test_hyperband_with_an_evolution_proposer_feeds_it_every_model() -> None:
    proposer = RegularizedEvolution(8, sample_size=3, seed=1)
    strategy = Hyperband(proposer, max_resource=STEPS, max_trials=24, seed=2)
    async with Engine(MockPool(curves, capacity=3)) as engine:
        await strategy.run(engine, cell())
    assert len(proposer.history) == 24  # stopped models observed too
    assert proposer.in_flight == 0
    assert proposer.seen_count == strategy.seen_count == 24
    assert any(h.model.metrics.stopped_at is not None for h in engine.handles())


async def test_a_resumed_hyperband_puts_the_journals_models_back_in_their_brackets(
        tmp_path: Path) -> None:
    run = tmp_path / "run.db"
    first = Hyperband(RandomSearch(0), max_resource=STEPS, max_trials=10, seed=7)
    async with Engine(MockPool(curves), journal=run) as engine:
        await first.run(engine, cell())
    second = Hyperband(RandomSearch(1), max_resource=STEPS, max_trials=20, seed=7)
    async with Engine(MockPool(curves), journal=run) as engine:
        await second.run(engine, cell())
        handles = engine.handles()
    assert len(handles) == 20
    for before, after in zip(first.records, second.records, strict=True):
        for rung, values in before.items():
            assert after[rung][:len(values)] == values  # rebuilt, then continued
    assert sum(len(v) for r in second.records for v in r.values()) > sum(
        len(v) for r in first.records for v in r.values())
    check_hyperband_decisions(second, handles)
