"""The Gaussian process of :class:`~strategies.bayes_opt.BayesOpt` (numpy only).

A sample is a row of numbers, one per label (:class:`Points`): a Categorical value's
position, a Numerical value's quantile in ``[0, 1]`` (on the log scale where the label
has one), ``nan`` where the sample lacks the label (a conditional sample). The distance
of two samples is the mean over labels of a per-label distance in ``[0, 1]``: 0 or 1 for a
Categorical (the Hamming distance: values are unordered), ``|q - q'|`` for a Numerical, 1
between a value and a missing one, 0 between two missing ones. The kernel is::

    k(x, x') = s2 * exp(-theta * distance(x, x'))

a product over labels of exponential kernels, so positive definite: on Categorical labels
it is the one COMBO (Oh, Tomczak, Gavves, Welling, "Combinatorial Bayesian optimization
using the graph cartesian product", NeurIPS 2019) uses on a complete graph per label, and
the exponentiated Hamming kernel of Ru, Alvi, Nguyen, Osborne, Roberts ("Bayesian
optimisation over multiple continuous and categorical inputs", ICML 2020). Each point is
the mean of ``count`` results, so its noise is ``s2 * ratio / count``. ``theta`` and
``ratio`` are chosen on a small grid by the marginal likelihood, ``s2`` in closed form
(its maximum-likelihood value for each pair), the prior mean is 0 (targets are centred).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.mutable import Categorical, LabeledMutable, Numerical
from strategies._surrogate import quantile

__all__ = ("NOISES", "THETAS", "Fit", "Points", "distances", "expected_improvement", "fit")

Array = npt.NDArray[np.float64]

#: Length-scale grid: ``exp(-theta / d)`` is the correlation of samples one label apart.
THETAS = (1.0, 2.0, 4.0, 8.0, 16.0)
#: Noise grid, as a share of the signal variance of one result.
NOISES = (0.02, 0.1, 0.3, 1.0)
#: Added to the diagonal so the Cholesky factorisation never meets a singular matrix.
JITTER = 1e-8


class Points:
    """Samples of ``leaves`` as rows of numbers (see the module docstring)."""

    def __init__(self, leaves: Mapping[str, LabeledMutable]) -> None:
        self.leaves = leaves
        self.kinds = [0 if isinstance(leaf, Numerical) else
                      len(leaf.values) if isinstance(leaf, Categorical) else 1
                      for leaf in leaves.values()]  # see distances()
        self._positions = [_positions(leaf) for leaf in leaves.values()]

    def encode(self, samples: Sequence[Mapping[str, Any]]) -> Array:
        rows = [[self._number(j, leaf, sample, label)
                 for j, (label, leaf) in enumerate(self.leaves.items())]
                for sample in samples]
        return np.array(rows, dtype=np.float64).reshape(len(samples), len(self.leaves))

    def _number(self, j: int, leaf: LabeledMutable, sample: Mapping[str, Any],
                label: str) -> float:
        value = sample.get(label, _ABSENT)
        positions = self._positions[j]
        if positions is not None:  # a Categorical of hashable values: one lookup
            try:
                return positions.get(value, math.nan)
            except TypeError:  # an unhashable value: not one of these
                return math.nan
        if value is _ABSENT:
            return math.nan
        if isinstance(leaf, Numerical):
            return quantile(leaf, float(value)) if isinstance(value, int | float) else math.nan
        if isinstance(leaf, Categorical):
            try:
                return float(leaf.values.index(value))
            except ValueError:  # a value of another version of the space
                return math.nan
        return math.nan  # another kind of leaf: the kernel does not see it


_ABSENT = object()


def _positions(leaf: LabeledMutable) -> dict[Any, float] | None:
    """Each value's position, for a Categorical whose values are all hashable."""
    if not isinstance(leaf, Categorical):
        return None
    try:
        positions: dict[Any, float] = {}
        for index, value in enumerate(leaf.values):
            positions.setdefault(value, float(index))
        return positions
    except TypeError:
        return None


def distances(a: Array, b: Array, kinds: Sequence[int]) -> Array:
    """The ``(len(a), len(b))`` matrix of mean per-label distances, each in [0, 1]:
    ``kinds`` holds, per label, 0 for a Numerical, else how many values it has."""
    total = np.zeros((a.shape[0], b.shape[0]))
    choices = [j for j, kind in enumerate(kinds) if kind]
    if choices:  # Hamming: labels minus matches, a product of one-hot codes
        total += len(choices) - _one_hot(a, choices, kinds) @ _one_hot(b, choices, kinds).T
    for j in (j for j, kind in enumerate(kinds) if not kind):
        x, y = a[:, j][:, None], b[:, j][None, :]
        missing_x, missing_y = np.isnan(x), np.isnan(y)
        gap = np.abs(np.where(missing_x, 0.0, x) - np.where(missing_y, 0.0, y))
        total += np.where(missing_x | missing_y, (missing_x != missing_y) * 1.0, gap)
    return total / max(len(kinds), 1)


def _one_hot(rows: Array, columns: list[int], kinds: Sequence[int]) -> Array:
    """One column per value of each Categorical label, and one for "missing"."""
    parts = []
    for j in columns:
        values = rows[:, j][:, None]
        parts.append(values == np.arange(kinds[j])[None, :])
        parts.append(np.isnan(values))
    return np.concatenate(parts, axis=1).astype(np.float64)


class Fit:
    """A GP conditioned on ``y`` (centred targets) at points whose distance matrix is
    ``d``: ``predict`` gives the posterior mean and standard deviation at new points."""

    def __init__(self, d: Array, y: Array, counts: Array, theta: float, ratio: float) -> None:
        self.theta, self.ratio, self.y, self.counts = theta, ratio, y, counts
        k = np.exp(-theta * d) + np.diag(ratio / counts + JITTER)
        self._factor = np.linalg.cholesky(k)
        self.alpha = np.linalg.solve(k, y)
        self.s2 = max(float(y @ self.alpha) / max(len(y), 1), 1e-12)
        self._inverse: Array | None = None  # L^-1, made on the first predict (not for a grid)

    @property
    def log_likelihood(self) -> float:
        """The log marginal likelihood with ``s2`` at its maximum (constants dropped)."""
        n = len(self.alpha)
        return -0.5 * n * math.log(self.s2) - float(np.sum(np.log(np.diag(self._factor))))

    def predict_mean(self, cross: Array) -> Array:
        """The posterior mean at points whose distances to the fitted ones are the rows
        of ``cross``."""
        mean: Array = np.exp(-self.theta * cross) @ self.alpha
        return mean

    def predict(self, cross: Array) -> tuple[Array, Array]:
        """(mean, standard deviation) at points whose distances to the fitted ones are
        the rows of ``cross``."""
        if self._inverse is None:  # of the Cholesky factor: k K^-1 k' = |L^-1 k'|^2
            self._inverse = np.linalg.inv(self._factor)
        k = np.exp(-self.theta * cross)
        mean = k @ self.alpha
        whitened = k @ self._inverse.T
        variance = 1.0 - np.einsum("ij,ij->i", whitened, whitened)
        return mean, np.sqrt(np.maximum(variance, 1e-12) * self.s2)


def fit(d: Array, y: Array, counts: Array, grid: Iterable[tuple[float, float]]) -> Fit:
    """The fit of the ``(theta, ratio)`` in ``grid`` with the highest marginal likelihood."""
    best: Fit | None = None
    for theta, ratio in grid:
        try:
            candidate = Fit(d, y, counts, theta, ratio)
        except np.linalg.LinAlgError:  # not positive definite in floating point: skip
            continue
        if best is None or candidate.log_likelihood > best.log_likelihood:
            best = candidate
    if best is None:
        raise np.linalg.LinAlgError("no kernel of the grid could be factorised")
    return best


def expected_improvement(mean: Array, std: Array, incumbent: float) -> Array:
    """Expected improvement over ``incumbent`` of each (mean, std), bigger is better."""
    z = (mean - incumbent) / std
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in z]))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    result: Array = (mean - incumbent) * cdf + std * pdf
    return result
