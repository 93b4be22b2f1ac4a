"""What the schedulers share: :class:`Scheduler` (a proposer inside), the rung levels,
and the assignment of models to Hyperband's brackets.

A scheduler takes a *proposer* (any :class:`~strategies.base.BaseStrategy`: random
search, regularized evolution, a model-based strategy) that picks the samples, and
decides, from each model's intermediate results as they arrive
(:meth:`~strategies.base.BaseStrategy.on_intermediate`), how far it trains.

A *step* is one intermediate report (an epoch, say): ``max_resource`` is the number of
reports a model makes when it trains to its end.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import ClassVar

from engine._objective import Objective, is_score, score
from engine.mutable import Sample
from engine.space import ExecutableModelSpace
from strategies.base import BaseStrategy, EngineLike, HandleLike, Leaves, NotYet
from strategies.random_search import RandomSearch

__all__ = ("BracketScheduler", "Brackets", "Scheduler", "bracket_weights", "quantile",
           "rung_levels")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation between the sorted values,
    numpy's default); ``values`` must not be empty."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


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


def bracket_weights(levels: int, eta: float) -> tuple[float, ...]:
    """How often synchronous Hyperband (Li et al., 2018) starts a model in each bracket,
    for ``levels`` rungs below the full training: bracket ``b`` (its first rung the
    ``b``-th level; bracket ``levels`` trains to the end) halves ``s = levels - b``
    times and starts ``ceil((levels + 1) / (s + 1) * eta**s)`` models."""
    return tuple(float(math.ceil((levels + 1) / (s + 1) * eta ** s))
                 for s in range(levels, -1, -1))


class Brackets:
    """Hyperband's brackets over ``rung_levels(min_resource, max_resource, eta)``: the
    first ``count`` (the most aggressive first: bracket ``b`` has the rungs from the
    ``b``-th level on), each model drawn into one at random with
    :func:`bracket_weights` (asynchronous Hyperband, as Syne Tune does it; Ray Tune
    draws with a softmax of the rung counts). The draw depends only on the model id and
    ``salt``, so a resumed run given the same seed puts the journal's models back in
    their brackets."""

    def __init__(self, min_resource: int, max_resource: int, eta: float,
                 count: int | None, salt: int) -> None:
        levels = rung_levels(min_resource, max_resource, eta)
        if count is None:
            count = len(levels) + 1
        if isinstance(count, bool) or not isinstance(count, int) \
                or not 1 <= count <= len(levels) + 1:
            raise ValueError(f"brackets must be an int from 1 to {len(levels) + 1} (the rung "
                             f"levels {levels} and the full training), got {count!r}")
        self.rungs = tuple(levels[b:] for b in range(count))
        self.weights = bracket_weights(len(levels), eta)[:count]
        self._salt = salt
        self._of: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.rungs)

    def of(self, model_id: int) -> int:
        """The bracket of model ``model_id`` (the same at every call)."""
        if len(self.rungs) == 1:
            return 0
        bracket = self._of.get(model_id)
        if bracket is None:
            draw = random.Random(f"{self._salt}:{model_id}")
            bracket = draw.choices(range(len(self.rungs)), self.weights)[0]
            self._of[model_id] = bracket
        return bracket


def check_resources(min_resource: object, max_resource: object,
                    reduction_factor: object) -> None:
    """ValueError naming the first bad one of ASHA's and Hyperband's resources."""
    if isinstance(min_resource, bool) or not isinstance(min_resource, int) or min_resource < 1:
        raise ValueError(f"min_resource must be an int >= 1 (steps), got {min_resource!r}")
    if isinstance(max_resource, bool) or not isinstance(max_resource, int) \
            or max_resource < min_resource:
        raise ValueError(f"max_resource must be an int >= min_resource={min_resource} "
                         f"(the steps of a full training), got {max_resource!r}")
    if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, int | float) \
            or not reduction_factor > 1:
        raise ValueError(f"reduction_factor must be a number > 1, got {reduction_factor!r}")


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
                self.replay(handle)

    def curve(self, handle: HandleLike) -> list[float]:
        """``handle``'s intermediates as scores under the run's first objective."""
        return curve_of(handle, getattr(self, "_first_objective", None))

    def replay(self, handle: HandleLike) -> None:
        """Record a finished model's curve as if heard now (no decision is taken)."""
        del handle

    def _worse(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly worse than ``b``; NaN is worse than anything."""
        if math.isnan(a):
            return True
        return not math.isnan(b) and self.better(b, a)


class BracketScheduler(Scheduler):
    """What both variants of Hyperband (and so of ASHA, one bracket) share: the
    resources of a rung, ``reduction_factor`` (eta) and the :class:`Brackets` each new
    model is drawn into."""

    #: True for the one-bracket classes (ASHA), which take no ``brackets`` argument.
    one_bracket: ClassVar[bool] = False

    def __init__(self, proposer: BaseStrategy | None, *, min_resource: int,
                 max_resource: int, reduction_factor: float, brackets: int | None,
                 max_trials: int | None, seed: int | None) -> None:
        super().__init__(proposer, max_trials=max_trials, seed=seed)
        check_resources(min_resource, max_resource, reduction_factor)
        self.min_resource, self.max_resource = min_resource, max_resource
        self.reduction_factor = reduction_factor
        self.brackets = Brackets(min_resource, max_resource, reduction_factor, brackets,
                                 salt=self.rng.getrandbits(64))

    def __repr__(self) -> str:
        brackets = "" if self.one_bracket else f"brackets={len(self.brackets)}, "
        return (f"{type(self).__name__}({self.proposer!r}, min_resource={self.min_resource}, "
                f"max_resource={self.max_resource}, "
                f"reduction_factor={self.reduction_factor!r}, {brackets}"
                f"max_trials={self.max_trials!r})")


def curve_of(handle: HandleLike, objective: Objective | None = None) -> list[float]:
    """A model's intermediates as scores: a dict of several metrics counts as its value
    under ``objective`` (the run's first), NaN when it has none, so schedulers rank on
    one metric."""
    return [v if is_score(v := score(x, objective)) else math.nan
            for x in handle.model.metrics.intermediates]
