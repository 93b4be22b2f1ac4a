"""Failure is loud: the error on the handle and the model, in the log, and from search();
one exception hierarchy."""

from __future__ import annotations

import logging

import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from strategies import RandomSearch, search

pytestmark = pytest.mark.anyio


class Toy(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(6)), label="x"))


def boom(model: Toy) -> float:
    raise ValueError(f"bad learning rate for x={model.x}")


def odd_fails(model: Toy) -> float:
    if model.x % 2:
        raise ZeroDivisionError(f"odd x={model.x}")
    return float(model.x)


def no_metric(model: Toy) -> None:
    return None


def space(fn: object) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Toy(), e.FunctionEvaluator(fn))  # type: ignore[arg-type]


async def test_a_failed_model_carries_its_error() -> None:
    async with Engine() as engine:
        failed = await engine.submit(space(boom).freeze({"x": 3}))
        trained = await engine.submit(space(odd_fails).freeze({"x": 2}))
        model = await failed
        await trained
    assert model.status is ModelStatus.Failed
    assert failed.error is model.error
    assert isinstance(model.error, e.TrialError)
    assert model.error.type == "ValueError"
    assert model.error.message == "bad learning rate for x=3"
    assert "in boom" in model.error.traceback
    assert str(model.error) == "ValueError: bad learning rate for x=3"
    assert trained.error is None
    assert trained.model.error is None


async def test_an_engine_made_failure_carries_its_error_too() -> None:
    async with Engine(max_retries=2) as engine:
        handle = await engine.submit(space(no_metric).freeze({"x": 1}))
        await handle
    assert handle.error is not None
    assert handle.error.type == "NoFinalMetric"
    assert handle.error.traceback == ""


async def test_each_failed_model_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="engine")
    async with Engine(InlinePool(2), max_retries=1) as engine:
        handles = [await engine.submit(space(odd_fails).freeze({"x": x})) for x in range(4)]
        for handle in handles:
            await handle
    failures = [r for r in caplog.records if r.name == "engine" and "failed" in r.message]
    assert sorted(r.getMessage() for r in failures) == [
        "model 2 failed: ZeroDivisionError: odd x=1",
        "model 4 failed: ZeroDivisionError: odd x=3",
    ]
    assert {r.levelno for r in failures} == {logging.WARNING}
    assert logging.getLogger("engine").handlers == []  # the program decides where to


async def test_search_with_nothing_trained_raises_with_the_first_failures() -> None:
    async with Engine(InlinePool(2), max_trials=5) as engine:
        with pytest.raises(e.SearchFailed) as caught:
            await search(space(boom), RandomSearch(seed=0), engine)
    text = str(caught.value)
    assert "the search trained no model: 5 failed" in text
    assert "model 1: ValueError: bad learning rate for x=" in text
    assert "... and 2 more" in text
    assert [model_id for model_id, _ in caught.value.errors] == [1, 2, 3, 4, 5]
    assert isinstance(caught.value, e.NasEngineError)


async def test_search_with_some_trained_returns_them() -> None:
    async with Engine(InlinePool(2), max_trials=6) as engine:
        ranked = await search(space(odd_fails), RandomSearch(seed=0), engine)
    assert [m.metric for m in ranked] == [4.0, 2.0, 0.0]




def test_the_package_errors_share_one_base_class() -> None:
    exceptions = {name for name in e.__all__
                  if isinstance(getattr(e, name), type)
                  and issubclass(getattr(e, name), BaseException)}
    assert {"RunFileError", "RunStoreClosed", "SearchFailed", "InWorkerProcess",
            "RunChanged", "UnknownEventKind"} <= exceptions
    for name in exceptions:
        assert issubclass(getattr(e, name), e.NasEngineError), name
    assert issubclass(e.RunFileError, ValueError)
    assert issubclass(e.RunStoreClosed, RuntimeError)
    assert issubclass(e.RunChanged, e.RunFileError)
    assert issubclass(e.UnknownEventKind, e.RunFileError)
    assert e.RunFileError.__module__.startswith("engine.")
    assert issubclass(e.SampleMissingError, e.SampleValidationError)
    assert issubclass(e.SampleValidationError, ValueError)
    assert issubclass(e.RecipeError, ImportError)



async def test_a_choice_the_space_cannot_see_fails_the_model_not_invalid() -> None:
    """SampleMissingError is a bug in the space: the model fails with it, loudly."""
    from tests.test_nn import _HiddenChoice

    space = e.SimplifiedModelSpace.from_model(_HiddenChoice(), e.FunctionEvaluator(_one))
    async with Engine(InlinePool(1)) as engine:
        handle = await engine.submit(space.freeze({"act": 1}))
        await handle
    assert handle.status is ModelStatus.Failed
    assert handle.error is not None
    assert handle.error.type == "SampleMissingError"
    assert "'hidden'" in handle.error.message


def _one(model: object) -> float:
    return 1.0
