"""Pareto ranking of objective vectors: pure functions, no engine state.

A *point* is one model's objective vector, a sequence of floats in the order of the
run's objectives; ``modes`` gives each objective's direction (``"max"``: bigger is
better, ``"min"``: smaller). Point ``a`` *dominates* ``b`` when it is at least as good
in every objective and strictly better in one; equal points do not dominate each other,
so duplicates share their front. Every function takes points in the caller's order and
answers with indices into it, ties kept in that order, so every ranking is stable.

- :func:`non_dominated`: the indices of the Pareto front.
- :func:`non_dominated_sort`: the fronts, best first (NSGA-II's ranks).
- :func:`crowding_distance`: NSGA-II's density estimate within one front.
- :func:`hypervolume`: the volume the points dominate up to a reference point; exact
  (a 2-D sweep, and slicing along the last objective above two).
- :func:`normalize`, :func:`bounds`: scale each objective to [0, 1] between given
  bounds, so a reference point can be stated once for objectives of any scale.
- :func:`objective_vector`: a model's final metrics as a point, by objective name.

Points must be finite numbers: NaN or an infinity is refused with a ValueError (a model
without a usable value has no point; :func:`objective_vector` returns ``None`` for it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from engine._objective import Mode, Objective, check_mode

__all__ = (
    "Point",
    "bounds",
    "crowding_distance",
    "dominates",
    "hypervolume",
    "modes_of",
    "non_dominated",
    "non_dominated_sort",
    "normalize",
    "objective_vector",
)

Point = Sequence[float]


def _minimizing(points: Sequence[Point], modes: Sequence[str]) -> list[tuple[float, ...]]:
    """``points`` checked and turned so that smaller is better in every objective."""
    checked = [check_mode(mode) for mode in modes]
    if not checked:
        raise ValueError("modes must name at least one objective ('max' or 'min')")
    signs = [-1.0 if mode == "max" else 1.0 for mode in checked]
    turned = []
    for index, point in enumerate(points):
        if len(point) != len(signs):
            raise ValueError(f"point {index} has {len(point)} objectives, modes has "
                             f"{len(signs)}: {list(point)!r}")
        values = tuple(float(v) for v in point)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"point {index} is not finite: {list(point)!r} (leave out "
                             f"models without a usable value)")
        turned.append(tuple(s * v for s, v in zip(signs, values, strict=True)))
    return turned


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Whether ``a`` dominates ``b``, both minimizing."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def dominates(a: Point, b: Point, modes: Sequence[str]) -> bool:
    """Whether point ``a`` dominates ``b`` under ``modes``."""
    first, second = _minimizing([a, b], modes)
    return _dominates(first, second)


def non_dominated(points: Sequence[Point], modes: Sequence[str]) -> list[int]:
    """The indices of the points no other point dominates, in the order given."""
    turned = _minimizing(points, modes)
    return _front_of(turned, list(range(len(turned))))


def _front_of(turned: list[tuple[float, ...]], indices: list[int]) -> list[int]:
    """The indices among ``indices`` that none of ``indices`` dominates. Sorting
    lexicographically first means a point can only be dominated by one sorted before
    it, so each is compared with the front found so far only."""
    front: list[int] = []
    for i in sorted(indices, key=lambda i: turned[i]):
        if not any(_dominates(turned[j], turned[i]) for j in front):
            front.append(i)
    return sorted(front)


def non_dominated_sort(points: Sequence[Point], modes: Sequence[str]) -> list[list[int]]:
    """The fronts, best first: the non-dominated points, then those of the rest, and so
    on; each front's indices in the order given. Every index is in exactly one front."""
    turned = _minimizing(points, modes)
    left = list(range(len(turned)))
    fronts: list[list[int]] = []
    while left:
        front = _front_of(turned, left)
        fronts.append(front)
        taken = set(front)
        left = [i for i in left if i not in taken]
    return fronts


def crowding_distance(points: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point among ``points`` (one front): per
    objective, the two extreme points get ``math.inf`` and each other point the gap
    between its neighbours divided by the objective's range, summed over objectives.
    The direction of an objective does not matter. Equal values are ordered by index
    (so of duplicates at an extreme, the first gets ``inf``); an objective whose
    values are all equal adds nothing. Fewer than three points: all ``inf``."""
    if not points:
        return []
    turned = _minimizing(points, ["min"] * len(points[0]))
    count = len(turned)
    distance = [0.0] * count
    if count < 3:
        return [math.inf] * count
    for k in range(len(turned[0])):
        order = sorted(range(count), key=lambda i: (turned[i][k], i))
        low, high = turned[order[0]][k], turned[order[-1]][k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for before, here, after in zip(order, order[1:], order[2:], strict=False):
            distance[here] += (turned[after][k] - turned[before][k]) / (high - low)
    return distance


def hypervolume(points: Sequence[Point], modes: Sequence[str], reference: Point) -> float:
    """The volume of the region the points dominate and that dominates ``reference``
    (the worst corner: a point must be strictly better than it in every objective to
    count). Exact: a sweep in 2-D (``n log n``); above, slices along the last objective
    (``n**(d-1) log n``, fine for hundreds of points in 3-D). 0.0 without points."""
    turned = _minimizing(points, modes)
    (ref,) = _minimizing([reference], modes)
    inside = [p for p in turned if all(v < r for v, r in zip(p, ref, strict=True))]
    front = [inside[i] for i in _front_of(inside, list(range(len(inside))))]
    return _volume(sorted(set(front)), ref)


def _volume(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """The hypervolume of distinct minimizing ``points`` inside ``ref``."""
    if not points:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    if len(ref) == 2:
        return _sweep_2d(points, ref)
    # Slice along the last objective: between consecutive values of it, the dominated
    # cross-section is that of every point at or below the slice, one dimension fewer.
    by_last = sorted(points, key=lambda p: p[-1])
    total = 0.0
    for i, point in enumerate(by_last):
        upper = by_last[i + 1][-1] if i + 1 < len(by_last) else ref[-1]
        if upper > point[-1]:
            section = sorted({p[:-1] for p in by_last[:i + 1]})
            total += (upper - point[-1]) * _volume(_minimal(section), ref[:-1])
    return total


def _minimal(points: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """The non-dominated ones of distinct, lexicographically sorted ``points``."""
    front: list[tuple[float, ...]] = []
    for point in points:
        if not any(_dominates(kept, point) for kept in front):
            front.append(point)
    return front


def _sweep_2d(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """The 2-D hypervolume: in order of the first objective, each point adds the strip
    between its second objective and the best second objective seen before it."""
    area, ceiling = 0.0, ref[1]
    for x, y in sorted(points):
        if y < ceiling:
            area += (ref[0] - x) * (ceiling - y)
            ceiling = y
    return area


def bounds(points: Sequence[Point]) -> list[tuple[float, float]]:
    """Each objective's (smallest, largest) value among ``points`` (at least one)."""
    if not points:
        raise ValueError("bounds() needs at least one point")
    turned = _minimizing(points, ["min"] * len(points[0]))
    return [(min(column), max(column)) for column in zip(*turned, strict=True)]


def normalize(points: Sequence[Point],
              limits: Sequence[tuple[float, float]]) -> list[tuple[float, ...]]:
    """Each point with objective ``k`` mapped linearly from ``limits[k]`` (low, high) to
    [0, 1]; values outside the limits fall outside [0, 1]. Directions are unchanged, so
    pass the same ``modes`` afterwards. A limit with ``high <= low`` is refused."""
    for k, (low, high) in enumerate(limits):
        if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
            raise ValueError(f"limits[{k}] = ({low!r}, {high!r}) must be finite with "
                             f"low < high")
    turned = _minimizing(points, ["min"] * len(limits))
    return [tuple((v - low) / (high - low) for v, (low, high) in zip(p, limits, strict=True))
            for p in turned]


def objective_vector(metrics_final: Mapping[str, float] | float | None,
                     objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """A model's final metrics as a point in the order of ``objectives``: from a dict,
    the value under each objective's name; a plain number stands for a single
    objective. ``None`` when there is no final metric or one of the values is NaN or
    infinite (such a model has no point). ValueError when a dict lacks an objective's
    name (a typo in the training code, or a run declared other objectives), or when a
    plain number meets several objectives."""
    if not objectives:
        raise ValueError("objectives must name at least one objective")
    if metrics_final is None:
        return None
    if not isinstance(metrics_final, Mapping):
        if len(objectives) != 1:
            raise ValueError(f"a single final metric ({metrics_final!r}) cannot be scored "
                             f"on {len(objectives)} objectives "
                             f"({', '.join(o.name for o in objectives)}): report a dict")
        values: list[float] = [float(metrics_final)]
    else:
        missing = [o.name for o in objectives if o.name not in metrics_final]
        if missing:
            raise ValueError(f"the final metrics {sorted(metrics_final)} lack the "
                             f"objective(s) {missing}: report them by these names")
        values = [float(metrics_final[o.name]) for o in objectives]
    return tuple(values) if all(math.isfinite(v) for v in values) else None


def modes_of(objectives: Sequence[Objective]) -> list[Mode]:
    """Each objective's mode, in order."""
    return [o.mode for o in objectives]
