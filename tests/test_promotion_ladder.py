"""The bookkeeping of promotion ASHA's rungs (pure logic, no engine)."""

from __future__ import annotations

import math

import pytest

from strategies.schedulers._ladder import Ladder


def test_a_rung_promotes_its_top_third_as_it_fills() -> None:
    ladder = Ladder((1, 3, 9), 3, "max")
    assert list(ladder.candidates()) == []
    ladder.record(0, 10, 0.5)
    ladder.record(0, 11, 0.7)
    assert list(ladder.candidates()) == []  # floor(2 / 3) = 0: nobody yet
    ladder.record(0, 12, 0.6)
    assert list(ladder.candidates()) == [(0, 11)]  # the best of 3
    ladder.promote(0, 11)
    assert list(ladder.candidates()) == []  # 11 went on; 1 of 3 is the share
    for model_id, value in ((13, 0.1), (14, 0.9), (15, 0.2)):
        ladder.record(0, model_id, value)
    # 6 models: the top 2 are 14 and 11; 11 already went on
    assert ladder.top(0) == [14, 11]
    assert list(ladder.candidates()) == [(0, 14)]


def test_higher_rungs_are_offered_first() -> None:
    ladder = Ladder((1, 3), 2, "max")
    for model_id, value in enumerate((0.3, 0.4, 0.1, 0.2)):
        ladder.record(0, model_id, value)
    ladder.promote(0, 1)
    ladder.promote(0, 0)
    ladder.record(1, 1, 0.8)
    ladder.record(1, 0, 0.6)
    assert list(ladder.candidates()) == [(1, 1)]  # rung 1's top half; rung 0's is used up
    ladder.record(0, 4, 0.9)
    ladder.record(0, 5, 0.95)
    assert list(ladder.candidates()) == [(1, 1), (0, 5), (0, 4)]


def test_mode_min_nan_and_ties() -> None:
    ladder = Ladder((2,), 2, "min")
    for model_id, value in ((0, math.nan), (1, 3.0), (2, 1.0), (3, 1.0), (4, 5.0),
                            (5, math.nan)):
        ladder.record(0, model_id, value)
    assert ladder.top(0) == [2, 3, 1]  # smallest first, ties by arrival, NaN last
    ladder.promote(0, 2)
    ladder.unpromote(0, 2)
    assert next(ladder.candidates()) == (0, 2)


@pytest.mark.parametrize(("eta", "n", "count"), [
    (3, 3, 1), (3, 8, 2), (3, 9, 3), (2, 5, 2), (2.5, 5, 2), (2.5, 4, 1), (1.5, 5, 3),
])
def test_the_share_is_floor_of_n_over_eta(eta: float, n: int, count: int) -> None:
    ladder = Ladder((1,), eta, "max")
    for model_id in range(n):
        ladder.record(0, model_id, float(model_id))
    assert ladder.top(0) == list(range(n - 1, n - 1 - count, -1))
