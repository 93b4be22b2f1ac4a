"""engine.space became a package of private modules: what was written with the single
module (pickles, recipes) still names ``engine.space`` and still loads."""

from __future__ import annotations

import pickle
import pickletools
import typing
from typing import Any

import msgspec
import pytest

import engine.space as s
from engine._context import current_model, ensure_frozen, model_context
from engine._objective import MetricValue
from engine._recipe import Call, Recipe, RecipeError, Symbol
from engine.evaluator import FunctionEvaluator
from engine.testing._probe import ProbeSpace, probe, probe_trial

# The single module's __all__, and the names other modules imported from it beyond that.
OLD_ALL = (
    "BaseModelSpace", "ExecutableModelSpace", "Metrics", "ModelStatus", "RawFormatModelSpace",
    "SimplifiedModelSpace", "current_model", "dump_model", "ensure_frozen", "load_model",
    "model_context", "ModelMessage", "RecipeError",
)
HELPERS = ("frozen_call", "RAW_FORMAT_STAYS", "_Plan")
# The classes and functions the single module defined (the rest of OLD_ALL it imported).
DEFINED = (
    "BaseModelSpace", "ExecutableModelSpace", "Metrics", "ModelMessage", "ModelStatus",
    "RawFormatModelSpace", "SimplifiedModelSpace", "dump_model", "frozen_call", "load_model",
    "_Plan",
)

# Protocol-2 pickles written by the single module engine/space.py before the split:
# pickle.dumps(engine.testing._probe.probe("ok"), protocol=2) (a frozen SimplifiedModelSpace),
OLD_FROZEN_MODEL = (
    b"\x80\x02cengine.space\nSimplifiedModelSpace\nq\x00)\x81q\x01}q\x02(X\x06\x00\x00\x00st"
    b"atusq\x03cengine.space\nModelStatus\nq\x04X\x06\x00\x00\x00frozenq\x05\x85q\x06Rq\x07X"
    b"\x07\x00\x00\x00metricsq\x08cmsgspec._utils\nrebuild\nq\tcengine.space\nMetrics\nq\n}q"
    b"\x0b(X\r\x00\x00\x00intermediatesq\x0c]q\rX\x05\x00\x00\x00finalq\x0eNX\n\x00\x00\x00s"
    b"topped_atq\x0fNu\x86q\x10Rq\x11X\x06\x00\x00\x00sampleq\x12}q\x13X\x01\x00\x00\x00xq"
    b"\x14K\x01sX\x05\x00\x00\x00modelq\x15cengine._recipe\nCall\nq\x16)\x81q\x17N}q\x18(X"
    b"\x04\x00\x00\x00argsq\x19)X\x07\x00\x00\x00factoryq\x1acengine.testing._probe\nProbeSp"
    b"ace\nq\x1bX\x06\x00\x00\x00kwargsq\x1c}q\x1du\x86q\x1ebX\x08\x00\x00\x00mutablesq\x1fc"
    b"engine.mutable\nMutableDict\nq )\x81q!}q\x22h\x1f}q#h\x14cengine.mutable\nCategorical"
    b"\nq$)\x81q%}q&(X\x05\x00\x00\x00labelq'h\x14X\x06\x00\x00\x00valuesq(]q)(K\x01K\x02eX"
    b"\n\x00\x00\x00_positionsq*cengine.mutable\nValueIndex\nq+)\x81q,}q-(X\x07\x00\x00\x00_"
    b"valuesq.h)h*}q/(\x89K\x01\x86q0K\x00\x89K\x02\x86q1K\x01uX\x0b\x00\x00\x00_unhashableq"
    b"2]q3X\x06\x00\x00\x00_countq4K\x02X\t\x00\x00\x00duplicateq5c__builtin__\nobject\nq6)"
    b"\x81q7ubX\x08\x00\x00\x00default_q8K\x01X\x07\x00\x00\x00weightsq9NubssbX\t\x00\x00"
    b"\x00evaluatorq:cengine.evaluator\nFunctionEvaluator\nq;)\x81q<}q=(X\x08\x00\x00\x00fun"
    b"ctionq>cengine.testing._probe\nprobe_trial\nq?h\x1c}q@(X\x06\x00\x00\x00actionqAX\x02"
    b"\x00\x00\x00okqBX\x04\x00\x00\x00flagqCX\x00\x00\x00\x00qDuubX\x05\x00\x00\x00_usesqEN"
    b"ub."
)
# ModelStatus.Frozen,
OLD_STATUS = (
    b"\x80\x02cengine.space\nModelStatus\nq\x00X\x06\x00\x00\x00frozenq\x01\x85q\x02Rq\x03."
)
# and Metrics(intermediates=[0.5, 0.25], final=0.75, stopped_at=2).
OLD_METRICS = (
    b"\x80\x02cmsgspec._utils\nrebuild\nq\x00cengine.space\nMetrics\nq\x01}q\x02(X\r\x00\x00"
    b"\x00intermediatesq\x03]q\x04(G?\xe0\x00\x00\x00\x00\x00\x00G?\xd0\x00\x00\x00\x00\x00"
    b"\x00eX\x05\x00\x00\x00finalq\x05G?\xe8\x00\x00\x00\x00\x00\x00X\n\x00\x00\x00stopped_a"
    b"tq\x06K\x02u\x86q\x07Rq\x08."
)


def _globals(data: bytes) -> set[str]:
    """The ``module name`` of every class and function a protocol-2 pickle names."""
    return {str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def _space_globals(data: bytes) -> set[str]:
    return {g for g in _globals(data) if g.startswith("engine.space")}


def test_the_old_all_still_imports_from_engine_space() -> None:
    namespace: dict[str, Any] = {}
    exec("from engine.space import *", namespace)
    assert set(OLD_ALL) <= set(namespace)
    assert set(OLD_ALL) <= set(s.__all__)


@pytest.mark.parametrize("name", OLD_ALL + HELPERS)
def test_each_old_name_imports_from_engine_space(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from engine.space import {name}", namespace)
    assert namespace[name] is getattr(s, name)


def test_the_names_it_imported_are_the_same_objects() -> None:
    assert (s.current_model, s.ensure_frozen, s.model_context, s.RecipeError) == (
        current_model, ensure_frozen, model_context, RecipeError)


@pytest.mark.parametrize("name", DEFINED)
def test_names_keep_the_old_module_path(name: str) -> None:
    assert getattr(s, name).__module__ == "engine.space"


@pytest.mark.parametrize("name", [n for n in DEFINED if isinstance(getattr(s, n), type)])
def test_annotations_resolve_under_the_kept_path(name: str) -> None:
    # Both resolve a class's string annotations in the module its __module__ names.
    hints = typing.get_type_hints(getattr(s, name))
    assert all(not isinstance(hint, str | typing.ForwardRef) for hint in hints.values())


def test_structs_inspect_with_their_field_types() -> None:
    metrics = msgspec.inspect.type_info(s.Metrics)
    assert isinstance(metrics, msgspec.inspect.StructType)
    assert [f.name for f in metrics.fields] == ["intermediates", "final", "stopped_at"]
    assert typing.get_type_hints(s.Metrics)["final"] == MetricValue | None
    message = msgspec.inspect.type_info(s.ModelMessage)
    assert isinstance(message, msgspec.inspect.StructType)
    assert typing.get_type_hints(s.ModelMessage)["model"] is Recipe


def test_pickles_name_engine_space_as_before() -> None:
    assert _space_globals(pickle.dumps(probe("ok"), protocol=2)) == _space_globals(
        OLD_FROZEN_MODEL) == {f"engine.space {n}" for n in (
            "Metrics", "ModelStatus", "SimplifiedModelSpace")}
    assert pickle.dumps(s.ModelStatus.Frozen, protocol=2) == OLD_STATUS
    metrics = s.Metrics(intermediates=[0.5, 0.25], final=0.75, stopped_at=2)
    assert pickle.dumps(metrics, protocol=2) == OLD_METRICS


def test_pickles_written_before_the_split_load() -> None:
    model = pickle.loads(OLD_FROZEN_MODEL)
    assert type(model) is s.SimplifiedModelSpace
    assert model.status is s.ModelStatus.Frozen
    assert model.sample == {"x": 1}
    assert not model.metrics
    built = model.executable_model()
    assert isinstance(built, ProbeSpace)
    assert built.x == 1
    assert s.load_model(s.dump_model(model)).sample == {"x": 1}
    assert pickle.loads(OLD_STATUS) is s.ModelStatus.Frozen
    assert pickle.loads(OLD_METRICS) == s.Metrics(
        intermediates=[0.5, 0.25], final=0.75, stopped_at=2)


def test_an_initialized_space_pickles_its_plan_under_engine_space() -> None:
    evaluator = FunctionEvaluator(probe_trial, action="ok", flag="")
    space = s.SimplifiedModelSpace.from_model(ProbeSpace(), evaluator)  # takes its _Plan
    data = pickle.dumps(space, protocol=2)
    assert "engine.space _Plan" in _space_globals(data)
    loaded = pickle.loads(data)
    assert isinstance(loaded.__dict__["_nas_plan"], s._Plan)
    assert loaded.freeze({"x": 2}).sample == {"x": 2}


@pytest.mark.parametrize(("factory", "kwargs"), [
    (s.Metrics, {"intermediates": [0.5], "final": 0.5}),
    (s.ModelStatus, {"value": "frozen"}),
])
def test_recipes_name_engine_space(factory: Any, kwargs: dict[str, Any]) -> None:
    recipe = Call(factory, (), kwargs).recipe()
    assert recipe.symbol == Symbol(module="engine.space", qualname=factory.__name__)
    sent = msgspec.msgpack.decode(msgspec.msgpack.encode(recipe), type=Recipe)
    assert sent.build() == factory(**kwargs)
