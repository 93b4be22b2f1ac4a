"""The one definition of a metric's direction, of "best", and of a sample's key.

Everything that ranks models goes through here: ``Engine.best``, the strategies'
``rank`` / ``ranked_samples``, ``nas-engine show`` and ``plot``, and the progress line.

- A *score* is a final metric that is a number: None and NaN are no score, and a model
  without a score is never "best".
- ``"max"`` means a bigger score is better, ``"min"`` a smaller one.
- Ties keep the order given (the earlier model wins), so every ranking is stable.
- *Ranked models*: trained ones, ranked by their final, and paused ones (a strategy
  paused them, e.g. promotion ASHA at a rung, and the run may end with them paused),
  ranked by their last intermediate at the step they reached, as if stopped there
  (:func:`ranked_value`). Models in any other status are not ranked.
- *Fidelity*: a model stopped early by its strategy (``metrics.stopped_at`` = the step it
  reached, its final metric that step's intermediate) or paused (the steps it reported)
  is compared only with models at the same fidelity. A model trained to its end has full
  fidelity (``math.inf``), above every stopped or paused one; among those a later step
  is higher. Rankings sort by (fidelity, highest first; then score, best first):
  :func:`ranked`; "best" is the best at the highest fidelity reached: :func:`best_ranked`.

A run declares its objective once (``Engine.set_objective``, which strategies call with
their ``mode``); the run file keeps it in its ``meta`` table under :data:`META_KEY`, so
readers of the file rank the same way.

*Several metrics*: a model may report a dict of named numbers (a :data:`MetricValue`).
A run then declares its objectives (``Engine.set_objectives``): the first is the one
that single-number views (``best()``, the progress line, the dashboard) rank by, and the
run file keeps them all under :data:`OBJECTIVES_KEY` (and the first under
:data:`META_KEY`, so older readers still rank by it). :func:`score` is a final's number
under an objective: a plain number is its own score; a dict's score is its value under
the objective's name (under the default objective, ``"metric"``, the dict's first value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, TypeAlias, TypeGuard, TypeVar

import msgspec

__all__ = (
    "META_KEY",
    "OBJECTIVES_KEY",
    "MetricValue",
    "Mode",
    "Objective",
    "best_first",
    "best_of",
    "at_top_fidelity",
    "best_ranked",
    "better",
    "check_mode",
    "declare",
    "fidelity",
    "is_score",
    "objective_from_meta",
    "objective_meta",
    "objectives_from_meta",
    "objectives_meta",
    "ranked",
    "ranked_value",
    "check_objectives",
    "declare_objectives",
    "missing_objective",
    "sample_key",
    "score",
    "sort_key",
)

Mode: TypeAlias = Literal["max", "min"]
#: What a model reports: one number, or several named ones.
MetricValue: TypeAlias = float | dict[str, float]
T = TypeVar("T")

#: The key of the run file's ``meta`` row that holds the run's objective (JSON).
META_KEY = "objective"
#: The key of the ``meta`` row that holds a run's objectives when it has several (JSON list).
OBJECTIVES_KEY = "objectives"


class Objective(msgspec.Struct, frozen=True, kw_only=True):
    """What a run optimizes: the final metric called ``name``, bigger is better under
    ``mode="max"``, smaller under ``"min"``."""

    name: str = "metric"
    mode: Mode = "max"

    def __str__(self) -> str:
        return f"{self.mode} {self.name}"


_meta_decoder = msgspec.json.Decoder(Objective)
_list_decoder = msgspec.json.Decoder(tuple[Objective, ...])
_key_encoder = msgspec.json.Encoder(order="sorted")


def check_mode(mode: object) -> Mode:
    """``mode`` itself when it is ``"max"`` or ``"min"``; ValueError otherwise."""
    if mode == "max":
        return "max"
    if mode == "min":
        return "min"
    raise ValueError(f"mode must be 'max' (bigger metric is better) or 'min', got {mode!r}")


def is_score(value: object) -> TypeGuard[float]:
    """Whether ``value`` can be ranked: a number, not NaN (a dict of metrics is not: rank
    it by its :func:`score`)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(
        value)


def score(value: MetricValue | None, objective: Objective | None) -> float | None:
    """The number ``value`` (a final or an intermediate) ranks by under ``objective``: a
    number itself; a dict's value under the objective's name, or its first value under
    the default objective (None: none declared, or named ``"metric"``); else None."""
    if not isinstance(value, dict):
        return value
    if objective is not None and objective.name in value:
        return value[objective.name]
    if (objective is None or objective.name == "metric") and value:
        return next(iter(value.values()))
    return None


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


class _Ranked(_HasMetrics, Protocol):
    @property
    def status(self) -> str: ...


M = TypeVar("M", bound=_Ranked)

# ModelStatus values (engine.space imports this module, so not the enum itself).
_TRAINED, _PAUSED = "trained", "paused"


def fidelity(model: _HasMetrics) -> float:
    """The step a model reached when it did not train to its end: the step its strategy
    stopped it at (``metrics.stopped_at``), or the steps a paused model reported;
    ``math.inf`` for one trained to its end."""
    metrics = model.metrics
    stopped_at = getattr(metrics, "stopped_at", None)
    if stopped_at is not None:
        return float(stopped_at)
    if getattr(model, "status", None) == _PAUSED:
        return float(len(metrics.intermediates))
    return math.inf


def ranked_value(model: _Ranked) -> MetricValue | None:
    """What ``model`` ranks by: a trained model's final; a paused model's last
    intermediate (at the step it reached: :func:`fidelity`); None for any other status
    (not ranked) and for a paused model that reported nothing."""
    metrics = model.metrics
    if model.status == _TRAINED:
        return metrics.final  # type: ignore[no-any-return]
    if model.status == _PAUSED and metrics.intermediates:
        return metrics.intermediates[-1]  # type: ignore[no-any-return]
    return None


def ranked(models: Iterable[M], objective: Objective | None, mode: Mode) -> list[M]:
    """The ranked ``models`` with a score under ``objective`` (:func:`ranked_value`),
    highest fidelity first, best score first at each; ties keep the order given."""
    mode = check_mode(mode)
    keyed = []
    for index, model in enumerate(models):
        value = score(ranked_value(model), objective)
        if is_score(value):
            keyed.append((-fidelity(model), sort_key(value, mode), index, model))
    keyed.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in keyed]


def best_ranked(models: Iterable[M], objective: Objective | None, mode: Mode) -> M | None:
    """The first of :func:`ranked` (the best at the highest fidelity), or None."""
    found = ranked(models, objective, mode)
    return found[0] if found else None


def at_top_fidelity(models: Iterable[M], objective: Objective | None = None) -> list[M]:
    """The ranked ``models`` with a score (under ``objective``: :func:`score` of
    :func:`ranked_value`) at the highest fidelity any of them reached, in order."""
    scored = [m for m in models if is_score(score(ranked_value(m), objective))]
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


def check_objectives(objectives: Iterable[Objective]) -> tuple[Objective, ...]:
    """``objectives`` as a tuple: at least one, each an :class:`Objective` with a
    non-empty name, no name twice; TypeError or ValueError naming what is wrong."""
    if isinstance(objectives, Objective | str | Mapping):
        raise TypeError("set_objectives takes a list of Objective(name=..., mode=...), got "
                        f"{objectives!r}")
    checked = tuple(objectives)
    if not checked:
        raise ValueError("set_objectives needs at least one Objective(name=..., mode=...)")
    seen: set[str] = set()
    for objective in checked:
        if not isinstance(objective, Objective):
            raise TypeError(f"an objective must be an Objective(name=..., mode=...), got "
                            f"{type(objective).__name__} {objective!r}")
        if not isinstance(objective.name, str) or not objective.name:
            raise ValueError(f"an objective's name must be a non-empty str, got "
                             f"{objective.name!r}")
        check_mode(objective.mode)
        if objective.name in seen:
            raise ValueError(f"the objective {objective.name!r} is declared twice")
        seen.add(objective.name)
    return checked


def declare_objectives(current: tuple[Objective, ...], wanted: tuple[Objective, ...], *,
                       recorded_in: str | None = None) -> tuple[Objective, ...]:
    """The objectives after declaring ``wanted`` on a run that has ``current`` (empty:
    none yet). ValueError when they differ: a run keeps its objectives."""
    if not current or current == wanted:
        return wanted
    source = f" (recorded in {recorded_in})" if recorded_in else ""
    raise ValueError(f"this run optimizes {_listed(current)}{source}, not {_listed(wanted)}: "
                     "a run keeps its objectives (start a new run to change them)")


def _listed(objectives: tuple[Objective, ...]) -> str:
    return ", ".join(str(o) for o in objectives)


def missing_objective(value: MetricValue, objectives: tuple[Objective, ...]) -> str | None:
    """Why the final ``value`` cannot be ranked under ``objectives`` (the message of the
    model's failure), or None when it can: a dict must hold every objective's name; a
    plain number serves a run with one objective only."""
    if isinstance(value, dict):
        for objective in objectives:
            if objective.name not in value:
                return (f"the reported metrics {sorted(value)} lack the objective "
                        f"{objective.name!r}: report a dict with every objective "
                        f"({', '.join(repr(o.name) for o in objectives)})")
        return None
    if len(objectives) > 1:
        return (f"the model reported one number ({value!r}) but the run has "
                f"{len(objectives)} objectives: report a dict with "
                f"{', '.join(repr(o.name) for o in objectives)}")
    return None


def objectives_meta(objectives: tuple[Objective, ...]) -> dict[str, str]:
    """The run file's meta rows for ``objectives``: the first under :data:`META_KEY`,
    all of them under :data:`OBJECTIVES_KEY` when there are several."""
    rows = {META_KEY: objective_meta(objectives[0])}
    if len(objectives) > 1:
        rows[OBJECTIVES_KEY] = msgspec.json.encode(objectives).decode()
    return rows


def objectives_from_meta(meta: Mapping[str, str]) -> tuple[Objective, ...]:
    """Every objective a run file recorded (empty: none). ValueError when damaged."""
    text = meta.get(OBJECTIVES_KEY)
    if text is None:
        single = objective_from_meta(meta)
        return () if single is None else (single,)
    try:
        return check_objectives(_list_decoder.decode(text))
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"the run file's {OBJECTIVES_KEY!r} meta value {text!r} is not a "
                         f"list of objectives: {exc}") from None


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
