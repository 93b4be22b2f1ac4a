"""ASHA (stopping) and the median stopping rule, around random and evolution proposers."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, ModelStatus
from engine.testing import MockPool
from strategies import (
    ASHA,
    MedianStopping,
    RandomSearch,
    Reevaluation,
    RegularizedEvolution,
    rank,
    sample_key,
    search,
)
from strategies.base import ranked_samples
from strategies.schedulers import quantile, rung_levels

pytestmark = pytest.mark.anyio

STEPS = 9


class Cell(e.BaseModelSpace):
    def __init__(self) -> None:
        self.a = e.ensure_frozen(e.Categorical(list(range(6)), label="a"))
        self.b = e.ensure_frozen(e.Categorical(list(range(6)), label="b"))


def quality(sample: dict[str, int]) -> float:
    return sample["a"] * 6 + sample["b"]


def value(sample: dict[str, int], step: int) -> float:
    """A learning curve: better samples are better at every step; all rise with steps."""
    return quality(sample) + step / 100


async def curves(model: e.ExecutableModelSpace) -> float:
    sample = dict(model.sample or {})
    for step in range(1, STEPS + 1):
        e.report_intermediate(value(sample, step))
        await anyio.lowlevel.checkpoint()
    return value(sample, STEPS)


def cell() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(lambda _: 0.0))


def test_rungs_and_quantile() -> None:
    assert rung_levels(1, 9, 3) == (1, 3)
    assert rung_levels(1, 27, 3) == (1, 3, 9)
    assert rung_levels(2, 12, 2) == (2, 4, 8)
    assert rung_levels(5, 5, 3) == ()
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert quantile([4.0, 1.0], 2 / 3) == pytest.approx(3.0)
    assert quantile([7.0], 0.9) == 7.0


@pytest.mark.parametrize(("bad", "named"), [
    ({"min_resource": 0, "max_resource": 9}, "min_resource"),
    ({"min_resource": 3, "max_resource": 2}, "max_resource"),
    ({"max_resource": 9, "reduction_factor": 1}, "reduction_factor"),
    ({"max_resource": 9.5}, "max_resource"),
])
def test_asha_refuses_bad_arguments(bad: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ASHA(**bad)  # type: ignore[arg-type]


def test_a_proposer_must_be_a_strategy() -> None:
    with pytest.raises(TypeError, match="proposer must be a BaseStrategy"):
        ASHA(object(), max_resource=9)  # type: ignore[arg-type]


def check_asha_decisions(strategy: ASHA, handles: list[e.ModelHandle]) -> None:
    """Replay each rung's records in order: a model was stopped exactly where its value
    was not in the top 1/eta of what the rung held when it arrived."""
    for rung, values in strategy.recorded.items():
        for i, current in enumerate(values):
            so_far = values[:i + 1]
            cutoff = sorted(so_far)[math.floor((1 - 1 / 3) * i)]  # at least this one
            if current < cutoff:
                assert not strategy.promising(current, so_far), (rung, i)
    for handle in handles:
        stopped_at = handle.model.metrics.stopped_at
        assert handle.status is ModelStatus.Trained
        assert stopped_at is None or stopped_at in strategy.rungs


async def test_asha_stops_the_worse_models_at_the_rungs() -> None:
    strategy = ASHA(RandomSearch(0), max_resource=STEPS, reduction_factor=3, max_trials=30)
    async with Engine(MockPool(curves, capacity=1)) as engine:
        ranked = await search(cell(), strategy, engine)
    handles = engine.handles()
    check_asha_decisions(strategy, handles)
    full = [h for h in handles if h.model.metrics.stopped_at is None]
    stopped = [h for h in handles if h.model.metrics.stopped_at is not None]
    assert len(strategy.recorded[1]) == 30  # every model reached the first rung
    assert len(stopped) >= 15  # roughly 2/3 of them stop there
    assert 1 <= len(full) <= 10
    # one worker: a model better than every earlier one is never stopped
    record = -math.inf
    for handle in sorted(handles, key=lambda h: h.model_id):
        q = quality(dict(handle.model.sample or {}))
        if q > record:
            assert handle.model.metrics.stopped_at is None
            record = q
    # the best found trained to its end, and ranks first
    best = max(handles, key=lambda h: quality(dict(h.model.sample or {})))
    assert ranked[0] is best.model
    assert engine.best() is best.model
    # the stopped ones used less compute than full trainings would have
    steps = sum(len(h.model.metrics.intermediates) for h in handles)
    assert steps < 0.6 * STEPS * len(handles)


async def test_asha_with_an_evolution_proposer_feeds_it_every_model() -> None:
    proposer = RegularizedEvolution(8, sample_size=3, seed=1)
    strategy = ASHA(proposer, max_resource=STEPS, max_trials=24)
    async with Engine(MockPool(curves, capacity=3)) as engine:
        await strategy.run(engine, cell())
    assert len(proposer.history) == 24  # stopped models observed too
    assert proposer.in_flight == 0
    assert proposer.seen_count == strategy.seen_count == 24
    assert len(proposer.population) == 8
    check_asha_decisions(strategy, engine.handles())
    assert any(h.model.metrics.stopped_at is not None for h in engine.handles())


class NoisyCurves:
    """:func:`value` plus Gaussian noise at every step, from its own seeded stream: a
    model stopped early can show a value above what a better one ends at."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    async def __call__(self, model: e.ExecutableModelSpace) -> float:
        sample = dict(model.sample or {})
        reported = 0.0
        for step in range(1, STEPS + 1):
            reported = value(sample, step) / 6 + self.rng.gauss(0.0, 2.0)
            e.report_intermediate(reported)
            await anyio.lowlevel.checkpoint()
        return reported


async def test_asha_evolution_reevaluates_the_leader_at_the_highest_fidelity() -> None:
    """Evolution under ASHA re-evaluates exactly the sample ``ranked_samples`` puts first
    (models trained to their end above the stopped ones, then the mean there), while it
    has fewer than ``evaluations`` results at that fidelity; never a stopped model whose
    early value beats the full trainings' means."""
    policy = Reevaluation(top_k=1, evaluations=3, share=0.3)
    proposer = RegularizedEvolution(6, sample_size=3, seed=2, reevaluate=policy)
    strategy = ASHA(proposer, max_resource=STEPS, max_trials=60)
    async with Engine(MockPool(NoisyCurves(3), capacity=1)) as engine:
        await strategy.run(engine, cell())
    models = [h.model for h in sorted(engine.handles(), key=lambda h: h.model_id)]
    seen: set[bytes] = set()
    repeats = 0
    for index, model in enumerate(models):
        key = sample_key(model.sample or {})
        if index:
            leader = ranked_samples(models[:index])[0]
            due = (leader.count < policy.evaluations
                   and repeats + 1 <= policy.share * (index + 1))
            assert (key in seen) is due, f"model {index}"
            if due:
                assert model.sample == leader.model.sample, f"model {index}"
        repeats += key in seen
        seen.add(key)
    assert repeats >= 3
    # the rule was put to the test: some stopped model's value beat a full one's
    finals = [float(m.metric) for m in models if m.metrics.stopped_at is None]  # type: ignore[arg-type]
    stopped = [float(m.metric) for m in models if m.metrics.stopped_at is not None]  # type: ignore[arg-type]
    assert finals
    assert max(stopped) > min(finals)


async def test_asha_never_waits_for_a_rung_to_fill() -> None:
    """A model held at its first rung does not hold up the others: they reach rungs,
    are decided, finish, and new ones are proposed meanwhile."""
    release = anyio.Event()
    slow_sample = {"a": 5, "b": 5}

    async def held(model: e.ExecutableModelSpace) -> float:
        if dict(model.sample or {}) == slow_sample:
            e.report_intermediate(value(slow_sample, 1))
            await release.wait()
            for step in range(2, STEPS + 1):
                e.report_intermediate(value(slow_sample, step))
            return value(slow_sample, STEPS)
        return await curves(model)

    class First(RandomSearch):
        def propose(self, leaves: e.Sample) -> e.Sample | None:  # type: ignore[override]
            return dict(slow_sample) if self.seen_count == 0 else super().propose(leaves)  # type: ignore[return-value,arg-type]

    strategy = ASHA(First(3), max_resource=STEPS, max_trials=12)
    async with Engine(MockPool(held, capacity=2)) as engine, anyio.create_task_group() as tg:
        tg.start_soon(strategy.run, engine, cell())
        while sum(1 for h in engine.handles() if h.done) < 11:
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()
        slow = engine.handles()[0]
        assert not slow.done
        assert slow.model.metrics.intermediates == [value(slow_sample, 1)]
        release.set()
    assert slow.status is ModelStatus.Trained
    assert slow.model.metrics.stopped_at is None  # the best sample: never stopped


async def test_median_stopping_stops_below_the_median() -> None:
    strategy = MedianStopping(RandomSearch(2), grace_steps=2, min_samples=3, max_trials=20)
    async with Engine(MockPool(curves, capacity=1)) as engine:
        ranked = await search(cell(), strategy, engine)
    handles = sorted(engine.handles(), key=lambda h: h.model_id)
    for i, handle in enumerate(handles):  # one worker: the others are the earlier ones
        sample = dict(handle.model.sample or {})
        expected = None
        for step in range(2, STEPS + 1):
            means = [statistics.fmean(value(dict(h.model.sample or {}), s)
                                      for s in range(1, step + 1))
                     for h in handles[:i] if len(h.model.metrics.intermediates) >= step]
            if len(means) >= 3 and value(sample, step) < statistics.median(means):
                expected = step
                break
        assert handle.model.metrics.stopped_at == expected, handle
    assert sum(h.model.metrics.stopped_at is not None for h in handles) >= 5
    assert rank([h.model for h in handles])[0] is ranked[0]
    assert ranked[0].metrics.stopped_at is None


async def test_median_stopping_minimizes_under_mode_min() -> None:
    proposer = RandomSearch(4, mode="min")
    strategy = MedianStopping(proposer, min_samples=2, max_trials=15)
    assert strategy.mode == "min"
    async with Engine(MockPool(curves, capacity=1)) as engine:
        ranked = await search(cell(), strategy, engine)
    handles = engine.handles()
    best = min(handles, key=lambda h: quality(dict(h.model.sample or {})))
    assert ranked[0] is best.model
    assert best.model.metrics.stopped_at is None
    assert any(h.model.metrics.stopped_at is not None for h in handles)


@pytest.mark.parametrize("kind", ["asha", "median"])
async def test_a_resumed_run_continues_the_schedule(tmp_path: Path, kind: str) -> None:
    run = tmp_path / "run.db"

    def make(seed: int) -> ASHA | MedianStopping:
        if kind == "asha":
            return ASHA(RandomSearch(seed), max_resource=STEPS, max_trials=8 if seed == 0
                        else 14)
        return MedianStopping(RandomSearch(seed), max_trials=8 if seed == 0 else 14)

    first = make(0)
    async with Engine(MockPool(curves), journal=run) as engine:
        await first.run(engine, cell())
    second = make(1)
    async with Engine(MockPool(curves), journal=run) as engine:
        await second.run(engine, cell())
        handles = engine.handles()
    assert len(handles) == 14
    assert second.seen_count == 14
    if isinstance(first, ASHA) and isinstance(second, ASHA):
        assert second.recorded[1][:8] == first.recorded[1]  # rebuilt, then continued
        assert len(second.recorded[1]) == 14
    elif isinstance(first, MedianStopping) and isinstance(second, MedianStopping):
        assert second.running_means[1][:8] == first.running_means[1]
        assert len(second.running_means[1]) == 14
