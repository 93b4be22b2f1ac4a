"""Evaluators: how a built model is trained and scored.

An evaluator's function receives the built model (plus its keyword arguments), reports
with :func:`report_intermediate` / :func:`report_final`, and may instead return the final
metric. The same function runs unchanged in this process and in a worker process.
Under an Engine it may also keep checkpoints: :func:`save_checkpoint` after each epoch
(before reporting it), :func:`load_checkpoint` at its start (see engine._checkpoint).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from engine._checkpoint import load_checkpoint, save_checkpoint
from engine._context import (
    Reporter,
    check_metric,
    current_reporter,
    report_final,
    report_intermediate,
    use_reporter,
)
from engine._recipe import RecipeError, Symbol, check_plain_data
from engine.mutable import LabeledMutable, Mutable, freeze_value, leaves_of

if TYPE_CHECKING:
    from engine.space import ExecutableModelSpace

__all__ = (
    "Evaluator",
    "EvaluatorSpec",
    "FunctionEvaluator",
    "load_checkpoint",
    "report_final",
    "report_intermediate",
    "save_checkpoint",
)


class EvaluatorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A frozen :class:`FunctionEvaluator` as data: the function's symbol and its kwargs."""

    function: Symbol
    kwargs: dict[str, Any] = {}


class Evaluator(Mutable):
    """Trains and scores a model. Subclasses implement :meth:`evaluate`."""

    def evaluate(self, model: Any) -> Any:
        """Train and score ``model`` (the built module); return the final metric or report it.
        May return an awaitable."""
        raise NotImplementedError

    def is_async(self) -> bool:
        """Whether :meth:`evaluate` returns an awaitable (it then runs on the event loop)."""
        return False

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        return ()

    def freeze(self, sample: Mapping[str, Any]) -> Evaluator:
        return self

    def dump(self) -> EvaluatorSpec:
        raise TypeError(f"{type(self).__name__} cannot be sent to another process")

    def _execute(self, model: ExecutableModelSpace) -> Any:
        """Run :meth:`evaluate` on ``model``'s built module with reports routed to the
        current reporter, or into ``model.metrics`` when nothing runs the model."""
        reporter = _TrialReporter(current_reporter() or _MetricsReporter(model))
        if self.is_async():
            return self._execute_async(model, reporter)
        with use_reporter(reporter):
            result = self.evaluate(model.executable_model())
            if inspect.isawaitable(result):
                # An awaitable from a function that did not look async: its body runs when
                # awaited, so the reporter must be in place then, not now.
                return _finish_async(result, reporter)
            return reporter.finish(result)

    async def _execute_async(self, model: ExecutableModelSpace, reporter: _TrialReporter) -> Any:
        with use_reporter(reporter):
            awaitable: Awaitable[Any] = self.evaluate(model.executable_model())
            return reporter.finish(await awaitable)


async def _finish_async(awaitable: Awaitable[Any], reporter: _TrialReporter) -> float | None:
    with use_reporter(reporter):
        return reporter.finish(await awaitable)


class _MetricsReporter:
    """Records into ``model.metrics``: the reporter of a model executed outside any run."""

    def __init__(self, model: ExecutableModelSpace) -> None:
        self._metrics = model.metrics

    def intermediate(self, value: float) -> None:
        self._metrics.intermediates.append(value)

    def final(self, value: float) -> None:
        self._metrics.final = value


class _TrialReporter:
    """Forwards reports; makes the return value the final metric when none was reported."""

    def __init__(self, target: Reporter) -> None:
        self._target = target
        self._final: float | None = None

    def intermediate(self, value: float) -> None:
        self._target.intermediate(value)

    def final(self, value: float) -> None:
        self._final = value
        self._target.final(value)

    def finish(self, result: Any) -> float | None:
        if self._final is None and result is not None:
            self.final(check_metric(result))
        return self._final


class FunctionEvaluator(Evaluator):
    """Calls ``function(model, **kwargs)``. Any kwarg may be a mutable; it is frozen with
    the sample and validated under ``evaluator``."""

    def __init__(self, function: Callable[..., Any], **kwargs: Any) -> None:
        if not callable(function):
            raise TypeError(f"FunctionEvaluator needs a callable, got {function!r}")
        self.function = function
        self.kwargs = kwargs

    def evaluate(self, model: Any) -> Any:
        return self.function(model, **self.kwargs)

    def is_async(self) -> bool:
        # A function, a partial of one, or an object with an async __call__.
        function: Any = self.function
        return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            function.__call__)

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        return leaves_of(self.kwargs.values())

    def freeze(self, sample: Mapping[str, Any]) -> FunctionEvaluator:
        self.validate(sample)
        frozen = {key: freeze_value(value, sample) for key, value in self.kwargs.items()}
        return FunctionEvaluator(self.function, **frozen)

    def dump(self) -> EvaluatorSpec:
        """This evaluator as data; TypeError names an argument that cannot be sent."""
        if any(True for _ in self.leaf_mutables()):
            raise TypeError("freeze the evaluator before sending it: it still holds mutables")
        try:
            symbol = Symbol.of(self.function)
        except RecipeError as exc:
            raise TypeError(f"the evaluator's function cannot be sent to a worker: {exc}") from None
        for key, value in self.kwargs.items():
            check_plain_data(value, f"evaluator argument {key!r}")
        return EvaluatorSpec(function=symbol, kwargs=dict(self.kwargs))

    @classmethod
    def load(cls, spec: EvaluatorSpec) -> FunctionEvaluator:
        return cls(spec.function.resolve(), **spec.kwargs)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FunctionEvaluator) and other.function is self.function
                and other.kwargs == self.kwargs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = getattr(self.function, "__qualname__", repr(self.function))
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"FunctionEvaluator({name}{args})"
