"""BayesOpt: valid proposals on any space (numerical, conditional), distinct in flight,
reproducible, resumable, better than random search on a small table; its GP (issue 17)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import engine as e
from engine.nn import LayerChoice, ModelSpace, Repeat
from strategies import NOT_YET, BayesOpt, StopReason, sample_key
from strategies._gp import THETAS, Fit, Points, distances, expected_improvement, fit
from strategies.base import Leaves
from strategies.bayes_opt import normal_scores
from tests._surrogate_fixtures import Mixed, cell, mixed_score, run, samples

pytestmark = pytest.mark.anyio

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
