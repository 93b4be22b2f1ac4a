"""Random search: every label drawn independently and uniformly from its mutable.

A proposal never lists the space. It draws at random and draws again while the draw was
seen, up to :data:`MAX_REDRAWS` times; only when that many draws in a row were all seen
(the space is nearly used up) does it walk a random permutation of a finite space's
points (:class:`~strategies._walk.Walk`), from where its previous walk stopped, looking
at no more than :data:`MAX_WALK` points per proposal. So one proposal looks at no more
than ``MAX_REDRAWS + MAX_WALK`` samples (a few milliseconds) on a space of any size, and
over a whole run the walk visits each point at most once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping

from engine.mutable import Categorical, LabeledMutable, Sample
from strategies._walk import Walk
from strategies.base import BaseStrategy, Leaves, NotYet

__all__ = ("MAX_REDRAWS", "MAX_WALK", "RandomSearch", "UnseenSampler", "random_sample",
           "space_size")

#: Draws in a row that may all be seen before a proposal walks the space instead.
MAX_REDRAWS = 100
#: Points one proposal may look at on the walk before it returns ``NOT_YET``.
MAX_WALK = 256


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


class UnseenSampler:
    """Random samples that pass a test (``is_new``), for one ``leaves`` mapping.

    :meth:`draw` tries :data:`MAX_REDRAWS` random draws, then continues one walk over the
    space (made on first need, from ``rng``; never for a space with a numerical label,
    which then counts as used up). It is not thread-safe; it runs on the event loop.
    """

    def __init__(self, leaves: Mapping[str, LabeledMutable], rng: random.Random) -> None:
        self.leaves = leaves
        self.rng = rng
        self.walk: Walk | None = None

    def draw(self, is_new: Callable[[Sample], bool]) -> Sample | NotYet | None:
        """A random sample that ``is_new``; ``None`` when none is left;
        :data:`~strategies.base.NOT_YET` when this call looked at its share of the walk
        without finding one."""
        for _ in range(MAX_REDRAWS):
            sample = random_sample(self.leaves, self.rng)
            if is_new(sample):
                return sample
        if self.walk is None:
            axes = [leaf.values for leaf in self.leaves.values() if isinstance(leaf, Categorical)]
            if len(axes) < len(self.leaves):  # a numerical label: no walk
                return None
            self.walk = Walk(list(self.leaves), axes, self.rng)
        return self.walk.next_new(is_new, MAX_WALK)


class RandomSearch(BaseStrategy):
    """Uniform random samples. With ``deduplicate`` (the default) no sample is proposed
    twice: a seen draw is drawn again, and the run stops once every sample of a finite
    space was tried (see the module docstring for how a proposal stays cheap near the
    end). A space with a numerical label counts as used up when :data:`MAX_REDRAWS`
    draws in a row were all seen.

    The samples depend only on ``seed`` and the space, not on results, so the same seed
    proposes the same samples in the same order whatever order models finish in.
    """

    def __init__(
        self, seed: int | None = None, *, deduplicate: bool = True,
        max_trials: int | None = None, mode: str = "max", deterministic: bool = False,
    ) -> None:
        super().__init__(seed=seed, max_trials=max_trials, mode=mode,
                         deterministic=deterministic)
        self.deduplicate = deduplicate
        self._sampler: UnseenSampler | None = None

    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called when a worker is free: a fresh random sample, ``None`` when the space
        has nothing unseen left, or ``NOT_YET`` (see :meth:`BaseStrategy.propose`)."""
        if not self.deduplicate:
            return random_sample(leaves, self.rng)
        if self.seen_count >= space_size(leaves):
            return None
        if self._sampler is None or self._sampler.leaves is not leaves:
            self._sampler = UnseenSampler(leaves, self.rng)
        return self._sampler.draw(self.is_new)

    def __repr__(self) -> str:
        return (f"RandomSearch(seed={self.seed!r}, deduplicate={self.deduplicate}, "
                f"max_trials={self.max_trials!r}, mode={self.mode!r}, "
                f"deterministic={self.deterministic})")
