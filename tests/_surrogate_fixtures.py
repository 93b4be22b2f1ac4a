"""What the tests of the surrogate strategies (BayesOpt, ModelBased) share: a synthetic
table over a six-label cell, a mixed space, and a runner."""

from __future__ import annotations

import itertools
from typing import Any

import engine as e
from engine import Engine, InlinePool, ModelStatus
from strategies.base import BaseStrategy

LABELS = [f"op{i}" for i in range(6)]
TARGET = {label: (2 * i + 1) % 5 for i, label in enumerate(LABELS)}


class Cell(e.BaseModelSpace):
    """Six labels of five values (15625 samples)."""

    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(5)), label=label) for label in LABELS))


class Mixed(e.BaseModelSpace):
    """A Categorical, a log-scale Numerical and a quantized one."""

    def __init__(self) -> None:
        self.kind = e.ensure_frozen(e.Categorical(["a", "b", "c"], label="kind"))
        self.lr = e.ensure_frozen(e.Numerical(1e-5, 1.0, log=True, label="lr"))
        self.dropout = e.ensure_frozen(e.Numerical(0.0, 0.5, quantize=0.1, label="dropout"))


def table_score(ops: list[int]) -> float:
    """A synthetic table with interactions: matches to TARGET, plus a bonus for each
    adjacent pair of labels that both match, minus a penalty for op 0 ("none")."""
    hits = [op == TARGET[label] for op, label in zip(ops, LABELS, strict=True)]
    pairs = sum(a and b for a, b in itertools.pairwise(hits))
    return float(sum(hits) + 0.5 * pairs - 2.0 * ops.count(0))


async def cell_score(model: Cell) -> float:
    return table_score(list(model.ops))


async def mixed_score(model: Mixed) -> float:
    return -abs(model.lr - 1e-3) * 100 - abs(model.dropout - 0.2) + (model.kind == "b")


def cell() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(cell_score))


async def run(strategy: BaseStrategy, space: e.ExecutableModelSpace, trials: int | None,
              workers: int = 1) -> list[e.ModelHandle]:
    """Every handle of a search of ``space`` by ``strategy`` (each one trained)."""
    async with Engine(InlinePool(workers), max_trials=trials) as engine:
        await strategy.run(engine, space)
    assert all(h.status is ModelStatus.Trained for h in engine.handles())
    return engine.handles()


def samples(handles: list[e.ModelHandle]) -> list[dict[str, Any]]:
    return [dict(h.model.sample or {}) for h in handles]
