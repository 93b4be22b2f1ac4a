"""Shortcuts that make a leaf, named and ordered as the reference's (label first):
:func:`choice` and :func:`randint` make a Categorical, the others a Numerical."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engine.mutable._leaves import Categorical
from engine.mutable._numerical import Numerical


def choice(label: str, values: Iterable[Any], *, weights: Sequence[float] | None = None
           ) -> Categorical:
    """One of ``values`` (equally likely unless ``weights`` are given)."""
    return Categorical(values, weights=weights, label=label)


def randint(label: str, lower: int, upper: int) -> Categorical:
    """An int in ``[lower, upper)``, all equally likely (a Categorical, as in the
    reference)."""
    for name, bound in (("lower", lower), ("upper", upper)):
        if not isinstance(bound, int) or isinstance(bound, bool):
            raise TypeError(f"randint {label!r}: {name} must be an int, got {bound!r}")
    if not lower < upper:
        raise ValueError(f"randint {label!r}: lower ({lower}) must be below upper ({upper})")
    return Categorical(range(lower, upper), label=label)


def uniform(label: str, low: float, high: float) -> Numerical:
    """A number drawn uniformly from ``[low, high]``."""
    return Numerical(low, high, label=label)


def quniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    """:func:`uniform`, rounded to a multiple of ``quantize`` and clipped to the bounds."""
    return Numerical(low, high, quantize=quantize, label=label)


def loguniform(label: str, low: float, high: float) -> Numerical:
    """A number in ``[low, high]`` whose logarithm is uniform (``low > 0``)."""
    return Numerical(low, high, log=True, label=label)


def qloguniform(label: str, low: float, high: float, quantize: float) -> Numerical:
    """:func:`loguniform`, rounded to a multiple of ``quantize`` and clipped."""
    return Numerical(low, high, log=True, quantize=quantize, label=label)


def normal(label: str, mu: float, sigma: float) -> Numerical:
    """A number drawn from the normal distribution of mean ``mu``, deviation ``sigma``."""
    return Numerical(mu=mu, sigma=sigma, label=label)


def qnormal(label: str, mu: float, sigma: float, quantize: float) -> Numerical:
    """:func:`normal`, rounded to a multiple of ``quantize``."""
    return Numerical(mu=mu, sigma=sigma, quantize=quantize, label=label)


def lognormal(label: str, mu: float, sigma: float) -> Numerical:
    """``exp`` of a :func:`normal` draw: a positive number whose logarithm is normal."""
    return Numerical(mu=mu, sigma=sigma, log=True, label=label)


def qlognormal(label: str, mu: float, sigma: float, quantize: float) -> Numerical:
    """:func:`lognormal`, rounded to a multiple of ``quantize``."""
    return Numerical(mu=mu, sigma=sigma, log=True, quantize=quantize, label=label)
