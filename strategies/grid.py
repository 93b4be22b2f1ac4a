"""Grid search: every combination of the labels' grid values, finer and finer."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from engine.mutable import LabeledMutable, Sample
from strategies._walk import Walk
from strategies.base import BaseStrategy, Leaves, NotYet
from strategies.random_search import MAX_WALK

__all__ = ("GridSearch", "grid_samples")


def grid_samples(leaves: Mapping[str, LabeledMutable], granularity: int) -> Iterator[Sample]:
    """Every combination of the leaves' grid values at ``granularity``, in a fixed order
    (the last label varies fastest)."""
    labels = list(leaves)
    axes = [leaves[label].grid_values(granularity) for label in labels]
    for combo in itertools.product(*axes):
        yield dict(zip(labels, combo, strict=True))


def _refines(leaves: Mapping[str, LabeledMutable], granularity: int) -> bool:
    """Whether the grid at ``granularity + 1`` has points that the one at ``granularity``
    lacks (only numerical labels get finer)."""
    return any(leaf.grid_values(granularity + 1) != leaf.grid_values(granularity)
               for leaf in leaves.values())


class GridSearch(BaseStrategy):
    """Walks the grid at granularity 1, then 2, 3, ...: each numerical label gets
    ``2**g - 1`` evenly spaced points at granularity ``g`` (categorical labels keep all
    their values), and a sample already tried at a coarser granularity is skipped. The
    run stops when the budget is used or when no label can get finer (a space of
    categorical labels stops after one pass). ``shuffle`` visits each granularity's new
    samples in an order drawn from ``seed`` (a random permutation of the grid's indices:
    the grid is never listed, so a proposal stays cheap on a grid of any size).

    On resume the walk starts again from granularity 1 and skips the journal's samples,
    so it continues where the previous run stopped.
    """

    def __init__(
        self, *, shuffle: bool = False, seed: int | None = None,
        max_trials: int | None = None, mode: str = "max", deterministic: bool = False,
    ) -> None:
        super().__init__(seed=seed, max_trials=max_trials, mode=mode,
                         deterministic=deterministic)
        self.shuffle = shuffle
        self.granularity = 1
        self._walk: Walk | None = None
        self._walk_of: Leaves | None = None

    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called when a worker is free: the next unseen grid point, ``None`` once the
        grid cannot get finer, or ``NOT_YET`` when :data:`~strategies.random_search.MAX_WALK`
        points in a row were seen (after a resume: the next call goes on from there)."""
        while True:
            if self._walk is None or self._walk_of is not leaves:
                axes = [leaf.grid_values(self.granularity) for leaf in leaves.values()]
                self._walk = Walk(list(leaves), axes, self.rng if self.shuffle else None)
                self._walk_of = leaves
            found = self._walk.next_new(self.is_new, MAX_WALK)
            if found is not None:
                return found
            if not _refines(leaves, self.granularity):
                return None
            self.granularity += 1
            self._walk = None

    def __repr__(self) -> str:
        return (f"GridSearch(shuffle={self.shuffle}, seed={self.seed!r}, "
                f"max_trials={self.max_trials!r}, mode={self.mode!r}, "
                f"deterministic={self.deterministic})")
