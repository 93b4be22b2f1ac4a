"""Every count and positive number the engine takes is checked the same way."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine import Engine
from engine._checks import check_bool, check_count, check_positive


@pytest.mark.parametrize(("name", "value"), [
    ("max_trials", True), ("max_trials", 0), ("max_trials", 2.0),
    ("max_retries", True), ("max_retries", False), ("max_retries", -1), ("max_retries", 1.0),
    ("queue_size", True), ("queue_size", 0),
    ("event_buffer", True), ("event_buffer", 0),
    ("max_duration", True), ("max_duration", 0), ("max_duration", math.inf),
    ("trial_timeout", False), ("trial_timeout", -1.0), ("trial_timeout", math.nan),
    ("trial_timeout", "5"),
])
def test_engine_refuses_bad_counts_and_numbers_by_name(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be"):
        Engine(**{name: value})


@pytest.mark.parametrize(("name", "value"), [
    ("deduplicate", 1), ("deduplicate", "yes"), ("deduplicate", None),
    ("allow_changed_space", "no"), ("allow_changed_space", 0), ("allow_changed_space", None),
])
def test_engine_refuses_flags_that_are_not_bools(name: str, value: Any) -> None:
    with pytest.raises(TypeError, match=f"^{name} must be True or False, got {value!r}$"):
        Engine(**{name: value})


def test_engine_accepts_good_counts_and_numbers() -> None:
    engine = Engine(max_trials=1, max_retries=0, queue_size=1, event_buffer=1,
                    max_duration=0.5, trial_timeout=3)
    assert (engine.max_trials, engine.max_retries) == (1, 0)


def test_checks_say_what_they_expect() -> None:
    with pytest.raises(ValueError, match=r"workers must be an int >= 1, got True"):
        check_count("workers", True)
    with pytest.raises(ValueError, match=r"retries must be an int >= 0 or None, got -1"):
        check_count("retries", -1, minimum=0, optional=True)
    check_count("retries", None, optional=True)
    with pytest.raises(ValueError, match=r"grace must be a positive, finite number, got None"):
        check_positive("grace", None)
    check_positive("grace", 0.1)
    check_bool("flag", False)
    with pytest.raises(TypeError, match=r"^flag must be True or False, got 'no'$"):
        check_bool("flag", "no")
