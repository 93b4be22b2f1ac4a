"""Importable spaces for the multi-objective tests: a process worker and a resumed run
rebuild models from their recipes, so the symbols must import in any process started in
the repository root (``tests`` has no ``__init__.py``)."""

from __future__ import annotations

from typing import Any

import engine as e


class Pair(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(6)), label="x"))


def two_metrics(model: Pair, steps: int = 2) -> dict[str, float]:
    """Reports ``steps`` intermediates and returns a dict: accuracy grows with x, size too."""
    for step in range(1, steps + 1):
        e.report_intermediate({"accuracy": model.x * step / 10, "size": float(model.x)})
    return {"accuracy": model.x / 5, "size": float(model.x * model.x)}


def reports_final(model: Pair, value: Any) -> float:
    """Reports ``value`` as final, then returns something else."""
    e.report_final(value)
    return -1.0


def pair_space(fn: Any = two_metrics, **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Pair(), e.FunctionEvaluator(fn, **kwargs))



def bowl(model: Pair, third: bool = False) -> dict[str, float]:
    """accuracy x/5 (max) against size (x-2)^2 (min): x = 2..5 is the Pareto front, x = 0
    and 1 are dominated by x = 2. ``third`` adds ``cost`` = x (min): then x = 0 and 1
    join the front."""
    metrics = {"accuracy": model.x / 5, "size": float((model.x - 2) ** 2)}
    if third:
        metrics["cost"] = float(model.x)
    return metrics
