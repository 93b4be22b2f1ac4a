"""Importable spaces for journal tests: a resumed run rebuilds models from their recipes,
so the symbols must import in any process started in the repository root."""

from __future__ import annotations

import os
import time
from typing import Any

import engine as e


class Counter(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(20)), label="x"))


def journal_score(model: Counter) -> float:
    e.report_intermediate(0.0)
    return float(model.x)


def journal_slow(model: Counter, gate: str = "") -> float:
    """Trains until the file ``gate`` exists (or, cancelled, at its next report)."""
    while not (gate and os.path.exists(gate)):
        e.report_intermediate(0.0)
        time.sleep(0.005)
    return float(model.x)


class JournalSpace(e.SimplifiedModelSpace):
    def model_and_evaluator(self) -> tuple[Any, Any]:
        return Counter(), self.evaluator


def journal_space(fn: Any = journal_score, **kwargs: Any) -> JournalSpace:
    space = e.SimplifiedModelSpace.from_model(Counter(), e.FunctionEvaluator(fn, **kwargs))
    space.__class__ = JournalSpace
    return space  # type: ignore[return-value]


class Counter5(e.BaseModelSpace):
    """Another space: :class:`Counter` with a smaller domain."""

    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(5)), label="x"))
