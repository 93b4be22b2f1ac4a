"""A leaf mutable that picks several distinct values (an InputChoice choosing more than one).

It has no torch dependency, so it could move into :mod:`engine.mutable`.
"""

from __future__ import annotations

import itertools
import random as _random
from collections.abc import Iterable, Sequence
from typing import Any

from engine.mutable import LabeledMutable, check_weights
from engine.mutable._sample import _canonical, _same_value

__all__ = ("CategoricalMultiple",)


class CategoricalMultiple(LabeledMutable):
    """Distinct values out of ``values``: exactly ``n_chosen`` of them, or any non-empty
    number when ``n_chosen`` is None. A value is a list, kept in the order of ``values``.
    The default is the first ``n_chosen`` values (all of them when ``n_chosen`` is None).

    ``weights`` are its prior, as in the reference: with ``n_chosen``, one probability
    per value summing to 1, and values are drawn one by one without replacement in
    proportion to them; without, each value's own probability of being in the subset
    (a draw that picks none is drawn again, since a value here is never empty)."""

    def __init__(
        self, values: Iterable[Any], *, n_chosen: int | None = None,
        weights: Sequence[float] | None = None, label: str | None = None
    ) -> None:
        super().__init__(label)
        self.values = list(values)
        if not self.values:
            raise ValueError(f"CategoricalMultiple {self.label!r} needs at least one value")
        if n_chosen is not None and (
            not isinstance(n_chosen, int) or isinstance(n_chosen, bool)
            or not 1 <= n_chosen <= len(self.values)
        ):
            raise ValueError(f"CategoricalMultiple {self.label!r}: n_chosen must be None or an "
                             f"int from 1 to {len(self.values)}, got {n_chosen!r}")
        self.n_chosen = n_chosen
        self.weights = check_weights(weights, len(self.values),
                                     f"CategoricalMultiple {self.label!r}",
                                     total=n_chosen is not None)
        likely = sum(1 for w in self.weights or () if w > 0)
        if self.weights is not None and likely < (n_chosen or 1):
            raise ValueError(f"CategoricalMultiple {self.label!r}: only {likely} values have "
                             f"a weight above 0, too few to choose {n_chosen or 1}")

    def _index(self, value: Any) -> int:
        for i, choice in enumerate(self.values):
            if _same_value(value, choice):
                return i
        return -1

    def check_value(self, value: Any) -> str | None:
        if not isinstance(value, list | tuple):
            return (f"{self.label!r} takes a list of values out of {self.values!r}, "
                    f"got {type(value).__name__} {value!r}")
        if self.n_chosen is not None and len(value) != self.n_chosen:
            return (f"{self.label!r} takes exactly {self.n_chosen} of {self.values!r}, "
                    f"got {len(value)}: {value!r}")
        if not value:
            return f"{self.label!r} takes at least one of {self.values!r}, got none"
        seen: set[int] = set()
        for item in value:
            index = self._index(item)
            if index < 0:
                return f"{item!r} is not one of the choices {self.values!r} of {self.label!r}"
            if index in seen:
                return f"{value!r} picks {item!r} twice for {self.label!r}"
            seen.add(index)
        return None

    def normalize(self, value: Any) -> list[Any]:
        return [self.values[i] for i in sorted(self._index(item) for item in value)]

    def default_value(self) -> list[Any]:
        return list(self.values[: self.n_chosen])

    def random_value(self, rng: _random.Random) -> list[Any]:
        if self.weights is not None:
            return self._weighted_value(self.weights, rng)
        count = self.n_chosen if self.n_chosen is not None else rng.randint(1, len(self.values))
        return [self.values[i] for i in sorted(rng.sample(range(len(self.values)), count))]

    def _weighted_value(self, weights: list[float], rng: _random.Random) -> list[Any]:
        if self.n_chosen is None:
            while True:
                picked = [i for i, w in enumerate(weights) if rng.random() < w]
                if picked:
                    return [self.values[i] for i in picked]
        left = [i for i, w in enumerate(weights) if w > 0]
        chosen: list[int] = []
        for _ in range(self.n_chosen):
            index = rng.choices(left, [weights[i] for i in left])[0]
            left.remove(index)
            chosen.append(index)
        return [self.values[i] for i in sorted(chosen)]

    def grid_values(self, granularity: int | None = None) -> list[list[Any]]:
        sizes = [self.n_chosen] if self.n_chosen is not None else range(1, len(self.values) + 1)
        return [list(combo) for size in sizes
                for combo in itertools.combinations(self.values, size)]

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, CategoricalMultiple)
            and (other.label, other.n_chosen, other.weights)
            == (self.label, self.n_chosen, self.weights)
            and _canonical(other.values) == _canonical(self.values)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"CategoricalMultiple({self.values!r}, n_chosen={self.n_chosen!r}, "
                f"label={self.label!r})")
