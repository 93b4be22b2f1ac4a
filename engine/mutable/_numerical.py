"""The numeric leaf :class:`Numerical`: a number in a range, under a uniform, log-uniform,
normal or log-normal prior, optionally quantized."""

from __future__ import annotations

import math
import random as _random
import statistics
from typing import Any

from engine.mutable._leaves import LabeledMutable
from engine.mutable._sample import _is_number


class Numerical(LabeledMutable):
    """A number in ``[low, high]``.

    Its prior (what :meth:`random_value` draws from) is uniform on ``[low, high]``, or
    uniform on a log scale with ``log``; with ``mu`` and ``sigma`` it is normal (with
    ``log``: log-normal, the value is ``exp`` of a normal draw), and ``low``/``high``,
    which may then be infinite, truncate it. ``quantize`` rounds to multiples of a step
    (then clips to the bounds). The default is the prior's median (``mu``, or
    ``exp(mu)`` for a log-normal, when nothing truncates it).

    Differs from the reference on purpose: the reference clips a normal draw to the
    bounds (so values pile up on them); here the normal is truncated, so every value in
    the bounds keeps its relative likelihood and none is favoured. Draws come from
    ``random.Random`` by inverse CDF, not from numpy/scipy.
    """

    def __init__(
        self,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        mu: float | None = None,
        sigma: float | None = None,
        log: bool = False,
        quantize: float | None = None,
        default: float | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__(label)
        label = self.label
        normal = mu is not None or sigma is not None
        if normal and (mu is None or sigma is None):
            raise ValueError(f"Numerical {label!r}: a normal prior needs both mu and sigma, "
                             f"got mu={mu!r}, sigma={sigma!r}")
        for name, bound in (("low", low), ("high", high)):
            if not _is_number(bound) or math.isnan(bound) or (
                    not normal and not math.isfinite(bound)):
                kind = "a number" if normal else "a finite number"
                hint = "" if normal else " (an infinite bound needs a normal prior: mu, sigma)"
                raise TypeError(f"Numerical {label!r}: {name} must be {kind}, got "
                                f"{bound!r}{hint}")
        if not low < high:
            raise ValueError(f"Numerical {label!r}: low ({low}) must be below high ({high})")
        if log and not normal and low <= 0:
            raise ValueError(f"Numerical {label!r}: a log scale needs low > 0, got {low}")
        if normal:
            if not (_is_number(mu) and math.isfinite(mu)):  # type: ignore[arg-type]
                raise TypeError(f"Numerical {label!r}: mu must be a finite number, got {mu!r}")
            if not (_is_number(sigma) and math.isfinite(sigma) and sigma > 0):  # type: ignore[arg-type,operator]
                raise ValueError(f"Numerical {label!r}: sigma must be a finite number > 0, "
                                 f"got {sigma!r}")
        if quantize is not None and not (_is_number(quantize) and quantize > 0):
            raise ValueError(f"Numerical {label!r}: quantize must be a positive number, "
                             f"got {quantize!r}")
        self.low, self.high, self.log, self.quantize = low, high, log, quantize
        self.mu, self.sigma = mu, sigma
        self._mass = self._truncated_mass()
        if self._mass is not None and not self._mass[1] > self._mass[0]:
            raise ValueError(f"Numerical {label!r}: [{low}, {high}] holds no probability of "
                             f"the normal prior (mu={mu}, sigma={sigma}{', log' if log else ''})")
        if default is not None and self.check_value(default) is not None:
            raise ValueError(f"Numerical {label!r}: default {default!r} is out of range")
        self.default_ = default

    def _truncated_mass(self) -> tuple[float, float] | None:
        """The normal prior's CDF at the bounds (on the log scale with ``log``)."""
        if self.mu is None or self.sigma is None:
            return None
        dist = statistics.NormalDist(self.mu, self.sigma)
        lo, hi = self.low, self.high
        if self.log:
            lo = math.log(lo) if lo > 0 else -math.inf
            hi = math.log(hi) if math.isfinite(hi) else math.inf
        return (dist.cdf(lo) if math.isfinite(lo) else 0.0,
                dist.cdf(hi) if math.isfinite(hi) else 1.0)

    def check_value(self, value: Any) -> str | None:
        if not _is_number(value):
            return (f"{self.label!r} takes a number, got {type(value).__name__} {value!r}")
        if not self.low <= value <= self.high:
            return f"{value!r} is outside [{self.low}, {self.high}] of {self.label!r}"
        if not math.isfinite(value):  # within infinite bounds
            return f"{self.label!r} takes a finite number, got {value!r}"
        if self.quantize is not None:
            steps = value / self.quantize
            if abs(steps - round(steps)) > 1e-6 and value not in (self.low, self.high):
                return f"{value!r} is not a multiple of {self.quantize} for {self.label!r}"
        return None

    def _from_quantile(self, q: float) -> float:
        if self._mass is not None and self.mu is not None and self.sigma is not None:
            a, b = self._mass
            p = min(max(a + q * (b - a), 1e-15), 1 - 1e-15)  # inv_cdf needs 0 < p < 1
            value = statistics.NormalDist(self.mu, self.sigma).inv_cdf(p)
            if self.log:
                value = math.exp(value)
        elif self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            value = math.exp(lo + q * (hi - lo))
        else:
            value = self.low + q * (self.high - self.low)
        if self.quantize is not None:
            value = round(value / self.quantize) * self.quantize
        return min(max(value, self.low), self.high)

    def default_value(self) -> float:
        return self.default_ if self.default_ is not None else self._from_quantile(0.5)

    def random_value(self, rng: _random.Random) -> float:
        return self._from_quantile(rng.random())

    def grid_values(self, granularity: int | None = None) -> list[float]:
        """``2**g - 1`` evenly spaced quantiles (``g`` = granularity, default 1), deduplicated:
        each granularity keeps the points of the ones before it."""
        g = 1 if granularity is None else granularity
        if not isinstance(g, int) or isinstance(g, bool) or g < 1:
            raise ValueError(f"granularity must be an int >= 1, got {g!r}")
        points = (self._from_quantile(k / 2**g) for k in range(1, 2**g))
        return list(dict.fromkeys(points))

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Numerical)
            and (other.label, other.low, other.high, other.log, other.quantize, other.default_,
                 other.mu, other.sigma)
            == (self.label, self.low, self.high, self.log, self.quantize, self.default_,
                self.mu, self.sigma)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        prior = f", mu={self.mu}, sigma={self.sigma}" if self.mu is not None else ""
        extra = prior + (", log=True" if self.log else "") + (
            f", quantize={self.quantize}" if self.quantize is not None else "")
        return f"Numerical({self.low}, {self.high}{extra}, label={self.label!r})"
