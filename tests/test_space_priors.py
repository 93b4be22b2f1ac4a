"""Priors: weights on Categorical (and LayerChoice / InputChoice), normal and log-normal
Numerical, drawn by random sampling, by evolution's random restarts and mutations.
Statistical checks use fixed seeds and bounds several standard errors wide."""

from __future__ import annotations

import collections
import math
import random
import statistics
from typing import Any

import pytest
import torch
from torch import nn

import engine as e
from engine import Categorical, Engine, InlinePool, Numerical
from engine.nn import CategoricalMultiple, InputChoice, LayerChoice, ModelSpace
from strategies import RandomSearch, RegularizedEvolution
from strategies.evolution import mutate

N = 20_000


def draws(leaf: e.LabeledMutable, n: int = N, seed: int = 0) -> list[Any]:
    rng = random.Random(seed)
    return [leaf.random_value(rng) for _ in range(n)]


def shares(values: list[Any]) -> dict[Any, float]:
    counts = collections.Counter(map(str, values))
    return {key: count / len(values) for key, count in counts.items()}


# --- Categorical ------------------------------------------------------------------------


def test_categorical_weights_are_the_prior_of_random_draws() -> None:
    leaf = e.choice("x", ["a", "b", "c"], weights=[0.7, 0.2, 0.1])
    assert leaf == Categorical(["a", "b", "c"], weights=[0.7, 0.2, 0.1], label="x")
    got = shares(draws(leaf))
    for value, weight in zip("abc", [0.7, 0.2, 0.1], strict=True):
        assert got[value] == pytest.approx(weight, abs=0.015)
    # A value of weight 0 is never drawn.
    assert set(draws(Categorical([1, 2], weights=[1.0, 0.0], label="z"), 2000)) == {1}


def test_categorical_without_weights_draws_as_before() -> None:
    """No weights: the same stream of values as ``rng.choice`` (seeded runs keep theirs)."""
    leaf = Categorical([1, 2, 3], label="x")
    rng = random.Random(4)
    assert draws(leaf, 50, seed=4) == [rng.choice([1, 2, 3]) for _ in range(50)]


@pytest.mark.parametrize(("weights", "match"), [
    ([0.5, 0.5], "2 weights for 3 values"),
    ([0.5, 0.6, -0.1], r"each weight must be a number in \[0, 1\], got -0.1"),
    ([0.5, 0.2, 0.2], "the weights must sum to 1, got 0.9"),
    ([0.5, "0.3", 0.2], "each weight must be a number"),
])
def test_categorical_rejects_bad_weights(weights: Any, match: str) -> None:
    """As in the reference: one weight per value, a distribution summing to 1."""
    with pytest.raises(ValueError, match=match):
        Categorical([1, 2, 3], weights=weights, label="w")


def test_grid_lists_likely_values_first() -> None:
    """The reference's order: most likely first when weights differ, stable on ties."""
    assert Categorical([1, 2, 3, 4], weights=[0.1, 0.4, 0.1, 0.4],
                       label="g").grid_values() == [2, 4, 1, 3]
    assert Categorical([1, 2, 3], weights=[1 / 3] * 3, label="g").grid_values() == [1, 2, 3]


def test_randint_is_a_uniform_categorical() -> None:
    leaf = e.randint("r", 2, 5)
    assert leaf == Categorical([2, 3, 4], label="r")
    with pytest.raises(ValueError, match="lower \\(5\\) must be below upper \\(5\\)"):
        e.randint("r", 5, 5)


# --- Numerical --------------------------------------------------------------------------


def test_normal_prior() -> None:
    leaf = e.normal("x", 2.0, 3.0)
    assert leaf == Numerical(mu=2.0, sigma=3.0, label="x")
    values = draws(leaf)
    assert statistics.fmean(values) == pytest.approx(2.0, abs=0.1)
    assert statistics.stdev(values) == pytest.approx(3.0, abs=0.1)
    assert leaf.default_value() == pytest.approx(2.0)  # the median, as in the reference
    q = statistics.NormalDist().inv_cdf(0.75)
    assert leaf.grid_values(2) == pytest.approx([2 - 3 * q, 2.0, 2 + 3 * q])
    assert leaf.contains({"x": -1e6})  # unbounded
    assert not leaf.contains({"x": math.inf})
    assert not leaf.contains({"x": math.nan})


def test_bounds_truncate_a_normal_prior() -> None:
    """Differs from the reference on purpose: it clips (about half the draws of this one
    would be exactly 0); truncation keeps the normal's shape inside the bounds."""
    leaf = Numerical(0, 1, mu=0, sigma=1, label="t")
    values = draws(leaf)
    assert all(0 < v < 1 for v in values)
    phi = statistics.NormalDist()
    mean = (math.exp(-0) - math.exp(-0.5)) / math.sqrt(2 * math.pi) / (phi.cdf(1) - 0.5)
    assert statistics.fmean(values) == pytest.approx(mean, abs=0.01)
    with pytest.raises(ValueError, match="holds no probability"):
        Numerical(100, 101, mu=0, sigma=1, label="far")


def test_lognormal_prior() -> None:
    """The reference's ``lognormal``: exp of a normal draw of mean mu, deviation sigma."""
    leaf = e.lognormal("lr", -3.0, 0.5)
    values = draws(leaf)
    assert all(v > 0 for v in values)
    logs = [math.log(v) for v in values]
    assert statistics.fmean(logs) == pytest.approx(-3.0, abs=0.02)
    assert statistics.stdev(logs) == pytest.approx(0.5, abs=0.02)
    assert leaf.default_value() == pytest.approx(math.exp(-3.0))


def test_quantized_priors_give_valid_multiples() -> None:
    for leaf in (e.qnormal("q", 10, 4, 2), e.qlognormal("ql", 2, 1, 5),
                 e.quniform("qu", 0, 10, 2.5), e.qloguniform("qlu", 1, 100, 1)):
        for value in draws(leaf, 500):
            assert leaf.contains({leaf.label: value})
            assert value / leaf.quantize == pytest.approx(round(value / leaf.quantize))


def test_uniform_shortcuts() -> None:
    assert e.uniform("u", 0, 2) == Numerical(0, 2, label="u")
    assert e.loguniform("l", 1e-4, 1) == Numerical(1e-4, 1, log=True, label="l")
    logs = [math.log10(v) for v in draws(e.loguniform("l", 1e-4, 1))]
    assert statistics.fmean(logs) == pytest.approx(-2.0, abs=0.05)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"mu": 1.0}, ValueError, "needs both mu and sigma"),
    ({"mu": 0.0, "sigma": 0.0}, ValueError, "sigma must be a finite number > 0"),
    ({"mu": math.inf, "sigma": 1.0}, TypeError, "mu must be a finite number"),
    ({"low": -math.inf, "high": 1.0}, TypeError, "an infinite bound needs a normal prior"),
])
def test_numerical_rejects_bad_priors(kwargs: Any, error: type[Exception], match: str) -> None:
    args = {"low": 0.0, "high": 1.0} if "low" not in kwargs else {}
    with pytest.raises(error, match=match):
        Numerical(**args, **kwargs, label="bad")


# --- layers -----------------------------------------------------------------------------


class Weighted(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.act = LayerChoice([nn.ReLU(), nn.Tanh()], weights=[0.8, 0.2], label="act")
        self.pick = InputChoice(3, 2, weights=[0.6, 0.4, 0.0], label="pick")

    def forward(self, x: torch.Tensor) -> Any:
        return self.pick([self.act(x), x, -x])


def test_layer_and_input_choice_weights() -> None:
    space = e.SimplifiedModelSpace.from_model(Weighted())
    leaves = space.simplify()
    assert shares(draws(leaves["act"]))["0"] == pytest.approx(0.8, abs=0.015)
    # Two of three, drawn without replacement: input 2 (weight 0) never comes up.
    assert set(shares(draws(leaves["pick"], 2000))) == {"[0, 1]"}
    model = space.freeze({"act": 1, "pick": [0, 1]})
    built = e.SimplifiedModelSpace.load(model.dump()).executable_model()
    assert isinstance(built.act, nn.Tanh)
    assert built(torch.ones(1)).item() == pytest.approx(math.tanh(1) + 1)


def test_categorical_multiple_inclusion_probabilities() -> None:
    """Without n_chosen, as in the reference, a weight is a value's chance to be in."""
    leaf = CategoricalMultiple(["a", "b"], weights=[0.9, 0.1], label="m")
    values = draws(leaf)
    assert all(values)  # an empty pick is drawn again
    inside = sum("b" in v for v in values) / len(values)
    assert inside == pytest.approx(0.1 / (1 - 0.1 * 0.9), abs=0.01)
    with pytest.raises(ValueError, match="only 1 values have a weight above 0, too few"):
        CategoricalMultiple([1, 2, 3], n_chosen=2, weights=[1.0, 0.0, 0.0], label="m2")


# --- strategies -------------------------------------------------------------------------


class Prior(e.BaseModelSpace):
    def __init__(self) -> None:
        self.op = e.ensure_frozen(e.choice("op", ["a", "b"], weights=[0.9, 0.1]))
        self.lr = e.ensure_frozen(e.lognormal("lr", -3.0, 1.0))


def lr_of(model: Prior) -> float:
    return float(model.lr)


@pytest.mark.parametrize("make", [lambda: RandomSearch(1),
                                  lambda: RegularizedEvolution(200, seed=1)],
                         ids=["random", "evolution-restarts"])
@pytest.mark.anyio
async def test_strategies_draw_from_the_priors(make: Any) -> None:
    space = e.RawFormatModelSpace.from_model(Prior(), e.FunctionEvaluator(lr_of))
    async with Engine(InlinePool(4), max_trials=200) as engine:
        await make().run(engine, space)
    samples = [h.model.sample or {} for h in engine.handles()]
    assert len(samples) == 200
    assert sum(s["op"] == "a" for s in samples) / 200 == pytest.approx(0.9, abs=0.07)
    logs = [math.log(s["lr"]) for s in samples]
    assert statistics.fmean(logs) == pytest.approx(-3.0, abs=0.25)


def test_mutation_follows_the_weights() -> None:
    leaves = {"x": Categorical(["a", "b", "c"], weights=[0.1, 0.89, 0.01], label="x")}
    rng = random.Random(2)
    children = [mutate({"x": "a"}, leaves, rng)["x"] for _ in range(2000)]
    assert "a" not in children
    assert children.count("b") / 2000 > 0.96
