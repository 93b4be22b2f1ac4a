"""Labelled leaves: :class:`LabeledMutable`, the base of every leaf (one label, one value
in the sample), and :class:`Categorical`, one of a list of values, with the
:func:`check_weights` its prior shares with other leaves. :class:`Numerical` has its own
module."""

from __future__ import annotations

import math
import random as _random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine._labels import auto_label
from engine.mutable._base import Mutable
from engine.mutable._expression import _Operators
from engine.mutable._sample import (
    _MISSING,
    Sample,
    SampleMissingError,
    SampleValidationError,
    ValueIndex,
    _canonical,
    _is_number,
    _same_value,
    check_sample_type,
)


class LabeledMutable(_Operators, Mutable):
    """A leaf: one label, one value in the sample. Arithmetic and comparison on it make
    a :class:`MutableExpression`."""

    label: str

    def __init__(self, label: str | None) -> None:
        if label is None:
            label = auto_label(type(self).__name__.lower())
        if not isinstance(label, str) or not label:
            raise TypeError(f"a mutable's label must be a non-empty str, got {label!r}")
        self.label = label

    def leaf_mutables(self) -> Iterable[LabeledMutable]:
        yield self

    def check_contains(self, sample: Mapping[str, Any]) -> SampleValidationError | None:
        check_sample_type(sample)
        if self.label not in sample:
            return SampleMissingError(f"label {self.label!r} is missing from the sample",
                                      [self.label])
        reason = self.check_value(sample[self.label])
        return None if reason is None else SampleValidationError(reason, [self.label])

    def freeze(self, sample: Mapping[str, Any]) -> Any:
        self.validate(sample)
        return self.normalize(sample[self.label])

    def _gate_value(self, sample: Mapping[str, Any]) -> Any:
        return self.normalize(sample[self.label])

    def default(self, memo: Sample | None = None) -> Any:
        memo = {} if memo is None else memo
        default = self.default_value()
        value = self.freeze(memo) if self.label in memo else default
        if not _same_value(value, self.normalize(default)):
            raise SampleValidationError(
                f"the memo holds {value!r} for {self.label!r}, whose default is {default!r}: "
                "default() gives every label its default (use freeze() for other values)",
                [self.label])
        memo[self.label] = value
        return value

    def check_value(self, value: Any) -> str | None:
        """Why ``value`` is not one this leaf can take, or ``None``."""
        raise NotImplementedError

    def normalize(self, value: Any) -> Any:
        """The canonical form of a valid value (what ``freeze`` returns)."""
        return value

    def default_value(self) -> Any:
        raise NotImplementedError

    def random_value(self, rng: _random.Random) -> Any:
        raise NotImplementedError

    def grid_values(self, granularity: int | None = None) -> list[Any]:
        raise NotImplementedError


def check_weights(weights: Any, count: int, owner: str, *, total: bool = True
                  ) -> list[float] | None:
    """``weights`` as a list of floats, one per value, each in [0, 1], summing to 1 when
    ``total`` (as in the reference); ValueError naming ``owner`` otherwise."""
    if weights is None:
        return None
    if isinstance(weights, str | bytes | Mapping) or not isinstance(weights, Iterable):
        raise TypeError(f"{owner}: weights must be a list of numbers, got {weights!r}")
    listed = list(weights)
    if len(listed) != count:
        raise ValueError(f"{owner}: {len(listed)} weights for {count} values; give one "
                         "weight per value")
    for w in listed:
        if not _is_number(w) or not 0 <= w <= 1:
            raise ValueError(f"{owner}: each weight must be a number in [0, 1], got {w!r}")
    if total and abs(math.fsum(listed) - 1) > 1e-6:
        raise ValueError(f"{owner}: the weights must sum to 1, got {math.fsum(listed)!r} "
                         f"for {listed!r}")
    return [float(w) for w in listed]


class Categorical(LabeledMutable):
    """One of ``values``. ``default`` is the first value unless given.

    ``weights`` (one per value, summing to 1, as in the reference) is the prior that
    :meth:`random_value` draws from; without it the values are equally likely. As in
    the reference, the grid lists the more likely values first when weights differ."""

    def __init__(
        self, values: Iterable[Any], *, weights: Sequence[float] | None = None,
        default: Any = _MISSING, label: str | None = None
    ) -> None:
        super().__init__(label)
        label = self.label
        if isinstance(values, str | bytes | Mapping):
            raise TypeError(f"Categorical {label!r} takes a list of choices, got "
                            f"{type(values).__name__} {values!r}")
        self.values = list(values)
        if not self.values:
            raise ValueError(f"Categorical {label!r} needs at least one value")
        self._positions = ValueIndex(self.values)
        if self._positions.duplicate is not _MISSING:
            raise ValueError(f"Categorical {label!r} lists {self._positions.duplicate!r} twice")
        if default is not _MISSING and not self._index(default) >= 0:
            raise ValueError(f"default {default!r} of {label!r} is not one of {self.values!r}")
        self.default_ = self.values[0] if default is _MISSING else default
        self.weights = check_weights(weights, len(self.values), f"Categorical {label!r}")

    def _index(self, value: Any) -> int:
        return self._positions.find(value)

    def _branch_index(self, value: Any) -> int:
        return self._index(value)

    def check_value(self, value: Any) -> str | None:
        if self._index(value) < 0:
            return f"{value!r} is not one of the choices {self.values!r} of {self.label!r}"
        return None

    def normalize(self, value: Any) -> Any:
        return self.values[self._index(value)]

    def default_value(self) -> Any:
        return self.default_

    def random_value(self, rng: _random.Random) -> Any:
        if self.weights is None:
            return rng.choice(self.values)
        return rng.choices(self.values, self.weights)[0]

    def grid_values(self, granularity: int | None = None) -> list[Any]:
        if self.weights is None or len(set(self.weights)) == 1:
            return list(self.values)
        order = sorted(range(len(self.values)), key=lambda i: -self.weights[i])  # type: ignore[index]
        return [self.values[i] for i in order]

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Categorical)
            and other.label == self.label
            and _canonical(other.values) == _canonical(self.values)
            and _same_value(other.default_, self.default_)
            and other.weights == self.weights
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        weights = f", weights={self.weights!r}" if self.weights is not None else ""
        return f"Categorical({self.values!r}{weights}, label={self.label!r})"
