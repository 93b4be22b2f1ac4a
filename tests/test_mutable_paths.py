"""engine.mutable became a package of private modules: what was written with the single
module (pickles, recipes) still names ``engine.mutable`` and still loads."""

from __future__ import annotations

import pickle
import pickletools
import typing
from typing import Any

import msgspec
import pytest

import engine.mutable as m
from engine._recipe import Call, Recipe, Symbol

# The single module's __all__, and the helpers other modules imported from it.
OLD_ALL = (
    "Categorical", "choice", "lognormal", "loguniform", "normal", "qlognormal",
    "qloguniform", "qnormal", "quniform", "randint", "uniform", "DuplicateLabelError",
    "LabeledMutable", "Mutable", "MutableDict", "MutableExpression", "MutableList",
    "Numerical", "Sample", "SampleMissingError", "SampleValidationError", "Uses",
)
HELPERS = ("check_sample_type", "check_used", "check_weights", "freeze_value", "leaves_of",
           "ValueIndex")

# pickle.dumps(MutableExpression.max(Numerical(0, 1, label="x"), 0.5), protocol=2), as
# written by the single module engine/mutable.py before the split.
OLD_PICKLE = (
    b"\x80\x02cengine.mutable\nMutableExpression\nq\x00)\x81q\x01}q\x02(X\x08\x00\x00\x00"
    b"functionq\x03cengine.mutable\n_max\nq\x04X\x08\x00\x00\x00operandsq\x05cengine.mutable"
    b"\nNumerical\nq\x06)\x81q\x07}q\x08(X\x05\x00\x00\x00labelq\tX\x01\x00\x00\x00xq\nX"
    b"\x03\x00\x00\x00lowq\x0bK\x00X\x04\x00\x00\x00highq\x0cK\x01X\x03\x00\x00\x00logq\r"
    b"\x89X\x08\x00\x00\x00quantizeq\x0eNX\x02\x00\x00\x00muq\x0fNX\x05\x00\x00\x00sigmaq"
    b"\x10NX\x05\x00\x00\x00_massq\x11NX\x08\x00\x00\x00default_q\x12NubG?\xe0\x00\x00\x00"
    b"\x00\x00\x00\x86q\x13ub."
)


def test_the_old_all_still_imports_from_engine_mutable() -> None:
    namespace: dict[str, Any] = {}
    exec("from engine.mutable import *", namespace)
    assert set(OLD_ALL) <= set(namespace)
    assert set(OLD_ALL) <= set(m.__all__)


@pytest.mark.parametrize("name", OLD_ALL + HELPERS)
def test_each_old_name_imports_from_engine_mutable(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from engine.mutable import {name}", namespace)
    assert namespace[name] is getattr(m, name)


@pytest.mark.parametrize("name", [n for n in OLD_ALL + HELPERS if n != "Sample"])
def test_names_keep_the_old_module_path(name: str) -> None:
    assert getattr(m, name).__module__ == "engine.mutable"


def _pickled_globals(obj: object) -> set[str]:
    """The ``module name`` of every class and function a protocol-2 pickle of ``obj`` names."""
    return {str(arg) for op, arg, _ in pickletools.genops(pickle.dumps(obj, protocol=2))
            if op.name == "GLOBAL"}


def test_pickles_name_engine_mutable_and_round_trip() -> None:
    width = m.Categorical([16, 32, 64], weights=[0.5, 0.25, 0.25], label="width")
    rate = m.Numerical(1e-4, 1e-1, log=True, label="rate")
    space = m.MutableDict(
        wide=m.MutableExpression.condition(width > 16, width * 2, rate),
        narrow=m.MutableList([m.MutableExpression.min(width, 20), m.MutableExpression.max(rate)]),
        uses=m.Uses((rate,), gate=width, branches=(m.Uses(), m.Uses(), m.Uses())),
    )
    named = {g for g in _pickled_globals(space) if g.startswith("engine")}
    assert named == {f"engine.mutable {n}" for n in (
        "Categorical", "MutableDict", "MutableExpression", "MutableList", "Numerical", "Uses",
        "ValueIndex", "_if_else", "_max", "_min")}
    loaded = pickle.loads(pickle.dumps(space))
    sample = {"width": 32, "rate": 0.01}
    frozen = loaded.freeze(sample)
    assert frozen["wide"] == space["wide"].freeze(sample) == 64
    assert frozen["narrow"] == [20, 0.01]
    found: dict[str, Any] = {}
    assert loaded["uses"].walk(sample, found) is None
    assert sorted(found) == ["rate", "width"]


def test_errors_pickle_under_engine_mutable() -> None:
    error = m.SampleMissingError("label 'x' is missing", ["model", "x"])
    assert _pickled_globals(error) == {"engine.mutable SampleMissingError"}
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_a_pickle_written_before_the_split_loads() -> None:
    expression = pickle.loads(OLD_PICKLE)
    assert expression == m.MutableExpression.max(m.Numerical(0, 1, label="x"), 0.5)
    assert expression.freeze({"x": 0.25}) == 0.5
    assert expression.freeze({"x": 0.75}) == 0.75


@pytest.mark.parametrize(("factory", "args", "kwargs"), [
    (m.Categorical, ([1, 2],), {"label": "c"}),
    (m.Numerical, (0.0, 1.0), {"label": "n", "quantize": 0.25}),
    (m.choice, ("c", [1, 2]), {}),
])
def test_recipes_name_engine_mutable(factory: Any, args: tuple[Any, ...],
                                     kwargs: dict[str, Any]) -> None:
    recipe = Call(factory, args, kwargs).recipe()
    assert recipe.symbol == Symbol(module="engine.mutable", qualname=factory.__name__)
    sent = msgspec.msgpack.decode(msgspec.msgpack.encode(recipe), type=Recipe)
    assert sent.build() == factory(*args, **kwargs)


@pytest.mark.parametrize("name", [n for n in (*OLD_ALL, *HELPERS)
                                  if isinstance(getattr(m, n), type)])
def test_class_annotations_resolve_under_the_kept_path(name: str) -> None:
    # typing.get_type_hints resolves a class's string annotations in the module its
    # __module__ names: engine.mutable must hold what they use, as the single module did.
    hints = typing.get_type_hints(getattr(m, name))
    assert all(not isinstance(hint, str | typing.ForwardRef) for hint in hints.values())
