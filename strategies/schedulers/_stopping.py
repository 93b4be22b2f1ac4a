"""ASHA and Hyperband, stopping variant: a model that is not in the top of a rung is
stopped there (``handle.stop()``).

The proposer observes every finished model as it would on its own, stopped ones
included: a stopped model is ``trained`` with its last intermediate as its metric, at
the fidelity it reached (``metrics.stopped_at``). A decision is taken the moment a
model reports, from what was recorded so far; no worker waits for others to reach a
rung.

- :class:`Hyperband` (Li et al., "Hyperband", 2018, in its asynchronous form of Li et
  al., "A System for Massively Parallel Hyperparameter Tuning", 2020): brackets of ASHA
  whose first rungs are ``min_resource * eta**b``; each new model is drawn into one.
- :class:`ASHA`: one bracket, rungs at steps ``min_resource * eta**k`` below
  ``max_resource``; a model that reaches a rung continues only when its value is in the
  top ``1 / eta`` of the values recorded at that rung so far (itself included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from strategies.base import BaseStrategy, HandleLike
from strategies.schedulers._base import BracketScheduler, quantile

__all__ = ("ASHA", "Hyperband")


class Hyperband(BracketScheduler):
    """Asynchronous Hyperband, stopping variant (see the module docstring).

    ``min_resource`` is the first rung of the most aggressive bracket (in steps),
    ``max_resource`` the steps of a full training, ``reduction_factor`` (eta) the share
    kept at each rung (1 / eta). ``brackets`` (default: all of them, down to the bracket
    that trains every model to its end) takes the first ``brackets`` of them, the most
    aggressive first. Each model is drawn into a bracket when it first reports (see
    :class:`~strategies.schedulers._base.Brackets`: the draw depends on ``seed`` and
    the model id only, so a resumed run given the same seed continues the schedule) and
    is judged only at its bracket's rungs, against the models of its bracket.
    ``proposer`` defaults to ``RandomSearch(seed)``.
    """

    def __init__(self, proposer: BaseStrategy | None = None, *, min_resource: int = 1,
                 max_resource: int, reduction_factor: float = 3,
                 brackets: int | None = None, max_trials: int | None = None,
                 seed: int | None = None) -> None:
        super().__init__(proposer, min_resource=min_resource, max_resource=max_resource,
                         reduction_factor=reduction_factor, brackets=brackets,
                         max_trials=max_trials, seed=seed)
        #: Per bracket, the values recorded at each of its rungs, in arrival order.
        self.records: tuple[dict[int, list[float]], ...] = tuple(
            {rung: [] for rung in rungs} for rungs in self.brackets.rungs)

    def on_intermediate(self, handle: HandleLike, step: int, value: float) -> None:
        """Called as each intermediate arrives: at a rung of the model's bracket, record
        ``value`` there and stop the model unless it is in the top ``1 / eta`` so far."""
        values = self.records[self.brackets.of(handle.model_id)].get(step)
        if values is None:
            return
        values.append(value)
        if not self.promising(value, values):
            handle.stop()

    def replay(self, handle: HandleLike) -> None:
        """Record a finished model's values at the rungs of its bracket it reached."""
        intermediates = self.curve(handle)
        for rung, values in self.records[self.brackets.of(handle.model_id)].items():
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


class ASHA(Hyperband):
    """Asynchronous successive halving, stopping variant: :class:`Hyperband` with one
    bracket (see the module docstring). A model is compared at a rung with every model
    that reached it before, so the first models to arrive mostly go on; over a run about
    ``1 / eta`` of the models pass each rung. ``proposer`` defaults to
    ``RandomSearch(seed)``."""

    one_bracket = True

    def __init__(self, proposer: BaseStrategy | None = None, *, min_resource: int = 1,
                 max_resource: int, reduction_factor: float = 3,
                 max_trials: int | None = None, seed: int | None = None) -> None:
        super().__init__(proposer, min_resource=min_resource, max_resource=max_resource,
                         reduction_factor=reduction_factor, brackets=1,
                         max_trials=max_trials, seed=seed)

    @property
    def rungs(self) -> tuple[int, ...]:
        """The steps where models are judged."""
        return self.brackets.rungs[0]

    @property
    def recorded(self) -> dict[int, list[float]]:
        """The values recorded at each rung, in arrival order."""
        return self.records[0]

