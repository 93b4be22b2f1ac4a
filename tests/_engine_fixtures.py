"""Importable trial functions for the engine's tests that run in worker processes."""

from __future__ import annotations

import sys

import engine as e


class Loud(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical([1, 2], label="x"))


def loud(model: Loud, lines: int, fail: bool = False) -> float:
    """Prints ``lines`` numbered 99-character lines to stdout and one to stderr."""
    for n in range(lines):
        print(f"line {n:08d} " + "." * 85)
    print("the end of stderr", file=sys.stderr)
    if fail:
        raise RuntimeError(f"failed after {lines} lines")
    return float(model.x)


def loud_model(lines: int, fail: bool = False) -> e.SimplifiedModelSpace:
    space = e.SimplifiedModelSpace.from_model(
        Loud(), e.FunctionEvaluator(loud, lines=lines, fail=fail))
    return space.freeze({"x": 1})
