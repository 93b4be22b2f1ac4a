"""Evaluators: mutable arguments, reporting, return values, async functions, dump/load."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from engine import (
    Categorical,
    Evaluator,
    FunctionEvaluator,
    Numerical,
    RawFormatModelSpace,
    SampleValidationError,
    SimplifiedModelSpace,
    report_final,
    report_intermediate,
)
from engine._context import use_reporter
from engine.evaluator import EvaluatorSpec
from tests import _spaces

SAMPLE = {"width": 16, "dropout": 0.2, "k1": 3, "k2": 7}


def _model(evaluator: Evaluator, **extra: Any) -> SimplifiedModelSpace:
    space = SimplifiedModelSpace.from_model(_spaces.Net(depth=1), evaluator)
    return space.freeze({**SAMPLE, **extra})


class _Recorder:
    """A reporter like the engine's: collects what the trial reports."""

    def __init__(self) -> None:
        self.intermediates: list[float] = []
        self.finals: list[float] = []

    def intermediate(self, value: float) -> None:
        self.intermediates.append(value)

    def final(self, value: float) -> None:
        self.finals.append(value)


class _AsyncCallable:
    async def __call__(self, model: Any) -> float:
        report_intermediate(1.0)
        await anyio.lowlevel.checkpoint()
        return 2.0


class _Scalar:
    """Like a 0-d tensor: a number behind ``item()``."""

    def item(self) -> float:
        return 0.75


def _sync_returning_a_coroutine(model: Any) -> Awaitable[float]:
    return _spaces.async_score(model, lr=0.5)


# Mutable arguments ----------------------------------------------------------------------


def test_function_evaluator_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="FunctionEvaluator needs a callable, got 3"):
        FunctionEvaluator(3)  # type: ignore[arg-type]


def test_mutable_arguments_are_leaves_and_freeze_with_the_sample() -> None:
    lr = Numerical(0.01, 1, log=True, label="lr")
    evaluator = FunctionEvaluator(_spaces.score, lr=lr, epochs=Categorical([1, 3], label="ep"))
    assert [leaf.label for leaf in evaluator.leaf_mutables()] == ["lr", "ep"]
    frozen = evaluator.freeze({"lr": 0.1, "ep": 3})
    assert frozen.kwargs == {"lr": 0.1, "epochs": 3}
    assert frozen.function is _spaces.score
    assert list(frozen.leaf_mutables()) == []
    assert evaluator.kwargs["lr"] is lr  # the original is untouched
    assert frozen == FunctionEvaluator(_spaces.score, lr=0.1, epochs=3)


def test_mutable_arguments_are_validated_under_evaluator() -> None:
    space = SimplifiedModelSpace.from_model(
        _spaces.Net(), FunctionEvaluator(_spaces.score, lr=Categorical([0.1, 0.2], label="lr")))
    with pytest.raises(SampleValidationError, match=r"0.3 is not one of .*\(at evaluator/lr\)") \
            as info:
        space.freeze({**SAMPLE, "lr": 0.3})
    assert info.value.paths == ["evaluator", "lr"]
    with pytest.raises(SampleValidationError, match="label 'lr' is missing") as info:
        space.freeze(SAMPLE)
    assert info.value.paths == ["evaluator", "lr"]
    model = space.freeze({**SAMPLE, "lr": 0.2})
    assert isinstance(model.evaluator, FunctionEvaluator)
    assert model.evaluator.kwargs == {"lr": 0.2}


# Reporting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("report", "name"), [(report_intermediate, "report_intermediate"),
                                              (report_final, "report_final")])
def test_reporting_outside_a_running_model_is_a_clear_error(report: Any, name: str) -> None:
    with pytest.raises(RuntimeError, match=rf"{name}\(\) was called outside a running model"):
        report(0.5)
    _model(FunctionEvaluator(_spaces.score)).execute()
    with pytest.raises(RuntimeError, match="outside a running model"):  # the run has ended
        report(0.5)


def test_execute_records_into_the_model_metrics_and_returns_the_final() -> None:
    model = _model(FunctionEvaluator(_spaces.score, lr=0.5, epochs=3))
    assert model.execute() == 16 * 0.5 + 1
    assert model.metrics.intermediates == [0.5, 1.5, 2.5]
    assert model.metric == model.metrics.final == 9.0


def test_a_reported_final_wins_over_the_return_value() -> None:
    model = _model(FunctionEvaluator(_spaces.final_wins, value=0.25))
    assert model.execute() == 0.25
    assert model.metric == 0.25


def test_no_report_and_no_return_value_leaves_no_metric() -> None:
    model = _model(FunctionEvaluator(_spaces.no_metric))
    assert model.execute() is None
    assert model.metric is None
    assert not model.metrics


def test_reports_go_to_the_running_trials_reporter_when_there_is_one() -> None:
    model = _model(FunctionEvaluator(_spaces.score, lr=0.5))
    recorder = _Recorder()
    with use_reporter(recorder):
        assert model.execute() == 9.0
    assert (recorder.intermediates, recorder.finals) == ([0.5, 1.5], [9.0])
    assert not model.metrics  # the engine, not the model, keeps them then


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("0.9", TypeError, "a metric must be a number, got str '0.9'"),
        (True, TypeError, "a metric must be a number, got bool True"),
        ({"acc": "0.9"}, TypeError, "metric 'acc': a metric must be a number, got str"),
        ({1: 0.9}, TypeError, "a metric's name must be a non-empty str, got int 1"),
        ({"acc": float("nan")}, ValueError, "metric 'acc': a metric must be a finite number"),
        ({}, ValueError, "a dict of metrics needs at least one metric"),
        (float("nan"), ValueError, "a metric must be a finite number, got nan"),
        (float("inf"), ValueError, "a metric must be a finite number, got inf"),
    ],
)
def test_a_bad_metric_is_a_clear_error(value: Any, error: type[Exception], match: str) -> None:
    model = _model(FunctionEvaluator(_spaces.returns, value=value))
    with pytest.raises(error, match=match):
        model.execute()
    recorder = _Recorder()
    with use_reporter(recorder), pytest.raises(error, match=match):
        report_intermediate(value)
    assert recorder.intermediates == []


def test_number_like_metrics_are_converted_to_float() -> None:
    assert _model(FunctionEvaluator(_spaces.returns, value=_Scalar())).execute() == 0.75
    assert _model(FunctionEvaluator(_spaces.returns, value=3)).execute() == 3.0


def test_raw_format_models_execute_the_same_way() -> None:
    space = RawFormatModelSpace.from_model(_spaces.Net(depth=1), FunctionEvaluator(_spaces.score))
    model = space.freeze(SAMPLE)
    assert model.execute() == 16 * 0.1 + 1
    assert model.metrics.intermediates == [0.1, 1.1]


# Async functions -------------------------------------------------------------------------


def test_async_functions_are_recognised() -> None:
    assert FunctionEvaluator(_spaces.async_score).is_async()
    assert FunctionEvaluator(functools.partial(_spaces.async_score, lr=1)).is_async()
    assert FunctionEvaluator(_AsyncCallable()).is_async()
    assert not FunctionEvaluator(_spaces.score).is_async()


@pytest.mark.anyio
async def test_async_execute_returns_an_awaitable_of_the_final() -> None:
    model = _model(FunctionEvaluator(_spaces.async_score, lr=0.5))
    pending = model.execute()
    assert inspect.isawaitable(pending)
    assert not model.metrics  # nothing runs before it is awaited
    assert await pending == 8.0
    assert model.metrics.intermediates == [0.5, 1.0]
    assert model.metric == 8.0


@pytest.mark.anyio
@pytest.mark.parametrize("function", [_AsyncCallable(), _sync_returning_a_coroutine])
async def test_awaitables_from_other_callables_are_awaited_with_reporting(function: Any) -> None:
    model = _model(FunctionEvaluator(function))
    final = await model.execute()
    assert final == model.metric
    assert model.metrics.intermediates[0] in (1.0, 0.5)


@pytest.mark.anyio
async def test_concurrent_async_runs_report_into_their_own_models() -> None:
    models = [_model(FunctionEvaluator(_spaces.async_score, lr=lr)) for lr in (0.1, 0.2, 0.3)]
    results: dict[int, float] = {}

    async def run(i: int) -> None:
        results[i] = await models[i].execute()

    async with anyio.create_task_group() as tg:
        for i in range(len(models)):
            tg.start_soon(run, i)
    for i, lr in enumerate((0.1, 0.2, 0.3)):
        assert models[i].metrics.intermediates == [lr, 2 * lr]
        assert results[i] == models[i].metric == 16 * lr
    with pytest.raises(RuntimeError, match="outside a running model"):
        report_intermediate(1.0)


# dump / load ----------------------------------------------------------------------------


def test_dump_and_load_give_an_equal_evaluator() -> None:
    evaluator = FunctionEvaluator(_spaces.score, lr=0.5, epochs=(1, 2))
    spec = evaluator.dump()
    assert spec.function.display() == "tests._spaces:score"
    loaded = FunctionEvaluator.load(spec)
    assert loaded.function is _spaces.score
    assert loaded.kwargs == {"lr": 0.5, "epochs": (1, 2)}


def test_an_evaluator_that_still_holds_mutables_cannot_be_dumped() -> None:
    with pytest.raises(TypeError, match="freeze the evaluator before sending it"):
        FunctionEvaluator(_spaces.score, lr=Categorical([1, 2], label="lr")).dump()


@pytest.mark.parametrize(
    ("evaluator", "match"),
    [
        (FunctionEvaluator(lambda model: 1.0),
         r"the evaluator's function cannot be sent to a worker: .*<lambda>.* is not importable"),
        (FunctionEvaluator(_spaces.score, lr={0.1}),
         "evaluator argument 'lr' is a set and cannot be sent to a worker"),
        (FunctionEvaluator(_spaces.score, lr=[0.1, _Scalar()]),
         r"evaluator argument 'lr'\[1\] is a _Scalar"),
    ],
)
def test_what_cannot_be_sent_is_named_at_dump(evaluator: FunctionEvaluator, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        evaluator.dump()


def test_a_plain_evaluator_subclass_cannot_be_sent() -> None:
    class Local(Evaluator):
        def evaluate(self, model: Any) -> float:
            return 1.0

    with pytest.raises(TypeError, match="Local cannot be sent to another process"):
        Local().dump()
    with pytest.raises(NotImplementedError):
        Evaluator().evaluate(None)
    assert EvaluatorSpec(function=FunctionEvaluator(_spaces.score).dump().function).kwargs == {}
