"""The median stopping rule (Golovin et al., "Google Vizier", 2017): after
``grace_steps``, a model whose best value so far is worse than the median of the other
models' running means at the same step is stopped. Asynchronous: a decision is taken
the moment a model reports, from what was recorded so far."""

from __future__ import annotations

import math
import statistics

from engine._checks import check_count
from strategies.base import BaseStrategy, HandleLike
from strategies.schedulers._base import Scheduler

__all__ = ("MedianStopping",)


class MedianStopping(Scheduler):
    """The median stopping rule (see the module docstring). From step ``grace_steps``
    on, once at least ``min_samples`` other models reported that step, a model whose
    best value so far is worse than the median of their running means there is
    stopped. The other models are every model of this run that reached the step,
    running or finished (the rule's asynchronous form: nothing waits for a model to
    complete). ``proposer`` defaults to ``RandomSearch(seed)``."""

    def __init__(self, proposer: BaseStrategy | None = None, *, grace_steps: int = 1,
                 min_samples: int = 3, max_trials: int | None = None,
                 seed: int | None = None) -> None:
        super().__init__(proposer, max_trials=max_trials, seed=seed)
        check_count("grace_steps", grace_steps)
        check_count("min_samples", min_samples)
        self.grace_steps, self.min_samples = grace_steps, min_samples
        self.running_means: dict[int, list[float]] = {}  # step -> each model's mean to it

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        """Called as each intermediate arrives: record the model's running mean at
        ``step``; stop it when its best so far is below the others' median there."""
        curve = [v for v in self.curve(handle)[:step] if not math.isnan(v)]
        others = self.running_means.setdefault(step, [])
        if step >= self.grace_steps and len(others) >= self.min_samples:
            best = (max if self.mode == "max" else min)(curve) if curve else math.nan
            if self._worse(best, statistics.median(others)):
                handle.stop()
        if curve:  # a model that reported only NaN so far sets no bar for others
            others.append(statistics.fmean(curve))

    def replay(self, handle: HandleLike) -> None:
        """Record a finished model's running mean at each step it reached."""
        curve: list[float] = []
        for step, value in enumerate(self.curve(handle), 1):
            if not math.isnan(value):
                curve.append(value)
            if curve:
                self.running_means.setdefault(step, []).append(statistics.fmean(curve))

    def __repr__(self) -> str:
        return (f"MedianStopping({self.proposer!r}, grace_steps={self.grace_steps}, "
                f"min_samples={self.min_samples}, max_trials={self.max_trials!r})")
