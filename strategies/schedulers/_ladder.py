"""The rungs of one bracket in the promotion variant of ASHA: pure bookkeeping.

A model *pauses* at a rung with its value there. When a worker is free, the model to
promote is, from the highest rung down, the best model of the top ``1 / eta`` of a rung
(of every model that paused there so far) not yet promoted from it (Li et al., "A
System for Massively Parallel Hyperparameter Tuning", 2020, Algorithm 2, ``get_job``).
Nothing waits for a rung to fill: with ``n`` models at a rung, ``floor(n / eta)`` of
them may go on, whenever a worker asks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from strategies.base import Mode

__all__ = ("Ladder",)


class Ladder:
    """The models that paused at each of ``rungs`` (steps, increasing) with their value,
    in arrival order, and which were promoted (or left: see :meth:`promote`). Values
    compare under ``mode``; NaN is worse than any number; ties go to the earlier."""

    def __init__(self, rungs: tuple[int, ...], reduction_factor: float, mode: Mode) -> None:
        self.rungs, self.reduction_factor, self.mode = rungs, reduction_factor, mode
        self.entries: tuple[list[tuple[int, float]], ...] = tuple([] for _ in rungs)
        self.promoted: tuple[set[int], ...] = tuple(set() for _ in rungs)

    def record(self, level: int, model_id: int, value: float) -> None:
        """Model ``model_id`` reached rung ``level`` (an index into :attr:`rungs`)."""
        self.entries[level].append((model_id, value))

    def promote(self, level: int, model_id: int) -> None:
        """Model ``model_id`` goes on from rung ``level`` (or can never go on: it still
        counts among the rung's models, and is not offered again)."""
        self.promoted[level].add(model_id)

    def unpromote(self, level: int, model_id: int) -> None:
        """Undo :meth:`promote` (a promotion that could not happen)."""
        self.promoted[level].discard(model_id)

    def top(self, level: int) -> list[int]:
        """The models of the top ``1 / eta`` of rung ``level`` (``floor(n / eta)`` of its
        ``n`` models), best first."""
        entries = self.entries[level]
        sign = -1.0 if self.mode == "max" else 1.0
        order = sorted(range(len(entries)), key=lambda i: (
            math.isnan(entries[i][1]), 0.0 if math.isnan(entries[i][1])
            else sign * entries[i][1], i))
        count = math.floor(len(entries) / self.reduction_factor + 1e-9)
        return [entries[i][0] for i in order[:count]]

    def candidates(self) -> Iterator[tuple[int, int]]:
        """``(level, model_id)`` of the models that may be promoted now, in the order to
        try them: the highest rung first, best first within a rung."""
        for level in reversed(range(len(self.rungs))):
            for model_id in self.top(level):
                if model_id not in self.promoted[level]:
                    yield level, model_id
