"""Schedulers: strategies that stop hopeless models early, around any proposer.

A scheduler takes a *proposer* (any :class:`~strategies.base.BaseStrategy`: random
search, regularized evolution, a model-based strategy) that picks the samples, and
decides, from each model's intermediate results as they arrive
(:meth:`~strategies.base.BaseStrategy.on_intermediate`), whether it trains on or is
stopped (``handle.stop()``). The proposer observes every finished model as it would on
its own, stopped ones included: a stopped model is ``trained`` with its last
intermediate as its metric, at the fidelity it reached (``metrics.stopped_at``).

Both are asynchronous: a decision is taken the moment a model reports, from what was
recorded so far; no worker waits for others to reach a rung.

- :class:`ASHA`, the stopping variant of asynchronous successive halving (Li et al.,
  "A System for Massively Parallel Hyperparameter Tuning", 2020): rungs at steps
  ``min_resource * reduction_factor**k`` below ``max_resource``; a model that reaches
  a rung continues only when its value is in the top ``1 / reduction_factor`` of the
  values recorded at that rung so far (itself included).
- :class:`MedianStopping`, the median stopping rule (Golovin et al., "Google Vizier",
  2017): after ``grace_steps``, a model whose best value so far is worse than the
  median of the other models' running means at the same step is stopped.

A *step* is one intermediate report (an epoch, say): ``max_resource`` is the number of
reports a model makes when it trains to its end.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from engine._objective import is_score, score
from engine.mutable import Sample
from engine.space import ExecutableModelSpace
from strategies.base import BaseStrategy, EngineLike, HandleLike, Leaves, NotYet
from strategies.random_search import RandomSearch

__all__ = ("ASHA", "MedianStopping", "Scheduler", "quantile")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation between the sorted values,
    numpy's default); ``values`` must not be empty."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Scheduler(BaseStrategy):
    """The part schedulers share: ``proposer`` picks the samples and observes every
    finished model (its own ``max_trials`` and ``deterministic`` are not used: this
    strategy's loop runs). ``mode`` is the proposer's."""

    def __init__(self, proposer: BaseStrategy | None, *, max_trials: int | None,
                 seed: int | None) -> None:
        if proposer is None:
            proposer = RandomSearch(seed)
        if not isinstance(proposer, BaseStrategy):
            raise TypeError(f"proposer must be a BaseStrategy (RandomSearch, "
                            f"RegularizedEvolution...), got {type(proposer).__name__}")
        super().__init__(seed=seed, max_trials=max_trials, mode=proposer.mode)
        self.proposer = proposer

    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called when a worker is free: the proposer's sample."""
        return self.proposer.propose(leaves)

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once per finished model: the proposer learns from it."""
        self.proposer.observe(model)

    # The proposer keeps its own record of what was submitted and is in flight (its
    # is_new and in_flight), as when it runs on its own.
    def _remember(self, handle: HandleLike) -> None:
        super()._remember(handle)
        self.proposer._remember(handle)
        if not handle.done:
            self.proposer._pending.append(handle)

    def _finish(self, handle: HandleLike) -> None:
        if handle in self.proposer._pending:
            self.proposer._pending.remove(handle)
        super()._finish(handle)

    def resume(self, engine: EngineLike) -> None:
        """Called once at the start of :meth:`run`: besides the proposer's state, the
        rung records are rebuilt from the intermediates of every model that finished
        before (a resumed run's journal), so the schedule continues."""
        known = set(self._ids)
        super().resume(engine)
        for handle in engine.handles():
            if handle.model_id not in known and handle.done:
                # A dict of metrics: its value under the run's first objective.
                first = getattr(engine, "objective", None)
                self.replay([v if is_score(v := score(x, first)) else math.nan
                             for x in handle.model.metrics.intermediates])

    def replay(self, intermediates: Sequence[float]) -> None:
        """Record a finished model's curve as if heard now (no decision is taken)."""
        del intermediates

    def _worse(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly worse than ``b``; NaN is worse than anything."""
        if math.isnan(a):
            return True
        return not math.isnan(b) and self.better(b, a)


class ASHA(Scheduler):
    """Asynchronous successive halving, stopping variant (see the module docstring).

    ``min_resource`` is the first rung (in steps), ``max_resource`` the steps of a full
    training, ``reduction_factor`` (eta) the share kept at each rung (1 / eta).
    ``proposer`` defaults to ``RandomSearch(seed)``. A model is compared at a rung with
    every model that reached it before, so the first models to arrive mostly go on;
    over a run about ``1 / eta`` of the models pass each rung.
    """

    def __init__(self, proposer: BaseStrategy | None = None, *, min_resource: int = 1,
                 max_resource: int, reduction_factor: float = 3,
                 max_trials: int | None = None, seed: int | None = None) -> None:
        super().__init__(proposer, max_trials=max_trials, seed=seed)
        if isinstance(min_resource, bool) or not isinstance(min_resource, int) \
                or min_resource < 1:
            raise ValueError(f"min_resource must be an int >= 1 (steps), got {min_resource!r}")
        if isinstance(max_resource, bool) or not isinstance(max_resource, int) \
                or max_resource < min_resource:
            raise ValueError(f"max_resource must be an int >= min_resource={min_resource} "
                             f"(the steps of a full training), got {max_resource!r}")
        if not isinstance(reduction_factor, int | float) or not reduction_factor > 1:
            raise ValueError(f"reduction_factor must be a number > 1, got {reduction_factor!r}")
        self.min_resource, self.max_resource = min_resource, max_resource
        self.reduction_factor = reduction_factor
        self.rungs = rung_levels(min_resource, max_resource, reduction_factor)
        self.recorded: dict[int, list[float]] = {rung: [] for rung in self.rungs}

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        """Called as each intermediate arrives: at a rung, record ``value`` there and
        stop the model unless it is in the top ``1 / reduction_factor`` so far."""
        values = self.recorded.get(step)
        if values is None:
            return
        values.append(value)
        if not self.promising(value, values):
            handle.stop()

    def replay(self, intermediates: Sequence[float]) -> None:
        """Record a finished model's values at the rungs it reached."""
        for rung, values in self.recorded.items():
            if len(intermediates) >= rung:
                values.append(intermediates[rung - 1])

    def promising(self, value: float, values: Sequence[float]) -> bool:
        """Whether ``value`` is no worse than the ``1 - 1/eta`` quantile of ``values``
        (the ``1/eta`` quantile under ``mode="min"``), NaN aside."""
        finite = [v for v in values if not math.isnan(v)]
        if math.isnan(value) or not finite:
            return False
        keep = 1 / self.reduction_factor
        cutoff = quantile(finite, 1 - keep if self.mode == "max" else keep)
        return not self._worse(value, cutoff)

    def __repr__(self) -> str:
        return (f"ASHA({self.proposer!r}, min_resource={self.min_resource}, "
                f"max_resource={self.max_resource}, "
                f"reduction_factor={self.reduction_factor!r}, max_trials={self.max_trials!r})")


def rung_levels(min_resource: int, max_resource: int, eta: float) -> tuple[int, ...]:
    """The steps below ``max_resource`` where ASHA decides: ``min_resource * eta**k``,
    rounded to whole steps."""
    rungs: list[int] = []
    level = float(min_resource)
    while round(level) < max_resource:
        if not rungs or round(level) > rungs[-1]:
            rungs.append(round(level))
        level *= eta
    return tuple(rungs)


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
        if isinstance(grace_steps, bool) or not isinstance(grace_steps, int) or grace_steps < 1:
            raise ValueError(f"grace_steps must be an int >= 1, got {grace_steps!r}")
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
            raise ValueError(f"min_samples must be an int >= 1, got {min_samples!r}")
        self.grace_steps, self.min_samples = grace_steps, min_samples
        self.running_means: dict[int, list[float]] = {}  # step -> each model's mean to it

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        """Called as each intermediate arrives: record the model's running mean at
        ``step``; stop it when its best so far is below the others' median there."""
        curve = [v for v in handle.model.metrics.intermediates[:step] if is_score(v)]
        others = self.running_means.setdefault(step, [])
        if step >= self.grace_steps and len(others) >= self.min_samples:
            best = (max if self.mode == "max" else min)(curve) if curve else math.nan
            if self._worse(best, statistics.median(others)):
                handle.stop()
        if curve:  # a model that reported only NaN so far sets no bar for others
            others.append(statistics.fmean(curve))

    def replay(self, intermediates: Sequence[float]) -> None:
        """Record a finished model's running mean at each step it reached."""
        curve: list[float] = []
        for step, value in enumerate(intermediates, 1):
            if not math.isnan(value):
                curve.append(value)
            if curve:
                self.running_means.setdefault(step, []).append(statistics.fmean(curve))

    def __repr__(self) -> str:
        return (f"MedianStopping({self.proposer!r}, grace_steps={self.grace_steps}, "
                f"min_samples={self.min_samples}, max_trials={self.max_trials!r})")
