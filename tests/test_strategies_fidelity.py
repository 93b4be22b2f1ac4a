"""BayesOpt and ModelBased under a scheduler: each model's result is booked at the
fidelity it reached, and the model is fitted at the highest fidelity with enough
results (BOHB's rule), never on a mix of early and final values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from engine.space import Metrics
from engine.testing import MockPool
from strategies import ASHA, BayesOpt, ModelBased, PromotionASHA, sample_key
from strategies._surrogate import SurrogateStrategy
from strategies.base import NotYet
from tests.test_promotion import cell as pausable_cell
from tests.test_schedulers import STEPS, cell, curves, quality, value

pytestmark = pytest.mark.anyio

Maker = type[BayesOpt] | type[ModelBased]


def finished(space: e.ExecutableModelSpace, a: int, b: int,
             stopped_at: int | None = None) -> e.ExecutableModelSpace:
    """A model of ``{"a": a, "b": b}`` trained on ``value``'s curve to ``stopped_at``
    (to its end when None), as the engine hands it to ``observe``."""
    sample = {"a": a, "b": b}
    model = space.freeze(sample)
    steps = STEPS if stopped_at is None else stopped_at
    curve = [value(sample, step) for step in range(1, steps + 1)]
    model.status = ModelStatus.Trained
    model.metrics = Metrics(intermediates=curve, final=curve[-1], stopped_at=stopped_at)
    return model


def fit_now(strategy: SurrogateStrategy, space: e.ExecutableModelSpace) -> None:
    """Propose until the strategy fitted its model (BayesOpt chooses its grid first)."""
    leaves = space.simplify()
    for _ in range(len(leaves) * 20):
        if not isinstance(strategy.propose(leaves), NotYet):
            return
    raise AssertionError("no proposal")


def fitted_keys(strategy: SurrogateStrategy) -> set[bytes]:
    """The samples the strategy's model was last fitted on."""
    if isinstance(strategy, BayesOpt):
        return set(strategy._keys)
    assert isinstance(strategy, ModelBased)
    return {sample_key(sample) for sample, _ in strategy._results}


@pytest.mark.parametrize("make", [BayesOpt, ModelBased])
def test_a_model_stopped_at_step_3_stays_out_of_the_full_fidelity_fit(make: Maker) -> None:
    space = cell()
    strategy = make(n_initial=4, seed=0)
    for a in range(4):
        strategy.observe(finished(space, a, 0))
    stopped = finished(space, 5, 5, stopped_at=3)  # the best sample, stopped early
    strategy.observe(stopped)
    key = sample_key(stopped.sample or {})
    assert key not in strategy.results_at(math.inf)
    assert strategy.metrics_of(stopped.sample or {}) == []
    assert strategy.results_at(3)[key] == [value({"a": 5, "b": 5}, 3)]
    fit_now(strategy, space)
    assert strategy._level == math.inf
    assert key not in fitted_keys(strategy)
    assert fitted_keys(strategy) == set(strategy.results_at(math.inf))


@pytest.mark.parametrize("make", [BayesOpt, ModelBased])
def test_the_fit_moves_up_a_fidelity_once_it_has_enough_results(make: Maker) -> None:
    space = cell()
    strategy = make(n_initial=4, seed=0)
    for b in range(5):
        strategy.observe(finished(space, 0, b, stopped_at=1))
    for b in range(3):
        strategy.observe(finished(space, 1, b, stopped_at=3))
    # at step 1: the five stopped there and the three that went on (their epoch 1)
    assert len(strategy.results_at(1)) == 8
    assert strategy.results_at(1)[sample_key({"a": 1, "b": 0})] == [value({"a": 1, "b": 0}, 1)]
    fit_now(strategy, space)
    assert strategy._level == 1  # step 3 has three results, fewer than n_initial
    assert len(fitted_keys(strategy)) == 8
    strategy.observe(finished(space, 2, 0))  # to the end: the fourth result at step 3
    assert len(strategy.results_at(3)) == 4
    fit_now(strategy, space)
    assert strategy._level == 3
    assert fitted_keys(strategy) == set(strategy.results_at(3))
    for b in range(3):
        strategy.observe(finished(space, 3, b))
    fit_now(strategy, space)
    assert strategy._level == math.inf
    assert fitted_keys(strategy) == {sample_key({"a": a, "b": b}) for a, b in
                                     [(2, 0), (3, 0), (3, 1), (3, 2)]}


def test_full_fidelity_results_are_booked_as_before() -> None:
    space = cell()
    strategy = BayesOpt(n_initial=2, seed=0)
    for a in range(3):
        strategy.observe(finished(space, a, a))
        strategy.observe(finished(space, a, a))  # evaluated twice
    assert list(strategy.results_at(math.inf).values()) == [
        [value({"a": a, "b": a}, STEPS)] * 2 for a in range(3)]
    assert strategy._fit_fidelity(100) == math.inf  # no model stopped: no other fidelity


def test_bayes_opt_caps_the_points_of_one_fit() -> None:
    space = cell()
    strategy = BayesOpt(n_initial=2, max_points=10, seed=0)
    for a in range(6):
        for b in range(4):
            strategy.observe(finished(space, a, b, stopped_at=1))
    fit_now(strategy, space)
    keys = strategy._keys
    assert len(keys) == 10
    best = sorted(strategy.results_at(1).items(), key=lambda kv: -kv[1][0])[:5]
    assert {key for key, _ in best} <= set(keys)  # the best half, then the latest
    assert keys[-1] == sample_key({"a": 5, "b": 3})
    with pytest.raises(ValueError, match="max_points"):
        BayesOpt(max_points=1)


@pytest.mark.parametrize("make", [BayesOpt, ModelBased])
async def test_asha_around_it_on_an_engine(make: Maker) -> None:
    proposer = make(n_initial=4, seed=3)
    strategy = ASHA(proposer, max_resource=STEPS, max_trials=30, seed=3)
    async with Engine(MockPool(curves, capacity=2)) as engine:
        await strategy.run(engine, cell())
    models = [h.model for h in engine.handles()]
    assert len({sample_key(m.sample or {}) for m in models}) == 30
    stopped = [m for m in models if m.metrics.stopped_at is not None]
    full = [m for m in models if m.status is ModelStatus.Trained and m not in stopped]
    assert stopped
    assert full
    assert set(proposer.results_at(math.inf)) == {sample_key(m.sample or {}) for m in full}
    assert fitted_keys(proposer) <= set(proposer.results_at(proposer._level))
    assert proposer.in_flight == 0
    best = max(quality(m.sample or {}) for m in full)  # type: ignore[arg-type]
    assert best >= 30  # of 0-35: the model led it to the good corner


@pytest.mark.parametrize("make", [BayesOpt, ModelBased])
async def test_promotion_asha_around_it_on_an_engine(make: Maker) -> None:
    proposer = make(n_initial=4, seed=4)
    strategy = PromotionASHA(proposer, max_resource=STEPS, max_trials=24, seed=4)
    async with Engine(InlinePool(2)) as engine:
        await strategy.run(engine, pausable_cell())
    models = [h.model for h in engine.handles()]
    assert len(models) == 24
    assert strategy.promotions > 0
    # the proposer heard each model once, at the first rung (step 1)
    assert len(proposer.results_at(1)) == 24
    assert proposer.results_at(math.inf) == {}
    assert proposer._level == 1
    assert any(m.status is ModelStatus.Trained and m.metrics.stopped_at is None
               for m in models)


@pytest.mark.parametrize("make", [BayesOpt, ModelBased])
async def test_a_resumed_asha_rebuilds_the_books_from_the_journal(
        tmp_path: Path, make: Maker) -> None:
    run = tmp_path / "run.db"
    first = make(n_initial=4, seed=5)
    async with Engine(MockPool(curves, capacity=2), journal=run) as engine:
        await ASHA(first, max_resource=STEPS, max_trials=20, seed=5).run(engine, cell())
    second = make(n_initial=4, seed=5)
    async with Engine(MockPool(curves, capacity=2), journal=run) as engine:
        await ASHA(second, max_resource=STEPS, max_trials=20, seed=5).run(engine, cell())
        assert len(engine.handles()) == 20  # nothing new: the state alone
    levels = sorted(first._books)
    assert len(levels) > 1
    assert sorted(second._books) == levels
    for level in levels:
        assert second.results_at(level) == first.results_at(level)
    assert second._fit_fidelity(4) == first._fit_fidelity(4)
    fit_now(first, cell())
    fit_now(second, cell())
    assert second._level == first._level
    assert fitted_keys(second) == fitted_keys(first)
