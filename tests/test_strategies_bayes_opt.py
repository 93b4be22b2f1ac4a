"""BayesOpt: valid proposals on any space (numerical, conditional), distinct in flight,
reproducible, resumable, better than random search on a small table; its GP (issue 17)."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import pytest
import torch
from torch import nn

import engine as e
from engine import Engine, InlinePool, ModelStatus
from engine.nn import LayerChoice, ModelSpace, Repeat
from engine.testing import MockPool
from strategies import NOT_YET, BayesOpt, RandomSearch, StopReason, sample_key
from strategies._gp import THETAS, Fit, Points, distances, expected_improvement, fit
from strategies.base import BaseStrategy, Leaves
from strategies.bayes_opt import normal_scores
from strategies.evolution import Reevaluation

pytestmark = pytest.mark.anyio

LABELS = [f"op{i}" for i in range(6)]
TARGET = {label: (2 * i + 1) % 5 for i, label in enumerate(LABELS)}


class Cell(e.BaseModelSpace):
    """Six labels of five values (15625 samples)."""

    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(5)), label=label) for label in LABELS))


class Mixed(e.BaseModelSpace):
    """A Categorical, a log-scale Numerical and a quantized one."""

    def __init__(self) -> None:
        self.kind = e.ensure_frozen(e.Categorical(["a", "b", "c"], label="kind"))
        self.lr = e.ensure_frozen(e.Numerical(1e-5, 1.0, log=True, label="lr"))
        self.dropout = e.ensure_frozen(e.Numerical(0.0, 0.5, quantize=0.1, label="dropout"))


class Cond(ModelSpace):
    """``op`` is plain or holds the LayerChoice ``inner``; ``depth`` stacks 1 to 3
    LayerChoice blocks: 96 flat samples, 42 networks."""

    def __init__(self) -> None:
        super().__init__()
        inner = LayerChoice([nn.Identity(), nn.ReLU()], label="inner")
        self.op = LayerChoice({"plain": nn.Linear(4, 4),
                               "nested": nn.Sequential(inner, nn.Linear(4, 4))}, label="op")
        self.stack = Repeat(
            lambda i: LayerChoice([nn.Identity(), nn.Tanh()], label=f"b{i}"), (1, 3),
            label="depth")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(self.op(x))


def table_score(ops: list[int]) -> float:
    """A synthetic table with interactions: matches to TARGET, plus a bonus for each
    adjacent pair of labels that both match, minus a penalty for op 0 ("none")."""
    hits = [op == TARGET[label] for op, label in zip(ops, LABELS, strict=True)]
    pairs = sum(a and b for a, b in itertools.pairwise(hits))
    return float(sum(hits) + 0.5 * pairs - 2.0 * ops.count(0))


async def cell_score(model: Cell) -> float:
    return table_score(list(model.ops))


async def mixed_score(model: Mixed) -> float:
    return -abs(model.lr - 1e-3) * 100 - abs(model.dropout - 0.2) + (model.kind == "b")


def cell() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(cell_score))


async def run(strategy: BaseStrategy, space: e.ExecutableModelSpace, trials: int | None,
              workers: int = 1) -> list[e.ModelHandle]:
    async with Engine(InlinePool(workers), max_trials=trials) as engine:
        await strategy.run(engine, space)
    assert all(h.status is ModelStatus.Trained for h in engine.handles())
    return engine.handles()


def samples(handles: list[e.ModelHandle]) -> list[dict[str, Any]]:
    return [dict(h.model.sample or {}) for h in handles]


async def test_proposals_are_valid_samples_of_a_mixed_space() -> None:
    space = e.RawFormatModelSpace.from_model(Mixed(), e.FunctionEvaluator(mixed_score))
    leaves = space.simplify()
    handles = await run(BayesOpt(n_initial=4, seed=1), space, 40)
    assert len(handles) == 40
    for sample in samples(handles):
        assert set(sample) == set(leaves)
        for label, leaf in leaves.items():
            assert leaf.check_value(sample[label]) is None, (label, sample[label])
    assert all(abs(s["dropout"] * 10 - round(s["dropout"] * 10)) < 1e-9
               for s in samples(handles))
    assert len({sample_key(s) for s in samples(handles)}) == 40
    best = max(handles, key=lambda h: h.model.metric or -math.inf).model.sample or {}
    assert 1e-4 < best["lr"] < 1e-2  # the GP found the log-scale optimum's decade


async def test_a_conditional_space_is_searched_to_its_last_network() -> None:
    space = e.SimplifiedModelSpace.from_model(
        Cond(), e.FunctionEvaluator(lambda model: float(len(repr(model)))))
    strategy = BayesOpt(n_initial=4, seed=0)
    handles = await run(strategy, space, None, workers=2)
    assert strategy.stop_reason is StopReason.space_exhausted
    assert len({sample_key(s) for s in samples(handles)}) == len(handles) == 42


async def test_four_workers_never_train_the_same_sample_at_once() -> None:
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

    strategy = BayesOpt(n_initial=4, reevaluate=Reevaluation(share=0.3, evaluations=3),
                        seed=2)
    async with Engine(MockPool(trial, capacity=4), max_trials=60) as engine:
        await strategy.run(engine, cell())
    assert len(engine.handles()) == 60
    assert max(overlaps) == 4  # four were in flight together, never one sample twice
    assert len({sample_key(s) for s in samples(engine.handles())}) < 60  # re-evaluations


async def test_same_seed_and_one_worker_give_the_same_samples() -> None:
    first = samples(await run(BayesOpt(seed=5), cell(), 30))
    again = samples(await run(BayesOpt(seed=5), cell(), 30))
    other = samples(await run(BayesOpt(seed=6), cell(), 30))
    assert first == again
    assert first != other


async def test_deterministic_ignores_the_completion_order() -> None:
    async def once(salt: int) -> list[dict[str, Any]]:
        order = random.Random(salt)

        async def trial(model: e.ExecutableModelSpace) -> float:
            for _ in range(order.randrange(10)):
                await anyio.lowlevel.checkpoint()
            return table_score([(model.sample or {})[label] for label in LABELS])

        strategy = BayesOpt(n_initial=4, seed=3, deterministic=True)
        async with Engine(MockPool(trial, capacity=3), max_trials=25) as engine:
            await strategy.run(engine, cell())
        return samples(engine.handles())

    assert await once(1) == await once(2)


async def test_a_resumed_journal_continues_the_search(tmp_path: Path) -> None:
    journal = tmp_path / "run.nasrun"
    noisy = random.Random(0)

    async def noisy_score(model: Cell) -> float:
        return table_score(list(model.ops)) + noisy.gauss(0.0, 0.5)

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(noisy_score))
    make = lambda: BayesOpt(n_initial=4, reevaluate=Reevaluation(share=0.3), seed=4)  # noqa: E731
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


async def test_it_minimizes() -> None:
    async def loss(model: Cell) -> float:
        return -table_score(list(model.ops))

    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(loss))
    handles = await run(BayesOpt(seed=0, mode="min"), space, 50)
    assert min(h.model.metric or 0.0 for h in handles) <= -6.0


async def test_it_beats_random_search_on_a_small_table() -> None:
    """With fixed seeds: the best value found in 40 trials, over 6 searches each."""
    ours, theirs = [], []
    for seed in range(6):
        for strategy, found in ((BayesOpt(seed=seed), ours), (RandomSearch(seed), theirs)):
            handles = await run(strategy, cell(), 40)
            found.append(max(h.model.metric or 0.0 for h in handles))
    assert statistics.fmean(ours) > statistics.fmean(theirs) + 1.0
    assert sum(a >= b for a, b in zip(ours, theirs, strict=True)) >= 5


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_initial": 1}, "n_initial must be an int >= 2, got 1"),
    ({"parents": 1.5}, "parents must be an int >= 1, got 1.5"),
    ({"random_candidates": -1}, "random_candidates must be an int >= 0, got -1"),
    ({"double_mutations": True}, "double_mutations must be an int >= 0, got True"),
])
def test_bad_arguments_say_what_to_pass(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BayesOpt(**kwargs)


async def test_the_hyper_parameter_grid_is_spread_over_calls() -> None:
    """Each choice of hyper-parameters takes one call per length scale, each answered
    NOT_YET, so no call fits the whole grid; a pick follows."""

    answers: list[Any] = []

    class Recording(BayesOpt):
        def propose(self, leaves: Leaves) -> Any:
            answers.append(super().propose(leaves))
            return answers[-1]

    handles = await run(Recording(n_initial=4, seed=0), cell(), 30)
    assert len(handles) == 30
    runs = [len(list(group)) for key, group in itertools.groupby(
        answers, key=lambda answer: answer is NOT_YET) if key]
    assert len(runs) > 1  # the grid was fitted again as the results grew
    assert set(runs) == {len(THETAS)}
    assert answers[4:4 + len(THETAS)] == [NOT_YET] * len(THETAS)


def test_distances_are_hamming_on_choices_and_gaps_on_numbers() -> None:
    leaves = e.RawFormatModelSpace.from_model(
        Mixed(), e.FunctionEvaluator(mixed_score)).simplify()
    points = Points(leaves)
    x = points.encode([{"kind": "a", "lr": 1e-5, "dropout": 0.0},
                       {"kind": "c", "lr": 1e-3, "dropout": 0.0},
                       {"kind": "a"}, {}])  # the last two: conditional samples
    d = distances(x, x, points.kinds)
    assert d[0, 1] == pytest.approx((1 + 0.4 + 0) / 3)  # 1e-3: 40% of 1e-5..1 in log
    assert d[0, 2] == pytest.approx(2 / 3)  # a value against a missing one: 1
    assert d[2, 3] == pytest.approx(1 / 3)  # missing against missing: 0
    assert np.allclose(d, d.T)
    assert np.allclose(np.diag(d), 0.0)


def test_the_marginal_likelihood_picks_the_length_scale_of_the_data() -> None:
    """Targets that depend on one label of six want a long length scale (small theta);
    white noise wants a short one or a large noise ratio."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (80, 6)).astype(np.float64)
    d = distances(x, x, [5] * 6)
    counts = np.ones(80)
    smooth = fit(d, (x[:, 0] == 1) * 2.0 - 0.4, counts, [(1.0, 0.02), (16.0, 0.02)])
    assert smooth.theta == 1.0
    noise = fit(d, rng.standard_normal(80), counts, [(1.0, 0.02), (1.0, 1.0)])
    assert noise.ratio == 1.0


def test_a_believed_point_keeps_the_mean_and_loses_its_uncertainty() -> None:
    """The kriging believer: a sample in flight, given its posterior mean as result,
    changes no prediction there but leaves little uncertainty, so the next proposal
    goes elsewhere."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, (30, 6)).astype(np.float64)
    y = rng.standard_normal(30)
    z = rng.integers(0, 5, (1, 6)).astype(np.float64)
    model = Fit(distances(x, x, [5] * 6), y, np.ones(30), 4.0, 0.02)
    before_mean, before_std = model.predict(distances(z, x, [5] * 6))
    both = np.concatenate([x, z])
    believed = Fit(distances(both, both, [5] * 6), np.concatenate([y, before_mean]),
                   np.ones(31), 4.0, 0.02)
    after_mean, after_std = believed.predict(distances(z, both, [5] * 6))
    assert after_mean[0] == pytest.approx(before_mean[0], abs=1e-6)
    assert after_std[0] < 0.3 * before_std[0]


def test_expected_improvement_rewards_mean_and_uncertainty() -> None:
    ei = expected_improvement(np.array([0.0, 1.0, 0.0]), np.array([0.1, 0.1, 1.0]), 0.5)
    assert ei[1] > ei[2] > ei[0] > 0.0


def test_normal_scores_are_ranks_with_shared_ties() -> None:
    scores = normal_scores([10.0, -100.0, 10.0, 3.0])
    assert scores[0] == scores[2] > scores[3] > scores[1]
    assert sum(normal_scores([5.0, 1.0, 3.0, 2.0])) == pytest.approx(0.0)  # centred
