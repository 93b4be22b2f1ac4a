"""Context variables: the sample a model is being built under, and where reports go.

Both are context variables, not module state, so concurrent trials in threads or tasks
of one process never see each other's sample or reporter.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from engine._checkpoint import checkpoint_spot
from engine.mutable import Mutable, Sample, SampleMissingError, check_sample_type

__all__ = (
    "Reporter",
    "current_model",
    "current_reporter",
    "ensure_frozen",
    "in_model_context",
    "model_context",
    "report_final",
    "report_intermediate",
    "use_reporter",
)

_sample: contextvars.ContextVar[Sample | None] = contextvars.ContextVar(
    "nas_engine_model_sample", default=None
)


@contextlib.contextmanager
def model_context(sample: Mapping[str, Any]) -> Iterator[None]:
    """Build models inside this block as the frozen model that ``sample`` picks.

    Blocks nest: the inner block sees the outer sample updated with its own (the inner
    value wins for a label in both), as in the reference. ``sample`` is copied on entry.
    """
    check_sample_type(sample)
    outer = _sample.get()
    token = _sample.set({**outer, **sample} if outer is not None else dict(sample))
    try:
        yield
    finally:
        _sample.reset(token)


def current_model() -> Sample | None:
    """A copy of the sample of the enclosing :func:`model_context`, or ``None`` outside
    one. Changing the copy does not change the context."""
    sample = _sample.get()
    return None if sample is None else dict(sample)


def in_model_context() -> bool:
    """Whether a :func:`model_context` is open (cheaper than copying its sample)."""
    return _sample.get() is not None


def ensure_frozen(mutable: Any) -> Any:
    """Inside :func:`model_context`, the value the sample picks for ``mutable``;
    outside, ``mutable`` itself, so the space can still discover it.

    Raises :class:`~engine.mutable.SampleMissingError` when the sample has no value for
    one of its labels: such a mutable is not part of the space the sample came from, so
    it would never be searched (and silently taking its default would hide that).
    """
    sample = _sample.get()
    if sample is None or not isinstance(mutable, Mutable):
        return mutable
    try:
        return mutable.freeze(sample)
    except SampleMissingError as exc:
        raise SampleMissingError(_NOT_IN_SPACE.format(exc.message), exc.paths) from None


_NOT_IN_SPACE = (
    "{} of the model being built: this mutable is not part of the space the sample was "
    "drawn from, so it is never searched. Let the space find it: make it an init argument "
    "or an attribute of the ModelSpace, register it with add_mutable, or use it through a "
    "mutable module (LayerChoice, Repeat, a mutable layer), not only inside a plain module"
)


class Reporter(Protocol):
    """Where a running model's metrics go: the engine's trial, or the model's Metrics."""

    def intermediate(self, value: float) -> None: ...

    def final(self, value: float) -> None: ...


_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "nas_engine_reporter", default=None
)


@contextlib.contextmanager
def use_reporter(reporter: Reporter) -> Iterator[None]:
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


def current_reporter() -> Reporter | None:
    return _reporter.get()


def check_metric(value: Any) -> float:
    """``value`` as a float; a clear TypeError for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numbers

            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                value = float(value)
            elif hasattr(value, "item") and callable(value.item):  # 0-d tensors, numpy scalars
                value = float(value.item())
            else:
                raise TypeError
        except (TypeError, ValueError):
            raise TypeError(
                f"a metric must be a number, got {type(value).__name__} {value!r}"
            ) from None
    number = float(value)
    if not math.isfinite(number):
        # JSON has no NaN or infinity: such a metric could not be journaled or sent.
        raise ValueError(f"a metric must be a finite number, got {number!r}")
    return number


def _reporter_or_raise(what: str) -> Reporter:
    reporter = _reporter.get()
    if reporter is None:
        raise RuntimeError(
            f"{what}() was called outside a running model: call it from an evaluator's "
            "function while model.execute() or an Engine runs it"
        )
    return reporter


def report_intermediate(value: Any) -> None:
    """Report a metric during training (an epoch's accuracy, say)."""
    _reporter_or_raise("report_intermediate").intermediate(check_metric(value))
    spot = checkpoint_spot()
    if spot is not None:  # the step a checkpoint saved next belongs to
        spot.reported += 1


def report_final(value: Any) -> None:
    """Report the model's final metric; it wins over the function's return value."""
    _reporter_or_raise("report_final").final(check_metric(value))
