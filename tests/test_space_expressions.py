"""Mutable expressions: arithmetic and comparison on mutables, frozen with the sample,
usable as layer arguments, Repeat depths, evaluator and init arguments."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from torch import nn

import engine as e
from engine import Categorical, MutableExpression, Numerical, SampleMissingError
from engine.nn import LayerChoice, Linear, ModelSpace, Repeat


def test_the_reference_example() -> None:
    """The reference's own: the sum of two Categoricals simplifies to both and freezes
    to the sum."""
    a, b = Categorical([2, 3], label="global_1"), Categorical([5, 7], label="global_2")
    total = a + b
    assert repr(total) == ("(Categorical([2, 3], label='global_1') + "
                           "Categorical([5, 7], label='global_2'))")
    assert total.simplify() == {"global_1": a, "global_2": b}
    assert total.freeze({"global_1": 2, "global_2": 7}) == 9


@pytest.mark.parametrize(("make", "expected"), [
    (lambda w, k: w * 2, 32), (lambda w, k: 2 * w, 32), (lambda w, k: k // 2, 2),
    (lambda w, k: w + k, 21), (lambda w, k: 100 - w, 84), (lambda w, k: w - k, 11),
    (lambda w, k: w / 4, 4.0), (lambda w, k: 64 / w, 4.0), (lambda w, k: w % k, 1),
    (lambda w, k: 50 // w, 3), (lambda w, k: 50 % w, 2), (lambda w, k: k ** 2, 25),
    (lambda w, k: 2 ** k, 32), (lambda w, k: -w, -16), (lambda w, k: +w, 16),
    (lambda w, k: abs(k - w), 11), (lambda w, k: w > k, True), (lambda w, k: w < k, False),
    (lambda w, k: w >= 16, True), (lambda w, k: k <= 4, False),
    (lambda w, k: (w + k) * 2 // 3, 14),
])
def test_operators(make: Any, expected: Any) -> None:
    w, k = Categorical([8, 16], label="w"), Categorical([3, 5], label="k")
    expr = make(w, k)
    assert isinstance(expr, MutableExpression)
    assert expr.freeze({"w": 16, "k": 5}) == expected
    assert set(expr.simplify()) <= {"w", "k"}


def test_max_min_condition_equal() -> None:
    a, b = Categorical([1, 4], label="a"), Numerical(0, 3, label="b")
    sample = {"a": 4, "b": 2.5}
    assert MutableExpression.max(a, b, 3).freeze(sample) == 4
    assert MutableExpression.min(a, b).freeze(sample) == 2.5
    assert MutableExpression.condition(a > b, "wide", "narrow").freeze(sample) == "wide"
    assert MutableExpression.condition(a > b, a * 2, b).freeze({"a": 1, "b": 2.0}) == 2.0
    assert MutableExpression.equal(a, 4).freeze(sample) is True
    assert repr(MutableExpression.max(a, 3)) == "max(Categorical([1, 4], label='a'), 3)"


def test_an_expression_has_no_truth_value() -> None:
    a, b = Categorical([1, 4], label="a"), Categorical([2, 3], label="b")
    with pytest.raises(TypeError, match=r"use MutableExpression\.condition"):
        bool(a > b)
    with pytest.raises(TypeError, match="no truth value"):
        max(a, b)


def test_equality_still_compares_mutables() -> None:
    """Differs from the reference on purpose: ``==`` is not symbolic here."""
    a = Categorical([1, 2], label="a")
    assert (a == Categorical([1, 2], label="a")) is True
    assert (a * 2 == Categorical([1, 2], label="a") * 2) is True
    assert (a * 2 == a * 3) is False


def test_an_expression_validates_defaults_and_draws() -> None:
    w = Categorical([8, 16], label="w")
    expr = w * 2 + 1
    with pytest.raises(SampleMissingError):
        expr.freeze({})
    assert expr.default() == 17
    assert expr.random(random_state=random.Random(0)) in {17, 33}
    assert list(expr.grid()) == [17, 33]


class Widths(ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = Categorical([4, 8], label="width")
        stages = Categorical([1, 2], label="stages")
        self.fc1 = Linear(3, width * 2)
        self.body = Repeat(lambda i: LayerChoice([nn.ReLU(), nn.Tanh()], label=f"act{i}"),
                           stages * 2)
        self.fc2 = Linear(width * 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.body(self.fc1(x)))


def score(model: Widths, scale: float = 1.0) -> float:
    return scale * model.fc1.out_features


@pytest.mark.parametrize("fmt", [e.RawFormatModelSpace, e.SimplifiedModelSpace])
def test_expressions_in_layers_repeat_and_evaluator(fmt: Any) -> None:
    lr = Categorical([1, 10], label="lr")
    space = fmt.from_model(Widths(), e.FunctionEvaluator(score, scale=lr / 10))
    assert set(space.simplify()) == {"width", "stages", "act0", "act1", "act2", "act3", "lr"}
    sample = {"width": 8, "stages": 1, "act0": 1, "act1": 0, "act2": 1, "act3": 1, "lr": 10}
    # stages * 2 = 2 blocks: act2 and act3 are not used.
    assert space.used_labels(sample) == ["width", "stages", "act0", "act1", "lr"]
    model = space.freeze(sample)
    assert model.sample == {"width": 8, "stages": 1, "act0": 1, "act1": 0, "lr": 10}
    if isinstance(model, e.SimplifiedModelSpace):
        model = e.SimplifiedModelSpace.load(model.dump())
    built = model.executable_model()
    assert built.fc1.out_features == 16
    assert built.fc2.in_features == 16
    assert [type(m) for m in built.body] == [nn.Tanh, nn.ReLU]
    assert built(torch.zeros(2, 3)).shape == (2, 1)
    assert model.execute() == 16.0


def test_repeat_depth_expression_checks() -> None:
    with pytest.raises(TypeError, match="must give ints >= 0"):
        Repeat(nn.ReLU(), Categorical([1, 2], label="d") - 3)
    with pytest.raises(TypeError, match="Categorical choices only"):
        Repeat(nn.ReLU(), Numerical(1, 3, label="d") * 1)
    repeat = Repeat(nn.ReLU(), Categorical([1, 2], label="d") + 1)
    assert len(repeat.blocks) == 3
    assert repeat.label is None
    assert len(repeat.freeze({"d": 1})) == 2
