"""The one definition of a metric's direction, of "best", and of a sample's key.

Everything that ranks models goes through here: ``Engine.best``, the strategies'
``rank`` / ``ranked_samples``, ``nas-engine show`` and ``plot``, and the progress line.

- A *score* is a final metric that is a number: None and NaN are no score, and a model
  without a score is never "best".
- ``"max"`` means a bigger score is better, ``"min"`` a smaller one.
- Ties keep the order given (the earlier model wins), so every ranking is stable.
- *Fidelity*: a model stopped early by its strategy (``metrics.stopped_at`` = the step it
  reached, its final metric that step's intermediate) is compared only with models at
  the same fidelity. A model trained to its end has full fidelity (``math.inf``), above
  every stopped one; among stopped ones a later step is higher. Rankings sort by
  (fidelity, highest first; then score, best first); "best" is the best at the highest
  fidelity reached.

A run declares its objective once (``Engine.set_objective``, which strategies call with
their ``mode``); the run file keeps it in its ``meta`` table under :data:`META_KEY`, so
readers of the file rank the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, TypeAlias, TypeGuard, TypeVar

import msgspec

__all__ = (
    "META_KEY",
    "Mode",
    "Objective",
    "best_first",
    "best_of",
    "at_top_fidelity",
    "better",
    "check_mode",
    "declare",
    "fidelity",
    "is_score",
    "objective_from_meta",
    "objective_meta",
    "sample_key",
    "sort_key",
)

Mode: TypeAlias = Literal["max", "min"]
T = TypeVar("T")

#: The key of the run file's ``meta`` row that holds the run's objective (JSON).
META_KEY = "objective"


class Objective(msgspec.Struct, frozen=True, kw_only=True):
    """What a run optimizes: the final metric called ``name``, bigger is better under
    ``mode="max"``, smaller under ``"min"``."""

    name: str = "metric"
    mode: Mode = "max"

    def __str__(self) -> str:
        return f"{self.mode} {self.name}"


_meta_decoder = msgspec.json.Decoder(Objective)
_key_encoder = msgspec.json.Encoder(order="sorted")


def check_mode(mode: object) -> Mode:
    """``mode`` itself when it is ``"max"`` or ``"min"``; ValueError otherwise."""
    if mode == "max":
        return "max"
    if mode == "min":
        return "min"
    raise ValueError(f"mode must be 'max' (bigger metric is better) or 'min', got {mode!r}")


def is_score(value: float | None) -> TypeGuard[float]:
    """Whether ``value`` can be ranked: a number, not NaN."""
    return value is not None and not math.isnan(value)


def better(a: float, b: float, mode: Mode) -> bool:
    """Whether score ``a`` is strictly better than ``b``."""
    return a > b if mode == "max" else a < b


def sort_key(value: float, mode: Mode) -> float:
    """A key that sorts scores best first in ascending order."""
    return -value if mode == "max" else value


def best_first(items: Iterable[T], score: Callable[[T], float | None], mode: Mode) -> list[T]:
    """``items`` that have a score, best first; ties keep their order."""
    mode = check_mode(mode)
    scored = [(value, item) for item in items if is_score(value := score(item))]
    scored.sort(key=lambda pair: sort_key(pair[0], mode))
    return [item for _, item in scored]


class _HasMetrics(Protocol):
    @property
    def metrics(self) -> Any: ...


class _Scored(_HasMetrics, Protocol):
    @property
    def metric(self) -> float | None: ...


M = TypeVar("M", bound=_Scored)


def fidelity(model: _HasMetrics) -> float:
    """The step a model stopped early reached; ``math.inf`` for one trained to its end."""
    stopped_at = getattr(model.metrics, "stopped_at", None)
    return math.inf if stopped_at is None else float(stopped_at)


def at_top_fidelity(models: Iterable[M]) -> list[M]:
    """The scored ``models`` at the highest fidelity any of them reached, in order."""
    scored = [m for m in models if is_score(m.metric)]
    top = max((fidelity(m) for m in scored), default=math.inf)
    return [m for m in scored if fidelity(m) == top]


def best_of(items: Iterable[T], score: Callable[[T], float | None], mode: Mode) -> T | None:
    """The first of the best-scored ``items``; None when none has a score."""
    mode = check_mode(mode)
    best: tuple[float, T] | None = None
    for item in items:
        value = score(item)
        if is_score(value) and (best is None or better(value, best[0], mode)):
            best = (value, item)
    return None if best is None else best[1]


def declare(current: Objective | None, mode: str, name: str | None, *,
            recorded_in: str | None = None) -> Objective:
    """The objective after declaring ``mode`` (and ``name``, None: keep it) on a run whose
    objective is ``current``. ValueError when it contradicts ``current``: a run has one
    direction (``recorded_in``: the run file it came from, for the message)."""
    checked = check_mode(mode)
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"the metric's name must be a non-empty str, got {name!r}")
    if current is None:
        return Objective(name=name or "metric", mode=checked)
    if checked != current.mode or (name is not None and name != current.name):
        source = f" (recorded in {recorded_in})" if recorded_in else ""
        wanted = Objective(name=name or current.name, mode=checked)
        raise ValueError(f"this run optimizes {current}{source}, not {wanted}: a run has one "
                         f"objective; pass mode={current.mode!r} (or start a new run)")
    return current


def objective_meta(objective: Objective) -> str:
    """``objective`` as the run file's meta value."""
    return msgspec.json.encode(objective).decode()


def objective_from_meta(meta: Mapping[str, str]) -> Objective | None:
    """The objective a run file recorded, or None (a run that declared none, or one
    written before objectives were recorded). ValueError when the value is damaged."""
    text = meta.get(META_KEY)
    if text is None:
        return None
    try:
        return _meta_decoder.decode(text)
    except msgspec.DecodeError as exc:  # bad JSON, or JSON of another shape
        raise ValueError(f"the run file's {META_KEY!r} meta value {text!r} is not an "
                         f"objective: {exc}") from None


def sample_key(sample: Mapping[str, Any]) -> bytes:
    """A hashable key that is equal for equal samples (label order, tuples vs lists and
    a msgpack round trip do not matter). The engine's de-duplication and the strategies
    both use it, so they agree on what "the same sample" is."""
    try:
        return _key_encoder.encode(dict(sample))
    except TypeError:  # a value msgspec cannot encode: its repr stands in
        return repr(sorted((k, repr(v)) for k, v in sample.items())).encode()
