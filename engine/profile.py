"""Profiles of a frozen model, measured without training, and constraints on them.

A :class:`Profiler` measures a built torch module: its parameter count (``params``), the
FLOPs of one forward pass on an input of ``input_shape`` (``flops``, counted by
``torch.utils.flop_counter.FlopCounterMode``) and its latency (``latency_ms``: ``warmup``
forward passes, then the median of ``runs`` timed ones, on ``device``). The module is
measured on a copy in eval mode under ``torch.inference_mode``: the model that trains
afterwards is untouched (its batch-norm statistics included).

Use it three ways:

- ``await engine.profile(model)``: the profile of a frozen model before submitting it, so
  a constrained strategy wastes no proposal. It measures in the driver process, on the
  profiler's ``device`` (default: ``cuda`` when torch sees a GPU, else ``cpu``).
- Constraints (``Constraint("params", "<=", 1e6)`` or the text ``"params <= 1e6"``): with
  ``engine.set_profiler(Profiler(..., constraints=[...]))`` every submitted model is
  measured in its worker (on that worker's device: the GPU it was given, else its CPU)
  before its training function runs. One that violates a constraint ends ``invalid``,
  its event naming the measured value and the limit (:class:`ConstraintViolated`), never
  trains, and does not count against ``max_trials`` (``engine.constraint_violations``
  counts them). Its worker built it first, so its events are ``queued``, ``training``
  (the worker took it), ``invalid``; a strategy that stopped on the budget goes on with
  the budget it gives back.
- Objectives: when the run's objectives (``engine.set_objectives``) name ``params``,
  ``flops`` or ``latency_ms``, the measured values are merged into each trained model's
  final metrics (a dict); a plain number the training reports is then named after the
  run's one other objective (else ``"metric"``). What the training reports wins over a
  measured value of the same name.
"""

from __future__ import annotations

import copy
import inspect
import math
import operator
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from engine._checks import check_count
from engine._context import check_metric, current_reporter, use_reporter
from engine._objective import MetricValue, Objective
from engine._recipe import RecipeError, Symbol
from engine.evaluator import Evaluator, FunctionEvaluator
from engine.mutable import SampleValidationError

if TYPE_CHECKING:
    from engine.space import ExecutableModelSpace

__all__ = (
    "PROFILE_METRICS",
    "Constraint",
    "ConstraintViolated",
    "Profile",
    "Profiler",
    "merged_name",
    "profiled",
)

#: The metrics a profile measures, by name.
PROFILE_METRICS = ("params", "flops", "latency_ms")
Operator = Literal["<=", "<", ">=", ">"]
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
#: The start of an ``invalid`` model's message when it broke a constraint.
VIOLATION_PREFIX = "constraint violated:"


class Constraint(msgspec.Struct, frozen=True, kw_only=True):
    """``metric op limit``, e.g. ``Constraint(metric="params", op="<=", limit=1e6)``; build
    one from text with :meth:`parse` (``"latency_ms < 5"``)."""

    metric: str
    op: Operator
    limit: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """``"params <= 1e6"`` as a Constraint; ValueError saying what the text lacks."""
        for op in ("<=", ">=", "<", ">"):
            name, found, limit = text.partition(op)
            if found:
                try:
                    return cls.of(name.strip(), op, float(limit))
                except ValueError as exc:
                    raise ValueError(f"bad constraint {text!r}: {exc}") from None
        raise ValueError(f"bad constraint {text!r}: write it as 'NAME OP LIMIT' with OP one "
                         f"of <=, <, >=, > and NAME one of {', '.join(PROFILE_METRICS)}")

    @classmethod
    def of(cls, metric: str, op: str, limit: float) -> Constraint:
        """A checked Constraint: a profile metric, a known operator, a finite limit."""
        if metric not in PROFILE_METRICS:
            raise ValueError(f"a constraint's metric must be one of "
                             f"{', '.join(PROFILE_METRICS)}, got {metric!r}")
        if op not in _OPERATORS:
            raise ValueError(f"a constraint's operator must be one of <=, <, >=, >, got {op!r}")
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(
                limit):
            raise ValueError(f"a constraint's limit must be a finite number, got {limit!r}")
        return cls(metric=metric, op=op, limit=float(limit))  # type: ignore[arg-type]

    def holds(self, value: float) -> bool:
        return _OPERATORS[self.op](value, self.limit)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}"


class ConstraintViolated(SampleValidationError):
    """A model's profile breaks a constraint: the model is ``invalid`` (not trained).
    ``constraint`` is the one it broke, ``value`` what was measured."""

    def __init__(self, constraint: Constraint, value: float, device: str) -> None:
        super().__init__(f"{VIOLATION_PREFIX} {constraint.metric} = {value:g} (measured on "
                         f"{device}) breaks {constraint} (the limit is {constraint.limit:g})",
                         ["profile", constraint.metric])
        self.constraint, self.value = constraint, value


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """What a :class:`Profiler` measured of one model (None: not measured)."""

    params: int
    flops: float | None = None
    latency_ms: float | None = None
    device: str = "cpu"  # where latency was measured

    def values(self) -> dict[str, float]:
        """The measured metrics by name (those measured only)."""
        found = {"params": float(self.params), "flops": self.flops,
                 "latency_ms": self.latency_ms}
        return {name: value for name, value in found.items() if value is not None}

    def violation(self, constraints: Iterable[Constraint]) -> Constraint | None:
        """The first of ``constraints`` this profile breaks, or None."""
        values = self.values()
        for constraint in constraints:
            value = values.get(constraint.metric)
            if value is not None and not constraint.holds(value):
                return constraint
        return None


class _Settings(msgspec.Struct, frozen=True, kw_only=True):
    """A profiler as data, to travel to a worker."""

    input_shape: tuple[int, ...] | None
    latency: bool
    warmup: int
    runs: int
    device: str | None
    constraints: tuple[Constraint, ...]


class Profiler:
    """Measures models (see the module docstring). ``input_shape`` (with the batch
    dimension, e.g. ``(1, 3, 32, 32)``) is needed for FLOPs and latency; without it only
    ``params`` is measured. ``latency=False`` skips the timing. ``device``: where latency
    is measured (default: ``cuda`` when torch sees a GPU, else ``cpu``). ``constraints``:
    :class:`Constraint` objects or texts like ``"params <= 1e6"``."""

    def __init__(self, input_shape: Iterable[int] | None = None, *, latency: bool = True,
                 warmup: int = 3, runs: int = 10, device: str | None = None,
                 constraints: Iterable[Constraint | str] = ()) -> None:
        shape = None if input_shape is None else tuple(input_shape)
        if shape is not None and (not shape or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise ValueError(f"input_shape must be positive ints, got {input_shape!r}")
        check_count("warmup", warmup, minimum=0)
        check_count("runs", runs)
        checked = tuple(c if isinstance(c, Constraint) else Constraint.parse(c)
                        for c in ([constraints] if isinstance(constraints, str) else constraints))
        for constraint in checked:
            self._check_measurable(constraint.metric, shape, latency)
        self.settings = _Settings(input_shape=shape, latency=bool(latency), warmup=warmup,
                                  runs=runs, device=device, constraints=checked)

    @staticmethod
    def _check_measurable(metric: str, shape: tuple[int, ...] | None, latency: bool) -> None:
        if metric != "params" and shape is None:
            raise ValueError(f"{metric!r} needs an input shape: pass Profiler(input_shape=...)")
        if metric == "latency_ms" and not latency:
            raise ValueError("'latency_ms' is not measured with latency=False")

    @property
    def constraints(self) -> tuple[Constraint, ...]:
        return self.settings.constraints

    def measured(self) -> tuple[str, ...]:
        """The metrics this profiler measures."""
        if self.settings.input_shape is None:
            return ("params",)
        return PROFILE_METRICS if self.settings.latency else ("params", "flops")

    def measure(self, module: Any) -> Profile:
        """The profile of the built ``module`` (a ``torch.nn.Module``). Blocks (forward
        passes): call it from a worker thread in async code."""
        import torch

        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"a profile needs a torch.nn.Module, got {type(module).__name__}")
        s = self.settings
        params = sum(p.numel() for p in module.parameters())
        if s.input_shape is None:
            return Profile(params=params)
        device = s.device or ("cuda" if torch.cuda.is_available() else "cpu")
        frozen = copy.deepcopy(module).eval()
        with torch.inference_mode():
            flops = _flops(frozen, torch.zeros(s.input_shape))
            latency = _latency(frozen.to(device), torch.zeros(s.input_shape, device=device),
                               s.warmup, s.runs) if s.latency else None
        return Profile(params=params, flops=flops, latency_ms=latency, device=device)

    def check(self, profile: Profile) -> None:
        """Raise :class:`ConstraintViolated` when ``profile`` breaks a constraint."""
        broken = profile.violation(self.constraints)
        if broken is not None:
            raise ConstraintViolated(broken, profile.values()[broken.metric], profile.device)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Profiler) and other.settings == self.settings

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Profiler({msgspec.structs.asdict(self.settings)!r})"


def _flops(module: Any, example: Any) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        module(example)
    return float(counter.get_total_flops())


def _latency(module: Any, example: Any, warmup: int, runs: int) -> float:
    import torch

    sync = torch.cuda.synchronize if example.device.type == "cuda" else _no_sync
    for _ in range(warmup):
        module(example)
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        module(example)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _no_sync() -> None:
    pass


# -- running a profiled model -------------------------------------------------------------


def merged_name(objectives: tuple[Objective, ...], profiler: Profiler) -> str | None:
    """The name a plain reported number gets when profile values are merged into a
    model's metrics; None when the objectives name no profile metric (nothing merged).
    ValueError when an objective needs a metric the profiler does not measure."""
    names = [o.name for o in objectives]
    wanted = [n for n in names if n in PROFILE_METRICS]
    if not wanted:
        return None
    for name in wanted:
        if name not in profiler.measured():
            Profiler._check_measurable(name, profiler.settings.input_shape,
                                       profiler.settings.latency)
    others = [n for n in names if n not in PROFILE_METRICS]
    return others[0] if len(others) == 1 else "metric"


class _Merging:
    """A reporter that merges the profile into the final metric it passes on."""

    def __init__(self, target: Any, values: dict[str, float], name: str) -> None:
        self._target, self._values, self._name = target, values, name
        self.final_value: MetricValue | None = None

    def intermediate(self, value: MetricValue) -> None:
        self._target.intermediate(value)

    def final(self, value: MetricValue) -> None:
        reported = value if isinstance(value, dict) else {self._name: value}
        self.final_value = {**self._values, **reported}
        self._target.final(self.final_value)


def evaluate_profiled(module: Any, evaluate: Callable[[Any], Any], settings: _Settings,
                      merge_as: str | None) -> Any:
    """Measure ``module``, check the constraints (ConstraintViolated: it never trains),
    then ``evaluate`` it, merging the profile into its final metric when ``merge_as``."""
    profiler = Profiler.__new__(Profiler)
    profiler.settings = settings
    profile = profiler.measure(module)
    profiler.check(profile)
    if merge_as is None:
        return evaluate(module)
    merging = _Merging(current_reporter(), profile.values(), merge_as)
    with use_reporter(merging):
        result = evaluate(module)
        if merging.final_value is None and result is not None:
            merging.final(check_metric(result))
    return merging.final_value


def run_profiled(module: Any, *, target: Mapping[str, Any], kwargs: Mapping[str, Any],
                 settings: Mapping[str, Any], merge_as: str | None) -> Any:
    """The evaluator function a profiled model runs in its worker (all arguments data)."""
    function = msgspec.convert(target, Symbol).resolve()
    return evaluate_profiled(module, lambda m: function(m, **kwargs),
                             msgspec.convert(settings, _Settings), merge_as)


def profiled(model: ExecutableModelSpace, profiler: Profiler,
             merge_as: str | None) -> ExecutableModelSpace:
    """A copy of the frozen ``model`` whose evaluator first measures it (see
    :func:`evaluate_profiled`); ``model`` itself is unchanged."""
    inner = model.evaluator
    if inner is None:
        raise ValueError("this model has no evaluator: pass one to from_model()")
    if inner.is_async():
        raise TypeError("a profiled model needs a synchronous evaluator function (the "
                        "profile is measured before it runs)")
    wrapper: Any
    try:
        if not isinstance(inner, FunctionEvaluator):
            raise RecipeError("not a function")
        symbol = msgspec.to_builtins(Symbol.of(inner.function))
        wrapper = FunctionEvaluator(run_profiled, target=symbol, kwargs=dict(inner.kwargs),
                                    settings=msgspec.to_builtins(profiler.settings),
                                    merge_as=merge_as)
    except RecipeError:  # runs in this process only (a raw-format model, a local function)
        wrapper = _ProfiledEvaluator(inner, profiler.settings, merge_as)
    runnable = copy.copy(model)
    runnable.evaluator = wrapper
    return runnable


class _ProfiledEvaluator(Evaluator):
    """In-process form of a profiled evaluator (its inner one cannot be sent anywhere)."""

    def __init__(self, inner: Any, settings: _Settings, merge_as: str | None) -> None:
        self.inner, self.settings, self.merge_as = inner, settings, merge_as

    def evaluate(self, model: Any) -> Any:
        result = evaluate_profiled(model, self.inner.evaluate, self.settings, self.merge_as)
        if inspect.isawaitable(result):
            raise TypeError("a profiled model needs a synchronous evaluator")
        return result
