"""Regularized (aging) evolution, Real et al. 2019, asynchronous.

A child is proposed the moment a worker is free, so no worker waits for a generation:

- while the population (plus the models in flight) is smaller than ``population_size``,
  propose uniform random samples;
- otherwise pick ``sample_size`` members at random, take the best of them as the parent
  and propose a mutation of it;
- each trained model joins the population as its youngest member, and the oldest member
  leaves once the population is over ``population_size`` (aging, not the worst).

Failed, invalid and interrupted models count against the budget like any other, do not
join the population (so random samples refill it while it is short), and their samples
are never proposed again. A model whose metric is NaN is treated as failed.

On resume the journal's trained models rebuild the history and the population (the
last ``population_size`` of them, in submission order); the random stream starts again
from ``seed``, so later children need not be the ones an uninterrupted run would make.

With ``deduplicate`` (the default) no sample is proposed twice. Without it a child may
repeat a trained sample, as in the original algorithm: with noisy training, evaluating a
good architecture again is information, not waste.
"""

from __future__ import annotations

import collections
import math
import random
from typing import Any

import msgspec

from engine.mutable import Categorical, LabeledMutable, Sample
from engine.space import ExecutableModelSpace, ModelStatus
from strategies.base import BaseStrategy, Leaves, sample_key
from strategies.random_search import fresh_random

__all__ = ("Individual", "RegularizedEvolution", "mutate")

#: Mutations tried (each from a fresh tournament) before falling back to a random sample.
MAX_MUTATIONS = 100


class Individual(msgspec.Struct, frozen=True, kw_only=True):
    """A trained model as evolution remembers it."""

    sample: dict[str, Any]
    metric: float


def _other_value(leaf: LabeledMutable, current: Any, rng: random.Random) -> Any:
    """A value of ``leaf`` other than ``current`` (``current`` when it has no other)."""
    if isinstance(leaf, Categorical):
        others = [v for v in leaf.values if v != current]
        return rng.choice(others) if others else current
    for _ in range(10):
        value = leaf.random_value(rng)
        if value != current:
            return value
    return current


def _can_change(leaf: LabeledMutable) -> bool:
    return not isinstance(leaf, Categorical) or len(leaf.values) > 1


def mutate(parent: Sample, leaves: Leaves, rng: random.Random,
           mutation_prob: float | None = None) -> Sample:
    """A child of ``parent``. With ``mutation_prob`` ``None`` exactly one label (drawn
    uniformly) takes another value; otherwise each label does with that probability,
    and one label is forced when none was drawn."""
    child = dict(parent)
    labels = [label for label, leaf in leaves.items() if _can_change(leaf)]
    if not labels:
        return child
    chosen = ([] if mutation_prob is None
              else [label for label in labels if rng.random() < mutation_prob])
    for label in chosen or [rng.choice(labels)]:
        child[label] = _other_value(leaves[label], child[label], rng)
    return child


class RegularizedEvolution(BaseStrategy):
    """Aging evolution (see the module docstring).

    ``population_size`` members are kept; ``sample_size`` of them compete to be each
    child's parent. The defaults, 30 and 10, did best of the sizes tried on NAS-Bench-201
    with 300 evaluations (benchmarks/search_quality.py); a much smaller budget favours a
    smaller population. ``mutation_prob`` ``None`` mutates exactly one label per child; a
    number in (0, 1] mutates each label with that probability. ``mode`` says whether a
    bigger metric is better. ``deduplicate`` keeps every proposed sample new.
    """

    def __init__(
        self, population_size: int = 30, sample_size: int = 10, *,
        mutation_prob: float | None = None, deduplicate: bool = True,
        seed: int | None = None, max_trials: int | None = None, mode: str = "max",
    ) -> None:
        super().__init__(seed=seed, max_trials=max_trials, mode=mode)
        _check_sizes(population_size, sample_size)
        if mutation_prob is not None and not 0 < mutation_prob <= 1:
            raise ValueError(f"mutation_prob must be in (0, 1] or None (mutate one label), "
                             f"got {mutation_prob!r}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.mutation_prob = mutation_prob
        self.deduplicate = deduplicate
        self._failed: set[bytes] = set()
        self.population: collections.deque[Individual] = collections.deque()
        self.history: list[Individual] = []

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once per finished model (the journal's at resume, then in completion
        order): a trained one joins the population as its youngest member and the
        oldest leaves when it is full; any other is only remembered as seen."""
        metric = model.metric
        if model.status is not ModelStatus.Trained or metric is None or math.isnan(metric):
            self._failed.add(sample_key(model.sample or {}))
            return
        member = Individual(sample=dict(model.sample or {}), metric=float(metric))
        self.history.append(member)
        self.population.append(member)
        if len(self.population) > self.population_size:
            self.population.popleft()

    def propose(self, leaves: Leaves) -> Sample | None:
        """Called when a worker is free: a random sample while the population is short,
        else an unseen mutation of a tournament winner; ``None`` when nothing unseen is
        left."""
        if self.population and len(self.population) + self.in_flight >= self.population_size:
            for _ in range(MAX_MUTATIONS):
                child = mutate(self.tournament().sample, leaves, self.rng, self.mutation_prob)
                if self._allowed(child):
                    return child
        return fresh_random(leaves, self.rng, self._allowed)

    def _allowed(self, sample: Sample) -> bool:
        """Whether ``sample`` may be proposed: new, or (without ``deduplicate``) not failed."""
        if self.deduplicate:
            return self.is_new(sample)
        return sample_key(sample) not in self._failed

    def tournament(self) -> Individual:
        """The best of ``sample_size`` members drawn without replacement (the first drawn
        wins a tie)."""
        size = min(self.sample_size, len(self.population))
        best: Individual | None = None
        for member in self.rng.sample(list(self.population), size):
            if best is None or self.better(member.metric, best.metric):
                best = member
        if best is None:
            raise RuntimeError("tournament() needs a non-empty population")
        return best

    def __repr__(self) -> str:
        return (f"RegularizedEvolution(population_size={self.population_size}, "
                f"sample_size={self.sample_size}, mutation_prob={self.mutation_prob!r}, "
                f"deduplicate={self.deduplicate}, "
                f"seed={self.seed!r}, max_trials={self.max_trials!r}, mode={self.mode!r})")


def _check_sizes(population_size: int, sample_size: int) -> None:
    for name, value in (("population_size", population_size), ("sample_size", sample_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if sample_size > population_size:
        raise ValueError(f"sample_size ({sample_size}) must not exceed population_size "
                         f"({population_size})")
