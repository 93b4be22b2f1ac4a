"""The Pareto front of a run's models: the one definition of "best" when a run has
several objectives, used by ``strategies.search``, ``RunResults.front``, ``nas-engine
show`` and ``nas-engine plot`` (the ranking itself is :mod:`engine.pareto`'s)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from engine._objective import MetricValue, Objective, score, sort_key
from engine.pareto import modes_of, non_dominated, objective_vector

__all__ = ("front", "points")

T = TypeVar("T")


def points(items: Iterable[T], final: Callable[[T], MetricValue | None],
           objectives: Sequence[Objective]) -> list[tuple[T, tuple[float, ...]]]:
    """Each of ``items`` that has a point under ``objectives`` (every objective's value,
    finite), with that point, in order. Items without one (no final, a number where
    there are several objectives, a dict lacking one of them) are left out."""
    found = []
    for item in items:
        try:
            point = objective_vector(final(item), objectives)
        except ValueError:
            point = None
        if point is not None:
            found.append((item, point))
    return found


def front(items: Iterable[T], final: Callable[[T], MetricValue | None],
          objectives: Sequence[Objective]) -> list[T]:
    """The non-dominated ``items`` under ``objectives``, best first by the first
    objective (ties keep their order)."""
    scored = points(items, final, objectives)
    if not scored:
        return []
    chosen = [scored[i][0] for i in non_dominated([p for _, p in scored], modes_of(objectives))]
    first = objectives[0]
    return sorted(chosen, key=lambda item: sort_key(score(final(item), first) or 0.0,
                                                    first.mode))
