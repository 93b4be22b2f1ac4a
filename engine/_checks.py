"""Argument checks shared by the package: one definition of "a count" and "a positive
number", and the refusal to start an engine inside a nas-engine worker process."""

from __future__ import annotations

import math
import os
from typing import Any

from engine.errors import InWorkerProcess

__all__ = ("WORKER_MARK", "check_bool", "check_count", "check_positive", "refuse_in_worker")

#: Set by a ProcessPool worker to its own pid (a process the trial starts inherits the
#: variable but has another pid, so it may run an engine of its own).
WORKER_MARK = "NAS_ENGINE_WORKER_PID"


def check_count(name: str, value: Any, *, minimum: int = 1, optional: bool = False,
                meaning: str = "") -> None:
    """``value`` is an int (never a bool) >= ``minimum`` (or None when ``optional``);
    ValueError naming ``name`` (and saying what it counts, ``meaning``) otherwise."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or None" if optional else ""
        raise ValueError(f"{name} must be an int >= {minimum}{extra}{_aside(meaning)}, "
                         f"got {value!r}")


def check_bool(name: str, value: Any) -> None:
    """``value`` is True or False (not 0, 1, None or a string); TypeError naming ``name``
    otherwise: a flag given ``"no"`` would otherwise read as true."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_positive(name: str, value: Any, *, optional: bool = False, zero: bool = False,
                   meaning: str = "") -> None:
    """``value`` is a finite int or float (never a bool) > 0, or >= 0 with ``zero`` (or
    None when ``optional``); ValueError naming ``name`` (and saying what it measures,
    ``meaning``) otherwise."""
    if optional and value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0 or (value == 0 and not zero)):
        kind = "a finite number >= 0" if zero else "a positive, finite number"
        extra = " or None" if optional else ""
        raise ValueError(f"{name} must be {kind}{extra}{_aside(meaning)}, got {value!r}")


def _aside(meaning: str) -> str:
    return f" ({meaning})" if meaning else ""


def refuse_in_worker() -> None:
    """InWorkerProcess when called in a nas-engine worker process: there a script's
    top-level code runs again to rebuild its models, and without a main guard every
    worker would start an engine (and workers) of its own."""
    if os.environ.get(WORKER_MARK) == str(os.getpid()):
        raise InWorkerProcess(
            "an Engine was started inside a nas-engine worker process: the script that "
            "defines the model space runs again in every worker, so its top-level code "
            'must not start a search. Put it under `if __name__ == "__main__":` (the '
            "main guard), or move it into a function that only the main program calls")
