"""Walks over a finite product of value lists without listing it.

A point of the product ``axes[0] x axes[1] x ...`` is named by its index in
``range(size)`` (mixed radix, the last axis varying fastest), so a walk keeps one
integer of state, not a list of samples. :class:`Walk` visits the indices in a random
order (:class:`Permutation`) or in order, resumes where it stopped, and looks at no more
than a given number of points per call, so no caller holds the event loop for long,
whatever the size of the space.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from engine.mutable import Sample
from strategies.base import NOT_YET, NotYet

__all__ = ("MAX_SHUFFLED", "Permutation", "Walk")

#: The largest size whose permutation is a shuffled list of indices (about 1 ms to make);
#: larger sizes use an affine map, which costs nothing to make.
MAX_SHUFFLED = 4096


class Permutation:
    """A random order of ``range(size)``, drawn from ``rng`` once at construction.

    Up to :data:`MAX_SHUFFLED` it is a uniformly shuffled list. Beyond, it is
    ``i -> (a * i + c) % size`` with ``a`` coprime to ``size``: a bijection that needs
    no memory, less random than a shuffle (consecutive points differ by a fixed step)
    but every point is visited exactly once.
    """

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self._listed: list[int] | None = None
        self._a = self._c = 0
        if size <= MAX_SHUFFLED:
            self._listed = list(range(size))
            rng.shuffle(self._listed)
            return
        self._a = rng.randrange(1, size)
        while math.gcd(self._a, size) != 1:  # a few draws on average
            self._a = rng.randrange(1, size)
        self._c = rng.randrange(size)

    def __getitem__(self, position: int) -> int:
        if self._listed is not None:
            return self._listed[position]
        return (self._a * position + self._c) % self.size


class Walk:
    """Every point of the product of ``axes`` (one list of values per label), once each,
    in a random order drawn from ``rng`` (in index order when ``rng`` is ``None``).

    :meth:`next_new` continues from where the previous call stopped; the point it returns
    stays the walk's position until a later call finds it no longer new, so a sample that
    was proposed but never submitted is not lost.
    """

    def __init__(self, labels: Sequence[str], axes: Sequence[Sequence[Any]],
                 rng: random.Random | None) -> None:
        self.labels = list(labels)
        self.axes = [list(axis) for axis in axes]
        self.size = math.prod(len(axis) for axis in self.axes)
        self._order = Permutation(self.size, rng) if rng is not None else None
        self.position = 0

    def point(self, index: int) -> Sample:
        """The sample at ``index`` (mixed radix, the last label varying fastest)."""
        values: list[Any] = []
        for axis in reversed(self.axes):
            index, digit = divmod(index, len(axis))
            values.append(axis[digit])
        return dict(zip(self.labels, reversed(values), strict=True))

    def next_new(self, is_new: Callable[[Sample], bool], budget: int) -> Sample | NotYet | None:
        """The next point for which ``is_new`` holds; ``None`` once every point was
        visited; :data:`~strategies.base.NOT_YET` when ``budget`` points were looked at
        without finding one (call again: the walk goes on from there)."""
        for _ in range(budget):
            if self.position >= self.size:
                return None
            index = self._order[self.position] if self._order is not None else self.position
            sample = self.point(index)
            if is_new(sample):
                return sample
            self.position += 1
        return None if self.position >= self.size else NOT_YET
