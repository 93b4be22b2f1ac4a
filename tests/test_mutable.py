"""Mutables: leaves, containers, samples, validation paths, default / random / grid."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

import pytest

from engine import (
    Categorical,
    DuplicateLabelError,
    MutableDict,
    MutableList,
    Numerical,
    SampleValidationError,
)


def _raises_at(mutable: Any, sample: Any, paths: list[str], match: str) -> None:
    error = mutable.check_contains(sample)
    assert isinstance(error, SampleValidationError)
    assert error.paths == paths
    assert not mutable.contains(sample)
    with pytest.raises(SampleValidationError, match=match) as info:
        mutable.validate(sample)
    assert info.value.paths == paths


# Categorical ----------------------------------------------------------------------------


def test_categorical_values_default_and_label() -> None:
    c = Categorical([3, 5, 7], label="k")
    assert (c.values, c.label, c.default()) == ([3, 5, 7], "k", 3)
    assert Categorical([3, 5, 7], default=7, label="k").default() == 7
    assert c.freeze({"k": 5}) == 5
    assert c.contains({"k": 7})
    assert list(c.leaf_mutables()) == [c]
    assert c.simplify() == {"k": c}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"values": []}, ValueError, "'c' needs at least one value"),
        ({"values": [1, 2, 1]}, ValueError, "'c' lists 1 twice"),
        ({"values": [(1, 2), [1, 2]]}, ValueError, r"lists \[1, 2\] twice"),
        ({"values": [1, 2], "default": 3}, ValueError, r"default 3 of 'c' is not one of \[1, 2\]"),
        ({"values": "abc"}, TypeError, "'c' takes a list of choices, got str 'abc'"),
        ({"values": {"a": 1}}, TypeError, "'c' takes a list of choices, got dict"),
    ],
)
def test_categorical_rejects_bad_definitions(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Categorical(label="c", **kwargs)


@pytest.mark.parametrize(
    ("label", "match"),
    [
        (None, "a categorical outside a ModelSpace needs an explicit label"),
        ("", "label must be a non-empty str, got ''"),
        (3, "label must be a non-empty str, got 3"),
    ],
)
def test_label_is_required_and_a_string(label: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        Categorical([1, 2], label=label)


def test_categorical_rejects_values_outside_its_choices() -> None:
    c = Categorical([1, 2], label="c")
    _raises_at(c, {"c": 3}, ["c"], r"3 is not one of the choices \[1, 2\] of 'c'")
    # True == 1 in Python, but a bool is not the int choice 1.
    _raises_at(c, {"c": True}, ["c"], "True is not one of the choices")
    _raises_at(c, {}, ["c"], "label 'c' is missing from the sample")


def test_categorical_accepts_a_list_for_a_tuple_choice_and_freezes_to_the_choice() -> None:
    c = Categorical([(3, 3), (5, 5)], label="kernel")
    assert c.contains({"kernel": [5, 5]})  # what a JSON or msgpack round trip gives back
    assert c.freeze({"kernel": [5, 5]}) == (5, 5)


@pytest.mark.parametrize("sample", [None, ["c"], "c=1", 3])
def test_a_sample_that_is_not_a_dict_is_a_type_error(sample: Any) -> None:
    container = MutableList([Categorical([1, 2], label="c")])
    for mutable in (container, container[0]):
        with pytest.raises(TypeError, match=r"a sample must be a dict \{label: value\}, got"):
            mutable.validate(sample)


def test_sample_labels_must_be_strings() -> None:
    with pytest.raises(TypeError, match="sample labels must be str, got int 1"):
        Categorical([1, 2], label="c").validate({1: 1, "c": 1})


# Numerical ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((1, 1), {}, ValueError, r"'n': low \(1\) must be below high \(1\)"),
        ((2, 1), {}, ValueError, r"low \(2\) must be below high \(1\)"),
        (("0", 1), {}, TypeError, "'n': low must be a finite number, got '0'"),
        ((0, math.inf), {}, TypeError, "high must be a finite number, got inf"),
        ((0, 1), {"log": True}, ValueError, "a log scale needs low > 0, got 0"),
        ((0, 1), {"quantize": 0}, ValueError, "quantize must be a positive number, got 0"),
        ((0, 1), {"quantize": "0.1"}, ValueError, "quantize must be a positive number"),
        ((0, 1), {"default": 2}, ValueError, "'n': default 2 is out of range"),
        ((0, 1), {"quantize": 0.25, "default": 0.3}, ValueError, "default 0.3 is out of range"),
    ],
)
def test_numerical_rejects_bad_definitions(
    args: tuple[Any, Any], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Numerical(*args, label="n", **kwargs)


def test_numerical_bounds_flags_and_default() -> None:
    n = Numerical(1, 100, log=True, quantize=None, label="lr")
    assert (n.low, n.high, n.log, n.quantize, n.label) == (1, 100, True, None, "lr")
    assert n.default() == pytest.approx(10.0)  # the middle of a log scale
    assert Numerical(0, 1, label="p").default() == 0.5
    assert Numerical(0, 1, default=0.2, label="p").default() == 0.2


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (1.5, r"1.5 is outside \[0, 1\] of 'p'"),
        (-0.1, r"-0.1 is outside \[0, 1\] of 'p'"),
        (math.nan, r"nan is outside \[0, 1\] of 'p'"),
        ("0.5", "'p' takes a number, got str '0.5'"),
        (True, "'p' takes a number, got bool True"),
        (None, "'p' takes a number, got NoneType None"),
    ],
)
def test_numerical_rejects_values_out_of_range_or_of_the_wrong_type(
    value: Any, match: str
) -> None:
    _raises_at(Numerical(0, 1, label="p"), {"p": value}, ["p"], match)


def test_quantized_numerical_takes_multiples_of_its_step_and_its_bounds() -> None:
    n = Numerical(0.05, 1, quantize=0.1, label="q")
    for ok in (0.05, 0.3, 0.1 * 3, 1):
        assert n.contains({"q": ok}), ok
    _raises_at(n, {"q": 0.35}, ["q"], "0.35 is not a multiple of 0.1 for 'q'")


def test_random_values_stay_in_range_on_log_and_quantized_scales() -> None:
    rng = random.Random(0)
    log = Numerical(1e-4, 1, log=True, label="lr")
    values = [log.random(random_state=rng) for _ in range(400)]
    assert all(1e-4 <= v <= 1 for v in values)
    # Log-uniform: about a quarter of the draws fall in each decade.
    assert 60 < sum(v < 1e-3 for v in values) < 140
    quantized = Numerical(0, 10, quantize=2.5, label="q")
    assert {quantized.random(random_state=rng) for _ in range(200)} == {0, 2.5, 5, 7.5, 10}


def test_numerical_grid_refines_with_granularity_and_keeps_coarser_points() -> None:
    n = Numerical(0, 1, label="p")
    assert n.grid_values() == [0.5]
    assert n.grid_values(2) == [0.25, 0.5, 0.75]
    assert set(n.grid_values(2)) <= set(n.grid_values(3))
    assert len(n.grid_values(3)) == 7
    assert list(n.grid(granularity=2)) == [0.25, 0.5, 0.75]
    assert Numerical(1, 100, log=True, label="l").grid_values(1) == [pytest.approx(10.0)]
    # Quantizing can merge points: each value appears once.
    assert Numerical(0, 1, quantize=0.5, label="q").grid_values(3) == [0.0, 0.5, 1]


@pytest.mark.parametrize("granularity", [0, -1, 1.5, True])
def test_grid_granularity_must_be_a_positive_int(granularity: Any) -> None:
    with pytest.raises(ValueError, match="granularity must be an int >= 1, got"):
        Numerical(0, 1, label="p").grid_values(granularity)


# Containers, samples, shared labels -----------------------------------------------------


def _nested() -> MutableDict:
    return MutableDict({
        "width": Categorical([8, 16], label="width"),
        "blocks": MutableList([
            Categorical(["conv", "pool"], label="op1"),
            7,
            MutableDict({"p": Numerical(0, 1, label="p"), "name": "fixed"}),
        ]),
    })


def test_containers_freeze_to_plain_values_with_a_flat_sample() -> None:
    space = _nested()
    sample = {"width": 16, "op1": "pool", "p": 0.25}
    assert [leaf.label for leaf in space.leaf_mutables()] == ["width", "op1", "p"]
    assert list(space.simplify()) == ["width", "op1", "p"]
    frozen = space.freeze(sample)
    assert frozen == {"width": 16, "blocks": ["pool", 7, {"p": 0.25, "name": "fixed"}]}
    assert type(frozen["blocks"]) is list
    assert space.contains(sample)


def test_a_container_reports_the_failing_label_as_its_path() -> None:
    space = _nested()
    _raises_at(space, {"width": 16, "op1": "pool", "p": 2}, ["p"], "outside")
    _raises_at(space, {"width": 16, "p": 0.5}, ["op1"], "label 'op1' is missing")


def test_default_random_and_memo() -> None:
    space = _nested()
    memo: dict[str, Any] = {}
    assert space.default(memo) == {"width": 8, "blocks": ["conv", 7, {"p": 0.5, "name": "fixed"}]}
    assert memo == {"width": 8, "op1": "conv", "p": 0.5}
    first, again = {}, {}  # type: ignore[var-annotated]
    assert space.random(first, random_state=random.Random(7)) == space.random(
        again, random_state=random.Random(7))
    assert first == again
    assert space.contains(first)
    pinned = {"width": 16}
    assert space.random(pinned, random_state=random.Random(1))["width"] == 16


def test_random_with_the_generator_as_first_argument_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="takes the generator as random_state="):
        _nested().random(random.Random(0))  # type: ignore[arg-type]


def test_grid_is_every_combination_in_a_fixed_order_and_memo_pins_labels() -> None:
    space = MutableList([Categorical([1, 2], label="a"), Categorical(["x", "y", "z"], label="b"),
                         Numerical(0, 1, label="p")])
    items = list(space.grid(granularity=2))
    assert len(items) == 2 * 3 * 3
    assert len({repr(item) for item in items}) == len(items)
    assert items[0] == [1, "x", 0.25]
    assert items[-1] == [2, "z", 0.75]
    memo = {"b": "y"}
    pinned = list(space.grid(memo))
    assert pinned == [[1, "y", 0.5], [2, "y", 0.5]]
    assert memo == {"b": "y", "a": 2, "p": 0.5}  # the last item's sample


def test_equal_mutables_under_one_label_share_one_choice() -> None:
    space = MutableList([Categorical([1, 2], label="c"), Categorical([1, 2], label="c")])
    assert list(space.simplify()) == ["c"]
    assert space.freeze({"c": 2}) == [2, 2]
    assert len(list(space.grid())) == 2


@pytest.mark.parametrize(
    "other",
    [
        Categorical([1, 3], label="c"),
        Categorical([1, 2], default=2, label="c"),
        Numerical(1, 2, label="c"),
    ],
)
def test_one_label_for_two_different_mutables_is_an_error(other: Any) -> None:
    space = MutableList([Categorical([1, 2], label="c"), other])
    with pytest.raises(DuplicateLabelError, match="label 'c' is bound to two different mutables"):
        space.simplify()
    # Even a sample that happens to fit both is refused: the space itself is wrong.
    with pytest.raises(DuplicateLabelError, match="give one of them another label"):
        space.validate({"c": 1})
    with pytest.raises(DuplicateLabelError):
        space.freeze({"c": 1})


# SampleValidationError ------------------------------------------------------------------


def test_sample_validation_error_paths_are_outermost_first() -> None:
    error = SampleValidationError("bad value", ["width"])
    assert str(error) == "bad value (at width)"
    assert error.prefixed("model") is error
    assert error.paths == ["model", "width"]
    assert str(error) == "bad value (at model/width)"
    assert isinstance(error, ValueError)
    assert str(SampleValidationError("no path")) == "no path"


def test_sample_validation_error_keeps_its_paths_through_pickle() -> None:
    error = SampleValidationError("bad value", ["model", "width"])
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.paths, str(copy)) == (error.message, error.paths, str(error))


def test_default_with_a_conflicting_memo_raises() -> None:
    # The reference checks the frozen value against the default and raises a ValueError.
    c = Categorical([1, 2, 3], default=2, label="x")
    with pytest.raises(SampleValidationError, match="holds 3 for 'x', whose default is 2") as info:
        c.default({"x": 3})
    assert info.value.paths == ["x"]
    assert isinstance(info.value, ValueError)
    memo = {"x": 2}
    assert c.default(memo) == 2
    assert memo == {"x": 2}
    with pytest.raises(SampleValidationError, match="9 is not one of the choices"):
        c.default({"x": 9})
    with pytest.raises(SampleValidationError, match="'p'"):
        _nested().default({"p": 0.25})
    with pytest.raises(SampleValidationError, match="'p'"):
        Numerical(0, 1, label="p").default({"p": 0.25})
    assert _nested().default({"p": 0.5})["width"] == 8


def test_simplify_takes_no_is_leaf() -> None:
    # Removed on purpose: every leaf is a labelled value with nothing inside to expand.
    with pytest.raises(TypeError, match="is_leaf"):
        _nested().simplify(is_leaf=lambda m: True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="is_leaf"):
        list(_nested().leaf_mutables(is_leaf=lambda m: True))  # type: ignore[call-arg]


def test_containers_compare_by_content() -> None:
    def build() -> MutableList:
        return MutableList([Categorical([1, 2], label="a"), 3,
                            MutableDict({"p": Numerical(0, 1, label="p"), "q": 1})])

    assert build() == build()
    assert build() != MutableList([Categorical([1, 2], label="a"), 3])
    assert MutableList([Categorical([1, 2], label="a")]) != MutableList([
        Categorical([1, 2], label="b")])
    assert MutableDict({"x": 1, "y": 2}) == MutableDict({"y": 2, "x": 1})
    assert MutableDict({"x": 1}) != MutableDict({"x": 2})
    assert MutableList([1]) != [1]
    assert MutableDict({"x": 1}) != {"x": 1}
    with pytest.raises(TypeError, match="unhashable"):
        hash(MutableList([]))
    with pytest.raises(TypeError, match="unhashable"):
        hash(MutableDict({}))


def test_categorical_finds_values_by_hash_and_unhashable_ones_by_comparison() -> None:
    big = Categorical(range(100_000), label="n")  # pairwise checks took minutes here
    assert big.freeze({"n": 99_999}) == 99_999
    assert big.contains({"n": 5.0})
    assert not big.contains({"n": True})
    assert not big.contains({"n": 100_000})
    mixed = Categorical([[1, 2], {"a": 1}, True, 1.5, {"a": 2}, 0], label="m")
    assert mixed.freeze({"m": (1, 2)}) == [1, 2]
    assert mixed.freeze({"m": {"a": 2}}) == {"a": 2}
    assert mixed.freeze({"m": True}) is True
    assert not mixed.contains({"m": 1})  # True is a choice, 1 is not
    assert not mixed.contains({"m": False})  # 0 is a choice, False is not
    for values, twice in [([{"a": 1}, 2, {"a": 1}], "{'a': 1}"), ([1, True, 1.0], "1.0"),
                          ([[1, [2]], (1, (2,))], r"\(1, \(2,\)\)")]:
        with pytest.raises(ValueError, match=f"lists {twice} twice"):
            Categorical(values, label="d")


def test_a_mutable_list_behaves_as_a_list() -> None:
    a, b, c = (Categorical([1, 2], label=x) for x in "abc")
    items = MutableList([a])
    assert items.append(b) is items  # returns the list, as the reference's does
    items.extend([3])
    items.insert(0, c)
    assert list(items) == [c, a, b, 3]
    items += [4]
    assert len(items) == 5
    assert b in items
    items[4] = Numerical(0, 1, label="p")
    del items[3]
    assert [leaf.label for leaf in items.leaf_mutables()] == ["c", "a", "b", "p"]
    assert items.freeze({"a": 2, "b": 1, "c": 1, "p": 0.5}) == [1, 2, 1, 0.5]
    head = items[:2]
    assert isinstance(head, MutableList)
    assert list(head.simplify()) == ["c", "a"]


def test_a_mutable_dict_behaves_as_a_dict() -> None:
    space = MutableDict({"lr": Numerical(0.1, 1, label="lr")}, depth=Categorical([1, 2],
                                                                                 label="d"))
    assert MutableDict([("x", 1)], y=2) == MutableDict(x=1, y=2)
    with pytest.raises(ValueError, match="MutableDict got 'x' twice"):
        MutableDict({"x": 1}, x=2)
    space["act"] = Categorical(["relu", "tanh"], label="act")
    assert list(space.simplify()) == ["lr", "d", "act"]
    assert space.pop("lr").label == "lr"
    assert space.pop("lr", None) is None
    with pytest.raises(KeyError):
        space.pop("lr")
    del space["depth"]
    space.update({"fixed": 3}, more=4)
    assert "act" in space
    assert space.get("none", 0) == 0
    assert list(space.keys()) == ["act", "fixed", "more"]
    assert [key for key, _ in space.items()] == ["act", "fixed", "more"]
    assert space.freeze({"act": "tanh"}) == {"act": "tanh", "fixed": 3, "more": 4}
    space.clear()
    assert len(space) == 0
    assert space.freeze({}) == {}
