"""Random search: every label drawn independently and uniformly from its mutable."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping

from engine.mutable import Categorical, LabeledMutable, Sample
from strategies.base import BaseStrategy, Leaves

__all__ = ("RandomSearch", "fresh_random", "random_sample", "space_size", "unseen_choice")

#: Draws in a row that may all be seen before the unseen samples are listed instead.
MAX_REDRAWS = 100
#: The largest finite space whose unseen samples are listed (beyond, it counts as used up).
MAX_LISTED = 1_000_000


def random_sample(leaves: Mapping[str, LabeledMutable], rng: random.Random) -> Sample:
    """One value per label, drawn from ``rng`` in the order of ``leaves``."""
    return {label: leaf.random_value(rng) for label, leaf in leaves.items()}


def space_size(leaves: Mapping[str, LabeledMutable]) -> float:
    """How many distinct samples there are (``math.inf`` when a label is numerical)."""
    size = 1.0
    for leaf in leaves.values():
        if not isinstance(leaf, Categorical):
            return math.inf
        size *= len(leaf.values)
    return size


def unseen_choice(
    leaves: Mapping[str, LabeledMutable], rng: random.Random,
    is_new: Callable[[Sample], bool],
) -> Sample | None:
    """A sample drawn uniformly from the unseen ones of a finite space of at most
    :data:`MAX_LISTED` samples; ``None`` when there is none (or the space is larger)."""
    if space_size(leaves) > MAX_LISTED:
        return None
    labels = list(leaves)
    axes = [leaves[label].grid_values() for label in labels]
    unseen = [s for s in (dict(zip(labels, combo, strict=True))
                          for combo in itertools.product(*axes)) if is_new(s)]
    return rng.choice(unseen) if unseen else None


def fresh_random(
    leaves: Mapping[str, LabeledMutable], rng: random.Random,
    is_new: Callable[[Sample], bool],
) -> Sample | None:
    """A random sample that ``is_new``: drawn up to :data:`MAX_REDRAWS` times, then
    drawn from the listed unseen samples; ``None`` when there is none."""
    for _ in range(MAX_REDRAWS):
        sample = random_sample(leaves, rng)
        if is_new(sample):
            return sample
    return unseen_choice(leaves, rng, is_new)


class RandomSearch(BaseStrategy):
    """Uniform random samples. With ``deduplicate`` (the default) no sample is proposed
    twice: a seen draw is drawn again, and the run stops once every sample of a finite
    space was tried. When :data:`MAX_REDRAWS` draws in a row were all seen, the unseen
    samples of a finite space are listed and one is drawn from them; an infinite space
    then counts as used up."""

    def __init__(
        self, seed: int | None = None, *, deduplicate: bool = True,
        max_trials: int | None = None, mode: str = "max",
    ) -> None:
        super().__init__(seed=seed, max_trials=max_trials, mode=mode)
        self.deduplicate = deduplicate

    def propose(self, leaves: Leaves) -> Sample | None:
        """Called when a worker is free: a fresh random sample, or ``None`` when the
        space has nothing unseen left."""
        if not self.deduplicate:
            return random_sample(leaves, self.rng)
        if self.seen_count >= space_size(leaves):
            return None
        return fresh_random(leaves, self.rng, self.is_new)

    def __repr__(self) -> str:
        return (f"RandomSearch(seed={self.seed!r}, deduplicate={self.deduplicate}, "
                f"max_trials={self.max_trials!r}, mode={self.mode!r})")
