"""engine.pareto against brute force: fronts, sorting, crowding and exact hypervolume,
with ties, duplicates and mixed directions."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._objective import Objective
from engine.pareto import (
    bounds,
    crowding_distance,
    dominates,
    hypervolume,
    modes_of,
    non_dominated,
    non_dominated_sort,
    normalize,
    objective_vector,
)

GRID = 5  # integer coordinates 0..GRID-1: many ties and duplicates


def points_st(dims: int, max_size: int = 12) -> st.SearchStrategy[list[tuple[int, ...]]]:
    coordinate = st.integers(0, GRID - 1)
    return st.lists(st.tuples(*[coordinate] * dims), max_size=max_size)


def modes_st(dims: int) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(["max", "min"]), min_size=dims, max_size=dims)


def brute_dominates(a: tuple[int, ...], b: tuple[int, ...], modes: list[str]) -> bool:
    triples = list(zip(a, b, modes, strict=True))
    better_or_equal = all((x >= y) if m == "max" else (x <= y) for x, y, m in triples)
    strictly = any((x > y) if m == "max" else (x < y) for x, y, m in triples)
    return better_or_equal and strictly


def brute_front(points: list[tuple[int, ...]], modes: list[str], among: list[int]) -> list[int]:
    return [i for i in among
            if not any(brute_dominates(points[j], points[i], modes) for j in among)]


def brute_hypervolume(points: list[tuple[int, ...]], modes: list[str],
                      reference: tuple[int, ...]) -> int:
    """Count the unit cells between the reference and the best corner that some point
    dominates (integer coordinates make this exact)."""
    ranges = []
    for r, m in zip(reference, modes, strict=True):
        # cells [c, c+1] on the good side of the reference
        ranges.append(range(r - GRID - 1, r) if m == "min" else range(r, r + GRID + 1))
    count = 0
    for cell in itertools.product(*ranges):
        if any(all((p <= c) if m == "min" else (p >= c + 1)
                   for p, c, m in zip(point, cell, modes, strict=True)) for point in points):
            count += 1
    return count


# --- dominance and fronts ---------------------------------------------------------------


def test_dominates_is_strict_and_follows_modes() -> None:
    assert dominates((2, 1), (1, 1), ["max", "max"])
    assert not dominates((1, 1), (1, 1), ["max", "max"])  # equal: neither dominates
    assert dominates((1, 1), (2, 1), ["min", "min"])
    assert dominates((0.9, 3.0), (0.8, 4.0), ["max", "min"])
    assert not dominates((0.9, 5.0), (0.8, 4.0), ["max", "min"])


@settings(max_examples=200, deadline=None)
@given(data=st.data(), dims=st.integers(1, 4))
def test_non_dominated_matches_brute_force(data: st.DataObject, dims: int) -> None:
    points = data.draw(points_st(dims))
    modes = data.draw(modes_st(dims))
    assert non_dominated(points, modes) == brute_front(points, modes, list(range(len(points))))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), dims=st.integers(1, 4))
def test_non_dominated_sort_peels_brute_force_fronts(data: st.DataObject, dims: int) -> None:
    points = data.draw(points_st(dims))
    modes = data.draw(modes_st(dims))
    expected, left = [], list(range(len(points)))
    while left:
        front = brute_front(points, modes, left)
        expected.append(front)
        left = [i for i in left if i not in front]
    assert non_dominated_sort(points, modes) == expected


def test_duplicates_share_a_front_in_the_order_given() -> None:
    points = [(1.0, 5.0), (3.0, 3.0), (1.0, 5.0), (2.0, 2.0), (3.0, 3.0)]
    assert non_dominated(points, ["max", "max"]) == [0, 1, 2, 4]
    assert non_dominated_sort(points, ["max", "max"]) == [[0, 1, 2, 4], [3]]
    assert non_dominated_sort(points, ["min", "min"]) == [[0, 2, 3], [1, 4]]


def test_bad_points_are_refused_with_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="point 1 has 1 objectives, modes has 2"):
        non_dominated([(1, 2), (1,)], ["max", "min"])
    with pytest.raises(ValueError, match="point 0 is not finite"):
        hypervolume([(math.nan, 1.0)], ["max", "min"], (0.0, 2.0))
    with pytest.raises(ValueError, match="mode must be 'max'"):
        non_dominated([(1, 2)], ["max", "biggest"])
    with pytest.raises(ValueError, match="at least one objective"):
        non_dominated([], [])
    assert non_dominated([], ["max"]) == []
    assert non_dominated_sort([], ["max"]) == []


# --- hypervolume ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dims=st.integers(1, 4))
def test_hypervolume_matches_counting_cells(data: st.DataObject, dims: int) -> None:
    points = data.draw(points_st(dims, max_size=10 if dims < 4 else 6))
    modes = data.draw(modes_st(dims))
    # a reference inside the grid too, so some points lie beyond it and count for nothing
    reference = tuple(data.draw(st.integers(0, GRID)) for _ in range(dims))
    expected = brute_hypervolume(points, modes, reference)
    assert hypervolume(points, modes, reference) == pytest.approx(expected)


def test_hypervolume_2d_by_hand() -> None:
    # maximize both from (0, 0): a staircase of 3 boxes, one duplicated, one dominated
    points = [(1, 3), (2, 2), (3, 1), (2, 2), (1, 1)]
    assert hypervolume(points, ["max", "max"], (0, 0)) == 6.0
    # mixed: accuracy up, latency down, reference (0 accuracy, latency 10)
    assert hypervolume([(0.5, 4.0), (0.8, 6.0)], ["max", "min"], (0.0, 10.0)) == \
        pytest.approx(0.5 * 6 + 0.3 * 4)
    assert hypervolume([], ["max", "min"], (0.0, 1.0)) == 0.0
    assert hypervolume([(0.0, 0.5)], ["max", "min"], (0.0, 1.0)) == 0.0  # on the reference


def test_hypervolume_3d_handles_a_few_hundred_points() -> None:
    # points on the sphere's positive octant: all non-dominated, the hard case
    import random

    rng = random.Random(0)
    points = []
    for _ in range(200):
        v = [abs(rng.gauss(0, 1)) for _ in range(3)]
        norm = math.sqrt(sum(x * x for x in v))
        points.append(tuple(x / norm for x in v))
    volume = hypervolume(points, ["max"] * 3, (0.0, 0.0, 0.0))
    assert 0.4 < volume < math.pi / 6  # under the octant of the unit ball, not far below


# --- crowding distance ------------------------------------------------------------------


def brute_crowding(points: list[tuple[float, ...]]) -> list[float]:
    n = len(points)
    if n < 3:
        return [math.inf] * n
    out = [0.0] * n
    for k in range(len(points[0])):
        ranked = sorted(range(n), key=lambda i: (points[i][k], i))
        span = points[ranked[-1]][k] - points[ranked[0]][k]
        for position, i in enumerate(ranked):
            if position in (0, n - 1):
                out[i] = math.inf
            elif span > 0:
                out[i] += (points[ranked[position + 1]][k]
                           - points[ranked[position - 1]][k]) / span
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data(), dims=st.integers(1, 3))
def test_crowding_distance_matches_the_definition(data: st.DataObject, dims: int) -> None:
    points = [tuple(float(v) for v in p) for p in data.draw(points_st(dims))]
    assert crowding_distance(points) == pytest.approx(brute_crowding(points))


def test_crowding_distance_by_hand() -> None:
    points = [(0.0, 4.0), (1.0, 2.0), (3.0, 1.0), (4.0, 0.0)]
    # interior: (3 - 0)/4 + (4 - 1)/4 = 1.5, (4 - 1)/4 + (2 - 0)/4 = 1.25
    assert crowding_distance(points) == [math.inf, 1.5, 1.25, math.inf]
    assert crowding_distance([(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)]) == [math.inf, 0.0, math.inf]
    assert crowding_distance([(1.0,), (2.0,)]) == [math.inf, math.inf]
    assert crowding_distance([]) == []


# --- normalization and objective vectors ------------------------------------------------


def test_normalize_maps_bounds_to_the_unit_interval() -> None:
    points = [(70.0, 8.0), (90.0, 2.0), (80.0, 5.0)]
    limits = bounds(points)
    assert limits == [(70.0, 90.0), (2.0, 8.0)]
    assert normalize(points, limits) == [(0.0, 1.0), (1.0, 0.0), (0.5, 0.5)]
    assert normalize([(100.0, 2.0)], limits) == [(1.5, 0.0)]  # outside stays outside
    with pytest.raises(ValueError, match=r"limits\[1\] = \(3.0, 3.0\)"):
        normalize(points, [(0.0, 1.0), (3.0, 3.0)])
    with pytest.raises(ValueError, match="at least one point"):
        bounds([])


def test_hypervolume_is_invariant_to_the_units_once_normalized() -> None:
    raw = [(70.0, 8.0), (90.0, 6.0), (80.0, 2.0)]
    scaled = [(a / 100, b * 1000) for a, b in raw]
    modes = ["max", "min"]
    one = hypervolume(normalize(raw, bounds(raw)), modes, (0.0, 1.0))
    two = hypervolume(normalize(scaled, bounds(scaled)), modes, (0.0, 1.0))
    assert one == pytest.approx(two)
    # normalized: (0, 1) on the reference adds nothing; (1, 2/3) and (0.5, 0) overlap
    assert one == pytest.approx(1 / 3 + 1 / 2 - 1 / 6)


def test_objective_vector_reads_dicts_by_name() -> None:
    objectives = [Objective(name="accuracy", mode="max"), Objective(name="latency_ms",
                                                                     mode="min")]
    assert modes_of(objectives) == ["max", "min"]
    assert objective_vector({"latency_ms": 4.1, "accuracy": 0.93, "extra": 1.0},
                            objectives) == (0.93, 4.1)
    assert objective_vector(None, objectives) is None
    assert objective_vector({"accuracy": math.nan, "latency_ms": 1.0}, objectives) is None
    assert objective_vector(0.5, [Objective(name="metric")]) == (0.5,)
    with pytest.raises(ValueError, match=r"lack the objective\(s\) \['latency_ms'\]"):
        objective_vector({"accuracy": 0.9}, objectives)
    with pytest.raises(ValueError, match="cannot be scored on 2 objectives"):
        objective_vector(0.5, objectives)
    with pytest.raises(ValueError, match="at least one objective"):
        objective_vector({"a": 1.0}, [])
