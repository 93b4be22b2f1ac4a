"""Model spaces: statuses, metrics, model context, the raw and simplified formats,
validation paths, dump/load (also across processes), and random-space properties."""

from __future__ import annotations

import copy
import functools
import gc
import itertools
import pickle
import random
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    BaseModelSpace,
    Categorical,
    DuplicateLabelError,
    ExecutableModelSpace,
    FunctionEvaluator,
    Metrics,
    ModelStatus,
    MutableDict,
    MutableList,
    Numerical,
    RawFormatModelSpace,
    SampleMissingError,
    SampleValidationError,
    SimplifiedModelSpace,
    current_model,
    ensure_frozen,
    model_context,
)
from engine.space import dump_model, load_model
from tests import _spaces

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = {"width": 16, "dropout": 0.2, "k1": 3, "k2": 7}


def _simplified(evaluator: Any = None, depth: int = 2) -> SimplifiedModelSpace:
    return SimplifiedModelSpace.from_model(
        _spaces.Net(depth=depth), evaluator or FunctionEvaluator(_spaces.score, lr=0.5))


class _DictModel(BaseModelSpace):
    """Freezes to a plain dict, which cannot be weakly referenced."""

    def __init__(self) -> None:
        self.k = ensure_frozen(Categorical([1, 2], label="k"))

    def freeze(self, sample: Any) -> Any:
        self.validate(sample)
        return {"k": sample["k"]}


# ModelStatus and Metrics -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "frozen", "completed"),
    [
        (ModelStatus.Initialized, False, False),
        (ModelStatus.Mutating, False, False),
        (ModelStatus.Frozen, True, False),
        (ModelStatus.Training, True, False),
        (ModelStatus.Retrying, True, False),
        (ModelStatus.Trained, True, True),
        (ModelStatus.Failed, True, True),
        (ModelStatus.Interrupted, True, True),
        (ModelStatus.Invalid, True, True),
    ],
)
def test_model_status_frozen_and_completed(
    status: ModelStatus, frozen: bool, completed: bool
) -> None:
    assert (status.frozen(), status.completed()) == (frozen, completed)
    assert ModelStatus(status.value) is status
    assert isinstance(status, str)
    assert repr(status) == f"ModelStatus.{status.name}"


def test_metrics_round_trip_through_msgspec() -> None:
    metrics = Metrics(intermediates=[0.1, 0.25], final=0.5)
    for codec in (msgspec.json, msgspec.msgpack):
        assert codec.decode(codec.encode(metrics), type=Metrics) == metrics
    assert msgspec.json.encode(metrics) == (
        b'{"intermediates":[0.1,0.25],"final":0.5,"stopped_at":null}')
    assert not Metrics()
    assert Metrics(final=0.0)
    assert Metrics(intermediates=[0.0])
    with pytest.raises(msgspec.ValidationError,
                       match=r"Expected `float \| object \| null`, got `str` - at `\$.final`"):
        msgspec.json.decode(b'{"final":"x"}', type=Metrics)
    several = Metrics(intermediates=[{"a": 0.1}], final={"a": 0.5, "b": 2.0})  # a dict each
    assert msgspec.json.decode(msgspec.json.encode(several), type=Metrics) == several


# model_context, current_model, ensure_frozen ---------------------------------------------


def test_model_context_nests_restores_and_copies_the_sample() -> None:
    assert current_model() is None
    sample = {"a": 1}
    with model_context(sample):
        sample["a"] = 2
        assert current_model() == {"a": 1}
        with model_context({"a": 3, "b": 4}):
            assert current_model() == {"a": 3, "b": 4}
        assert current_model() == {"a": 1}
    assert current_model() is None
    with pytest.raises(KeyError), model_context({"a": 1}):
        raise KeyError("inside")
    assert current_model() is None


def test_nested_model_contexts_merge_and_the_inner_value_wins() -> None:
    # The reference merges the stacked samples from the outermost to the innermost.
    with model_context({"a": 1, "b": 2}), model_context({"b": 3, "c": 4}):
        assert current_model() == {"a": 1, "b": 3, "c": 4}
        assert ensure_frozen(Categorical([1, 5], label="a")) == 1  # from the outer block
    with pytest.raises(TypeError, match="a sample must be a dict"), model_context([1]):  # type: ignore[arg-type]
        pass


def test_current_model_is_a_copy_that_cannot_change_the_context() -> None:
    with model_context({"a": 1}):
        seen = current_model()
        assert seen == {"a": 1}
        seen["a"] = 2  # type: ignore[index]
        seen["b"] = 3  # type: ignore[index]
        assert current_model() == {"a": 1}
        assert ensure_frozen(Categorical([1, 2], label="a")) == 1


@pytest.mark.anyio
async def test_model_context_is_private_to_each_task() -> None:
    seen: dict[int, Any] = {}
    entered = [anyio.Event() for _ in range(2)]

    async def build(i: int) -> None:
        with model_context({"i": i}):
            entered[i].set()
            await entered[1 - i].wait()  # both contexts are open now
            seen[i] = current_model()

    async with anyio.create_task_group() as tg:
        tg.start_soon(build, 0)
        tg.start_soon(build, 1)
    assert seen == {0: {"i": 0}, 1: {"i": 1}}
    assert current_model() is None


def test_ensure_frozen_inside_and_outside_a_context() -> None:
    c = Categorical([1, 2], default=2, label="c")
    assert ensure_frozen(c) is c
    assert ensure_frozen(5) == 5
    with model_context({"c": 1}):
        assert ensure_frozen(c) == 1
        assert ensure_frozen(MutableList([c, 3])) == [1, 3]
        with pytest.raises(SampleMissingError, match=r"'other' is missing .* never searched"):
            ensure_frozen(Categorical([7, 8], label="other"))  # not in the space: loud
        with pytest.raises(SampleMissingError) as missing:
            ensure_frozen(MutableList([c, Categorical([7, 8], label="other")]))
        assert missing.value.paths == ["other"]
        assert isinstance(missing.value, SampleValidationError)
    with model_context({"c": 9}), pytest.raises(SampleValidationError) as info:
        ensure_frozen(c)
    assert info.value.paths == ["c"]


# BaseModelSpace ---------------------------------------------------------------------------


def test_base_model_space_records_its_init_call_and_freezes_by_rebuilding() -> None:
    space = _spaces.Net(depth=4)
    call = space.init_call()
    assert (call.factory, call.args, call.kwargs) == (_spaces.Net, (), {"depth": 4})
    assert [leaf.label for leaf in space.leaf_mutables()] == ["width", "dropout", "k1", "k2"]
    model = space.freeze(SAMPLE)
    assert isinstance(model, _spaces.Net)
    assert (model.width, model.dropout, model.kernels, model.depth) == (16, 0.2, [3, 7], 4)
    assert model.built_under == SAMPLE
    assert space.built_under is None
    with pytest.raises(SampleValidationError, match="outside") as info:
        space.freeze({**SAMPLE, "dropout": 0.9})
    assert info.value.paths == ["dropout"]


def test_a_mutable_init_argument_takes_its_chosen_value() -> None:
    space = _spaces.Wide(Categorical([8, 16], label="w"), name="x")
    assert list(space.simplify()) == ["w"]
    assert space.freeze({"w": 16}).width == 16
    simplified = SimplifiedModelSpace.from_model(space, FunctionEvaluator(_spaces.no_metric))
    model = load_model(simplified.freeze({"w": 8}).dump())
    built = model.executable_model()
    assert (built.width, built.name) == (8, "x")


# From a model space to an executable one --------------------------------------------------


def test_the_executable_base_names_what_a_format_must_implement() -> None:
    with pytest.raises(NotImplementedError, match=r"ExecutableModelSpace\.from_model"):
        ExecutableModelSpace.from_model(_spaces.Net())
    base = ExecutableModelSpace()
    assert (base.status, base.sample, base.metric) == (ModelStatus.Initialized, None, None)
    with pytest.raises(NotImplementedError, match=r"ExecutableModelSpace\.executable_model"):
        base.executable_model()
    base.metrics.final = 0.5
    assert base.metric == 0.5


@pytest.mark.parametrize("fmt", [RawFormatModelSpace, SimplifiedModelSpace])
def test_from_model_checks_its_arguments(fmt: type[ExecutableModelSpace]) -> None:
    with pytest.raises(TypeError, match=r"from_model needs a BaseModelSpace .* got dict"):
        fmt.from_model({"a": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="evaluator must be an Evaluator, got function"):
        fmt.from_model(_spaces.Net(), _spaces.score)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", [RawFormatModelSpace, SimplifiedModelSpace])
def test_a_label_in_model_and_evaluator(fmt: type[ExecutableModelSpace]) -> None:
    shared = FunctionEvaluator(_spaces.score, lr=Categorical([8, 16, 32], label="width"))
    space = fmt.from_model(_spaces.Net(), shared)
    model = space.freeze(SAMPLE)  # one choice for both
    assert isinstance(model.evaluator, FunctionEvaluator)
    assert model.evaluator.kwargs == {"lr": 16}
    clash = FunctionEvaluator(_spaces.score, lr=Categorical([8, 16], label="width"))
    with pytest.raises(DuplicateLabelError, match="label 'width' is bound to two different"):
        fmt.from_model(_spaces.Net(), clash)
    direct = RawFormatModelSpace(_spaces.Net(), clash)  # built without from_model
    with pytest.raises(DuplicateLabelError):
        direct.freeze(SAMPLE)


@pytest.mark.parametrize("fmt", [RawFormatModelSpace, SimplifiedModelSpace])
def test_validation_errors_name_model_or_evaluator_then_the_label(
    fmt: type[ExecutableModelSpace],
) -> None:
    evaluator = FunctionEvaluator(_spaces.score, lr=Numerical(0.01, 1, label="lr"))
    space = fmt.from_model(_spaces.Net(), evaluator)
    full = {**SAMPLE, "lr": 0.1}
    cases = [
        ({**full, "width": 12}, ["model", "width"], r"12 is not one of the choices"),
        ({**full, "k2": "7"}, ["model", "k2"], r"'7' is not one of the choices"),
        ({k: v for k, v in full.items() if k != "k1"}, ["model", "k1"], "'k1' is missing"),
        ({**full, "lr": 2.0}, ["evaluator", "lr"], r"2.0 is outside \[0.01, 1\] of 'lr'"),
        ({**full, "lr": "fast"}, ["evaluator", "lr"], "'lr' takes a number, got str"),
        ({**full, "depth": 3}, ["depth"],
         r"unknown label 'depth': the space's labels are \['dropout', 'k1', 'k2', 'lr', 'width'\]"),
    ]
    for sample, paths, match in cases:
        error = space.check_contains(sample)
        assert error is not None, sample
        assert error.paths == paths, sample
        assert not space.contains(sample)
        with pytest.raises(SampleValidationError, match=match) as info:
            space.freeze(sample)
        assert info.value.paths == paths
        assert str(info.value).endswith(f"(at {'/'.join(paths)})")
    with pytest.raises(TypeError, match="a sample must be a dict"):
        space.freeze([("width", 16)])  # type: ignore[arg-type]
    assert space.contains(full)


@pytest.mark.parametrize("fmt", [RawFormatModelSpace, SimplifiedModelSpace])
def test_only_an_initialized_space_can_be_frozen(fmt: type[ExecutableModelSpace]) -> None:
    space = fmt.from_model(_spaces.Net(), FunctionEvaluator(_spaces.score))
    assert space.status is ModelStatus.Initialized
    assert space.sample is None
    model = space.freeze(SAMPLE)
    assert (model.status, model.sample, type(model)) == (ModelStatus.Frozen, SAMPLE, fmt)
    assert model.sample is not SAMPLE
    for status in (ModelStatus.Frozen, ModelStatus.Trained, ModelStatus.Mutating):
        model.status = status
        with pytest.raises(RuntimeError, match=f"cannot freeze a model whose status is {status}"):
            model.freeze(SAMPLE)


@pytest.mark.parametrize("fmt", [RawFormatModelSpace, SimplifiedModelSpace])
def test_an_unfrozen_space_has_no_executable_model(fmt: type[ExecutableModelSpace]) -> None:
    space = fmt.from_model(_spaces.Net(), FunctionEvaluator(_spaces.score))
    with pytest.raises(RuntimeError, match=r"not frozen yet: call freeze\(sample\) first"):
        space.executable_model()
    with pytest.raises(RuntimeError, match="not frozen yet"):
        space.execute()
    with pytest.raises(ValueError, match="this model has no evaluator"):
        fmt.from_model(_spaces.Net()).freeze(SAMPLE).execute()


@pytest.mark.parametrize("fmt", [RawFormatModelSpace, SimplifiedModelSpace])
def test_default_random_and_grid_give_frozen_models(fmt: type[ExecutableModelSpace]) -> None:
    space = fmt.from_model(_spaces.Net(), FunctionEvaluator(_spaces.score))
    memo: dict[str, Any] = {}
    default = space.default(memo)
    assert default.status is ModelStatus.Frozen
    assert default.sample == memo == {"width": 8, "dropout": 0.2, "k1": 3, "k2": 3}
    models = list(space.grid())
    assert len(models) == 3 * 1 * 2 * 3
    assert all(m.status is ModelStatus.Frozen and space.contains(m.sample) for m in models)
    assert str(default) == f"{fmt.__name__}({memo}, 'frozen')"


# RawFormatModelSpace ----------------------------------------------------------------------


def test_raw_format_caches_the_frozen_model_weakly() -> None:
    model = RawFormatModelSpace.from_model(_spaces.Net(), FunctionEvaluator(_spaces.score)) \
        .freeze(SAMPLE)
    built = model.executable_model()
    assert isinstance(built, _spaces.Net)
    assert built.width == 16
    assert model.executable_model() is built  # alive elsewhere: reused
    alive = weakref.ref(built)
    del built
    gc.collect()
    assert alive() is None  # the space did not keep it alive
    assert model.executable_model().width == 16


def test_raw_format_builds_models_that_cannot_be_weakly_referenced() -> None:
    model = RawFormatModelSpace.from_model(_DictModel()).freeze({"k": 2})
    assert model.executable_model() == {"k": 2}
    assert model.executable_model() == {"k": 2}


@pytest.mark.parametrize(
    "serialize",
    [
        *(functools.partial(pickle.dumps, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)),
        copy.copy,
        copy.deepcopy,
        dump_model,
    ],
)
def test_raw_format_cannot_be_serialized(serialize: Any) -> None:
    space = RawFormatModelSpace.from_model(_spaces.Net(), FunctionEvaluator(_spaces.score))
    for obj in (space, space.freeze(SAMPLE)):
        with pytest.raises(TypeError, match="a RawFormatModelSpace holds a live model and cannot "
                                            "leave this process: run it with InlinePool"):
            serialize(obj)


# SimplifiedModelSpace dump / load ---------------------------------------------------------


def test_dump_and_load_round_trip_a_frozen_model() -> None:
    evaluator = FunctionEvaluator(_spaces.score, lr=Categorical([0.5, 1.0], label="lr"))
    model = _simplified(evaluator, depth=3).freeze({**SAMPLE, "lr": 1.0})
    model.metrics.intermediates.append(0.5)
    data = model.dump()
    assert isinstance(data, bytes)
    assert len(data) < 300
    assert dump_model(model) == data
    loaded = load_model(data)
    assert type(loaded) is SimplifiedModelSpace
    assert (loaded.sample, loaded.status, loaded.metrics) == (model.sample, model.status,
                                                              model.metrics)
    assert loaded.evaluator == FunctionEvaluator(_spaces.score, lr=1.0)
    assert loaded.model.display() == "tests._spaces:Net"
    built = loaded.executable_model()
    assert (built.depth, built.width, built.kernels, built.built_under) == (3, 16, [3, 7],
                                                                           model.sample)
    assert loaded.execute() == 16 * 1.0 + 3
    assert loaded.metrics.intermediates == [0.5, 1.0, 2.0]


def test_every_status_survives_dump_and_load() -> None:
    model = _simplified().freeze(SAMPLE)
    for status in ModelStatus:
        model.status = status
        assert SimplifiedModelSpace.load(model.dump()).status is status


def test_a_frozen_model_is_dumped_once_until_it_changes() -> None:
    model = _simplified().freeze(SAMPLE)
    first = model.dump()
    assert model.dump() is first  # the pool's check and the run file share one dump
    model.sample = {**SAMPLE}  # replaced: dumped afresh, same content
    second = model.dump()
    assert second is not first
    assert second == first
    model.metrics.intermediates.append(0.5)  # no longer fresh: what it is now
    third = model.dump()
    assert SimplifiedModelSpace.load(third).metrics.intermediates == [0.5]
    assert SimplifiedModelSpace.load(model.dump()).metrics.intermediates == [0.5]
    model.metrics.intermediates.clear()
    model.status = ModelStatus.Retrying
    assert SimplifiedModelSpace.load(model.dump()).status is ModelStatus.Retrying
    model.status = ModelStatus.Frozen
    assert SimplifiedModelSpace.load(model.dump()).status is ModelStatus.Frozen


def test_only_a_frozen_model_can_be_dumped() -> None:
    with pytest.raises(TypeError, match="only a frozen SimplifiedModelSpace can be dumped"):
        _simplified().dump()


class _ActivationNet(BaseModelSpace):
    """Chooses among classes: fine in this process, not in a message."""

    def __init__(self) -> None:
        self.activation = ensure_frozen(Categorical([int, float], label="act"))


@pytest.mark.parametrize(
    ("model_space", "evaluator", "sample", "match"),
    [
        (_spaces.Wide(Categorical([1, 2], label="w"), name={"set"}), None, {"w": 1},
         r"Wide\(\) argument 'name' is a set and cannot be sent to a worker"),
        (_spaces.Wide(Categorical([1, 2], label="w"), [object()]), None, {"w": 1},
         r"Wide\(\) argument 1\[0\] is a object"),
        (_ActivationNet(), None, {"act": int},
         "the sample's value for 'act' is a type and cannot be sent to a worker"),
        (_spaces.Net(), FunctionEvaluator(_spaces.score, lr={0.1}), SAMPLE,
         "evaluator argument 'lr' is a set"),
        (_spaces.Net(), FunctionEvaluator(lambda m: 1.0), SAMPLE,
         "the evaluator's function cannot be sent to a worker"),
    ],
)
def test_dump_names_what_cannot_be_sent(
    model_space: BaseModelSpace, evaluator: Any, sample: dict[str, Any], match: str
) -> None:
    model = SimplifiedModelSpace.from_model(model_space, evaluator).freeze(sample)
    with pytest.raises(TypeError, match=match):
        model.dump()


def test_a_model_space_that_cannot_be_imported_back_cannot_be_dumped() -> None:
    def local_factory() -> None: ...

    class Nested(BaseModelSpace):
        def __init__(self) -> None:
            self.width = ensure_frozen(Categorical([8, 16], label="width"))

    model = SimplifiedModelSpace.from_model(Nested()).freeze({"width": 8})
    with pytest.raises(TypeError, match=r"the model space cannot be sent to a worker: .*Nested"
                                        r".* is not importable"):
        model.dump()
    assert local_factory() is None


def test_loading_garbage_is_a_msgspec_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        load_model(b"\xc1")
    with pytest.raises(msgspec.ValidationError, match="Object missing required field"):
        load_model(msgspec.msgpack.encode({"type": "simplified"}))


def test_a_loaded_model_names_a_symbol_that_is_gone() -> None:
    model = _simplified().freeze(SAMPLE)
    message = msgspec.msgpack.decode(model.dump())
    message["model"]["symbol"]["qualname"] = "Vanished"
    loaded = load_model(msgspec.msgpack.encode(message))
    with pytest.raises(ImportError, match=r"tests\._spaces:Vanished not found"):
        loaded.executable_model()
    message["evaluator"]["function"]["module"] = "no_such_module_xyz"
    with pytest.raises(ImportError, match="cannot import no_such_module_xyz:score"):
        load_model(msgspec.msgpack.encode(message))


# Across processes -------------------------------------------------------------------------

_LOAD_AND_EXECUTE = """
import sys
from engine.space import load_model
model = load_model(open(sys.argv[1], "rb").read())
print(model.execute(), model.metrics.intermediates, model.status.value)
"""


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_fresh_process_in_the_repository_root_loads_and_executes_a_model(
    tmp_path: Path,
) -> None:
    model = _simplified(FunctionEvaluator(_spaces.score, lr=0.5)).freeze(SAMPLE)
    (tmp_path / "model.bin").write_bytes(model.dump())
    result = _python("-c", _LOAD_AND_EXECUTE, str(tmp_path / "model.bin"), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "10.0 [0.5, 1.5] frozen"


_SCRIPT = """
import sys
from engine import (BaseModelSpace, Categorical, FunctionEvaluator, Numerical,
                    SimplifiedModelSpace, ensure_frozen, report_intermediate)


class ScriptNet(BaseModelSpace):
    def __init__(self, layers):
        self.layers = layers
        self.width = ensure_frozen(Categorical([4, 8], label="width"))


def evaluate(model, scale):
    report_intermediate(model.layers)
    return model.width * scale


if __name__ == "__main__":
    space = SimplifiedModelSpace.from_model(
        ScriptNet(layers=3), FunctionEvaluator(evaluate, scale=Numerical(1, 4, label="scale")))
    model = space.freeze({"width": 8, "scale": 2.5})
    with open(sys.argv[1], "wb") as f:
        f.write(model.dump())
"""


def test_a_model_from_a_script_run_as_main_loads_in_a_fresh_process(tmp_path: Path) -> None:
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    dumped = tmp_path / "model.bin"
    made = _python(str(script), str(dumped), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _python("-c", _LOAD_AND_EXECUTE, str(dumped), cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "20.0 [3.0] frozen"
    script.unlink()
    gone = _python("-c", _LOAD_AND_EXECUTE, str(dumped), cwd=elsewhere)
    assert gone.returncode == 1
    assert f"RecipeError: cannot load script '{script.resolve()}': the file is missing" \
        in gone.stderr


# Properties of random nested spaces -------------------------------------------------------

_PROPERTY = settings(max_examples=40, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
_NOT_A_CHOICE = "\x00not a choice"


@st.composite
def _leaf(draw: st.DrawFn, label: str) -> Any:
    kind = draw(st.sampled_from(["int", "str", "tuple", "numerical"]))
    if kind != "numerical":
        item = {"int": st.integers(-9, 9), "str": st.text("abc", max_size=2),
                "tuple": st.tuples(st.integers(0, 2), st.integers(0, 2))}[kind]
        return Categorical(draw(st.lists(item, min_size=1, max_size=3, unique=True)), label=label)
    log = draw(st.booleans())
    low = draw(st.floats(0.01, 10) if log else st.floats(-10, 10))
    high = low + draw(st.floats(0.5, 10))
    quantize = draw(st.none() | st.sampled_from([0.25, 0.5, 1.0]))
    return Numerical(low, high, log=log, quantize=quantize, label=label)


def _nest(draw: st.DrawFn, leaves: list[Any], depth: int = 0) -> Any:
    """Leaves spread over nested MutableList / MutableDict, with plain values between."""
    if len(leaves) == 1 and (depth >= 2 or draw(st.booleans())):
        return leaves[0]
    if depth >= 2:
        return MutableList(leaves)
    cuts = sorted(draw(st.sets(st.integers(1, len(leaves) - 1), max_size=2))) \
        if len(leaves) > 1 else []
    bounds = [0, *cuts, len(leaves)]
    children = [_nest(draw, leaves[a:b], depth + 1) for a, b in itertools.pairwise(bounds)]
    if draw(st.booleans()):
        return MutableList([*children, depth])
    return MutableDict({**{f"key{i}": child for i, child in enumerate(children)}, "plain": "x"})


class _Case:
    """A random space: a Tree of nested mutables, and an evaluator holding mutables too."""

    def __init__(self, tree: Any, evaluator_leaves: list[Any]) -> None:
        self.tree = tree
        self.evaluator_labels = {leaf.label for leaf in evaluator_leaves}
        self.evaluator = FunctionEvaluator(
            _spaces.tree_metric, plain=1,
            **{f"arg_{leaf.label}": leaf for leaf in evaluator_leaves})
        self.space = SimplifiedModelSpace.from_model(_spaces.Tree(tree), self.evaluator)

    def path(self, label: str) -> list[str]:
        return ["evaluator" if label in self.evaluator_labels else "model", label]

    def __repr__(self) -> str:
        return f"_Case({self.tree!r}, {self.evaluator!r})"


@st.composite
def _cases(draw: st.DrawFn) -> _Case:
    count = draw(st.integers(1, 5))
    leaves = [draw(_leaf(f"l{i}")) for i in range(count)]
    in_evaluator = draw(st.integers(0, min(2, count - 1)))
    split = count - in_evaluator
    return _Case(_nest(draw, leaves[:split]), leaves[split:])


def _plain(value: Any) -> Any:
    """``value`` as a message gives it back: tuples become lists."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _bad_value(leaf: Any, choice: int) -> Any:
    if isinstance(leaf, Categorical):
        return _NOT_A_CHOICE
    return [leaf.high + 1, leaf.low - 1, "1.0"][choice]


@_PROPERTY
@given(case=_cases(), seed=st.integers(0, 2**32))
def test_every_random_sample_validates_and_freezes(case: _Case, seed: int) -> None:
    memo: dict[str, Any] = {}
    model = case.space.random(memo, random_state=random.Random(seed))
    assert set(memo) == set(case.space.simplify())
    assert model.sample == memo
    assert model.status is ModelStatus.Frozen
    case.space.validate(memo)
    expected_tree = case.tree.freeze(memo)
    assert model.executable_model().tree == expected_tree
    assert isinstance(model.evaluator, FunctionEvaluator)
    assert model.evaluator.kwargs == {
        key: value.freeze(memo) if isinstance(value, Categorical | Numerical) else value
        for key, value in case.evaluator.kwargs.items()}
    raw = RawFormatModelSpace.from_model(_spaces.Tree(case.tree), case.evaluator).freeze(memo)
    assert raw.executable_model().tree == expected_tree
    defaults: dict[str, Any] = {}
    assert case.space.contains(case.space.default(defaults).sample)
    assert set(defaults) == set(memo)


@_PROPERTY
@given(case=_cases(), seed=st.integers(0, 2**32), data=st.data())
def test_one_value_outside_its_choices_is_rejected_at_its_label(
    case: _Case, seed: int, data: st.DataObject
) -> None:
    sample: dict[str, Any] = {}
    case.space.random(sample, random_state=random.Random(seed))
    leaves = case.space.simplify()
    label = data.draw(st.sampled_from(sorted(leaves)))
    bad = {**sample, label: _bad_value(leaves[label], data.draw(st.integers(0, 2)))}
    with pytest.raises(SampleValidationError) as info:
        case.space.freeze(bad)
    assert info.value.paths == case.path(label)
    missing = {k: v for k, v in sample.items() if k != label}
    error = case.space.check_contains(missing)
    assert error is not None
    assert error.paths == case.path(label)
    assert "is missing from the sample" in error.message


@_PROPERTY
@given(case=_cases(), granularity=st.integers(1, 2))
def test_grid_yields_every_distinct_valid_sample_once(case: _Case, granularity: int) -> None:
    models = list(case.space.grid(granularity=granularity))
    expected = 1
    for leaf in case.space.simplify().values():
        expected *= len(leaf.grid_values(granularity))
    assert len(models) == expected
    samples = [m.sample for m in models]
    assert len({repr(sorted(s.items())) for s in samples}) == expected
    assert all(s is not None and case.space.contains(s) for s in samples)


@_PROPERTY
@given(case=_cases(), seed=st.integers(0, 2**32))
def test_dump_and_load_round_trip(case: _Case, seed: int) -> None:
    model = case.space.random(random_state=random.Random(seed))
    loaded = load_model(model.dump())
    assert _plain(loaded.sample) == _plain(model.sample)
    assert (loaded.status, loaded.metrics) == (model.status, model.metrics)
    assert isinstance(loaded.evaluator, FunctionEvaluator)
    assert isinstance(model.evaluator, FunctionEvaluator)
    assert _plain(loaded.evaluator.kwargs) == _plain(model.evaluator.kwargs)
    assert _plain(loaded.executable_model().tree) == _plain(model.executable_model().tree)
    assert loaded.execute() == model.execute()
    assert loaded.metrics == model.metrics
    assert load_model(loaded.dump()).metrics == model.metrics
