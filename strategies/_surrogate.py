"""The surrogate of :class:`~strategies.model_based.ModelBased`: shrunk main effects and
pairwise interactions of the labels, kept as running sums (pure Python, no numpy).

Each label's value is a *token*: a Categorical value's position, a Numerical value's bin
(``bins`` equal parts of ``[low, high]``, on the log scale where the label has one), or
:data:`MISSING` when a sample lacks the label (a conditional sample). The model is::

    f(x) = mu + sum_l e_l(x_l) + w * sum_{l<m} r_lm(x_l, x_m)

where ``mu`` is the mean of all results, ``e_l(t)`` the mean residual of the results
whose label ``l`` is ``t``, shrunk towards 0 as ``(sum - count * mu) / (count + k)``,
and ``r_lm`` the same for pairs of labels, as residuals of ``mu + e_l + e_m``. Adding or
removing one result updates the sums in ``O(d^2)`` for ``d`` labels, and a prediction
reads ``O(d^2)`` sums, so neither depends on the number of results: a proposal at 300
results costs what it costs at 30. Interactions are kept for up to :data:`MAX_PAIRED`
labels (beyond, the pairs would cost more than they tell).

It also holds what both surrogate strategies (:class:`~strategies.model_based.ModelBased`
and :class:`~strategies.bayes_opt.BayesOpt`) share: :class:`SurrogateStrategy`, their
book of results, local moves and re-evaluation rule, and :func:`normal_scores`, the
targets both models are fitted on.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from engine._objective import is_score
from engine.mutable import Categorical, LabeledMutable, Numerical, Sample
from engine.space import ExecutableModelSpace, ModelStatus
from strategies.base import BaseStrategy, fidelity, sample_key
from strategies.evolution import Reevaluation

__all__ = ("MAX_PAIRED", "MISSING", "Encoder", "Surrogate", "quantile", "value_at")

#: The token of a label a sample does not have.
MISSING = -1
#: Labels beyond which the surrogate models main effects only.
MAX_PAIRED = 12

Tokens = tuple[int, ...]


def quantile(leaf: Numerical, value: float) -> float:
    """Where ``value`` lies in ``[low, high]`` of ``leaf``, in [0, 1] (log scale if any)."""
    if leaf.log:
        lo, hi = math.log(leaf.low), math.log(leaf.high)
        position = (math.log(max(value, leaf.low)) - lo) / (hi - lo)
    else:
        position = (value - leaf.low) / (leaf.high - leaf.low)
    return min(max(position, 0.0), 1.0)


def value_at(leaf: Numerical, q: float) -> float:
    """The value of ``leaf`` at quantile ``q`` (clipped to [0, 1]), quantized if it is."""
    q = min(max(q, 0.0), 1.0)
    if leaf.log:
        lo, hi = math.log(leaf.low), math.log(leaf.high)
        value = math.exp(lo + q * (hi - lo))
    else:
        value = leaf.low + q * (leaf.high - leaf.low)
    if leaf.quantize is not None:
        value = round(value / leaf.quantize) * leaf.quantize
    return min(max(value, leaf.low), leaf.high)


class Encoder:
    """Samples of ``leaves`` as tuples of tokens (see the module docstring)."""

    def __init__(self, leaves: Mapping[str, LabeledMutable], bins: int) -> None:
        self.leaves = leaves
        self.labels = list(leaves)
        self.bins = bins

    def tokens(self, sample: Mapping[str, Any]) -> Tokens:
        return tuple(self._token(self.leaves[label], sample, label) for label in self.labels)

    def _token(self, leaf: LabeledMutable, sample: Mapping[str, Any], label: str) -> int:
        if label not in sample:
            return MISSING
        value = sample[label]
        if isinstance(leaf, Categorical):
            try:
                return leaf.values.index(value)
            except ValueError:  # a value of another version of the space
                return MISSING
        if isinstance(leaf, Numerical) and isinstance(value, int | float):
            return min(int(quantile(leaf, float(value)) * self.bins), self.bins - 1)
        return MISSING


class _Sums:
    """Count and sum of the results per key."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count: dict[Any, float] = {}
        self.total: dict[Any, float] = {}

    def add(self, key: Any, y: float, weight: float) -> None:
        self.count[key] = self.count.get(key, 0.0) + weight
        self.total[key] = self.total.get(key, 0.0) + weight * y

    def residual(self, key: Any, base: float, shrink: float) -> tuple[float, float]:
        """(shrunk mean residual against ``base``, count) of ``key``."""
        count = self.count.get(key, 0.0)
        if count <= 0.0:
            return 0.0, 0.0
        return (self.total[key] - count * base) / (count + shrink), count


class Surrogate:
    """The running sums and the prediction (see the module docstring). ``y`` is always
    "bigger is better"; the caller flips the sign for a metric to minimize."""

    def __init__(self, width: int, *, shrink: float = 2.0, pair_shrink: float = 4.0,
                 pair_weight: float = 1.0) -> None:
        self.width = width
        self.shrink, self.pair_shrink, self.pair_weight = shrink, pair_shrink, pair_weight
        self.count = 0.0
        self.total = 0.0
        self.squares = 0.0
        self._main = [_Sums() for _ in range(width)]
        self._pairs: list[tuple[int, int]] = (
            list(itertools.combinations(range(width), 2)) if width <= MAX_PAIRED else [])
        self._pair_sums = [_Sums() for _ in self._pairs]

    def add(self, tokens: Sequence[int], y: float, weight: float = 1.0) -> None:
        """Count one result (``weight=-1`` takes back one added with the same ``y``)."""
        self.count += weight
        self.total += weight * y
        self.squares += weight * y * y
        for sums, token in zip(self._main, tokens, strict=True):
            sums.add(token, y, weight)
        for sums, (i, j) in zip(self._pair_sums, self._pairs, strict=True):
            sums.add((tokens[i], tokens[j]), y, weight)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count > 0 else 0.0

    @property
    def spread(self) -> float:
        """The standard deviation of the results (1.0 before there are two)."""
        if self.count < 2:
            return 1.0
        variance = self.squares / self.count - self.mean ** 2
        return math.sqrt(variance) if variance > 0 else 1.0

    def predict(self, tokens: Sequence[int]) -> tuple[float, float]:
        """(predicted y, novelty) of ``tokens``: novelty is the mean over labels and
        pairs of ``1 / sqrt(1 + count)``, 1 for a sample unlike any result so far."""
        mu = self.mean
        effects = []
        novelty = 0.0
        for sums, token in zip(self._main, tokens, strict=True):
            effect, count = sums.residual(token, mu, self.shrink)
            effects.append(effect)
            novelty += 1.0 / math.sqrt(1.0 + count)
        value = mu + sum(effects)
        interaction = 0.0
        for sums, (i, j) in zip(self._pair_sums, self._pairs, strict=True):
            base = mu + effects[i] + effects[j]
            effect, count = sums.residual((tokens[i], tokens[j]), base, self.pair_shrink)
            interaction += effect
            novelty += 1.0 / math.sqrt(1.0 + count)
        terms = len(self._main) + len(self._pairs)
        return value + self.pair_weight * interaction, novelty / max(terms, 1)


#: Values of one Categorical label tried as neighbours of a parent (drawn when it has more).
MAX_NEIGHBOURS = 16
#: Gaussian steps (as a share of the range) a Numerical label moves by in a neighbour.
NUMERICAL_STEPS = (0.05, 0.15, 0.3)


def neighbour_values(leaf: LabeledMutable, current: Any, rng: random.Random) -> list[Any]:
    """The values one label of a parent moves to in the surrogate strategies' local
    moves: every other value of a Categorical (``MAX_NEIGHBOURS`` drawn when it has
    more), a few Gaussian steps of a Numerical's range (on its log scale where it has
    one, then quantized), one random value of any other leaf."""
    if isinstance(leaf, Categorical):
        others = [value for value in leaf.values if value != current]
        if len(others) > MAX_NEIGHBOURS:
            others = rng.sample(others, MAX_NEIGHBOURS)
        return others
    if isinstance(leaf, Numerical):
        start = quantile(leaf, current) if isinstance(current, int | float) else 0.5
        moved = (value_at(leaf, start + rng.gauss(0.0, step)) for step in NUMERICAL_STEPS)
        return [value for value in dict.fromkeys(moved) if value != current]
    return [leaf.random_value(rng)]


def normal_scores(values: list[float]) -> list[float]:
    """Each value's rank as a standard normal quantile (ties share their mean rank)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2
        start = end + 1
    normal = statistics.NormalDist()
    return [normal.inv_cdf((rank + 0.5) / len(values)) for rank in ranks]


def fidelity_value(reached: float, curve: tuple[float, ...], level: float) -> float | None:
    """The signed value at fidelity ``level`` of a model that reached ``reached`` with
    ``curve`` (its intermediates; at full fidelity, its metric last): None when it did
    not reach it or reported nothing usable there."""
    if reached < level:
        return None
    step = len(curve) if level == math.inf else int(level)
    if not 1 <= step <= len(curve) or math.isnan(curve[step - 1]):
        return None
    return curve[step - 1]


class SurrogateStrategy(BaseStrategy):
    """What the surrogate strategies share: the mean metric of each sample (signed, so
    bigger is better), the samples that failed, the local moves of one label, and the
    re-evaluation rule. Subclasses fit their model and pick among candidates."""

    def __init__(self, *, reevaluate: Reevaluation | None, seed: int | None,
                 max_trials: int | None, mode: str, deterministic: bool) -> None:
        super().__init__(seed=seed, max_trials=max_trials, mode=mode,
                         deterministic=deterministic)
        if reevaluate is not None and not isinstance(reevaluate, Reevaluation):
            raise TypeError(f"reevaluate must be a Reevaluation or None, got "
                            f"{type(reevaluate).__name__}")
        self.reevaluate = reevaluate
        self._metrics: dict[bytes, list[float]] = {}  # signed: bigger is better
        self._samples: dict[bytes, dict[str, Any]] = {}
        self._failed: set[bytes] = set()
        # The results at each fidelity (see _record): full fidelity is _metrics itself.
        self._books: dict[float, dict[bytes, list[float]]] = {math.inf: self._metrics}
        self._curves: list[tuple[bytes, float, tuple[float, ...]]] = []  # signed

    def _record(self, model: ExecutableModelSpace) -> tuple[bytes, Sample, float] | None:
        """Book one finished model: a trained one adds its signed metric to its
        sample's results at its fidelity and returns ``(key, sample, signed metric)``;
        any other marks its sample failed (never re-evaluated) and returns ``None``.

        Fidelity (:func:`~strategies.base.fidelity`, as BOHB keeps one data set per
        budget): a model trained to its end counts in :attr:`_metrics`, the
        full-fidelity results, and nowhere else at full fidelity. One stopped or paused
        at step ``f`` (a scheduler's proposer hears such models) counts only at the
        lower fidelities: at each step ``s <= f`` that some model stopped at, with its
        value at step ``s``; so does a model trained to its end."""
        metric, key = model.metric, sample_key(model.sample or {})
        if model.status is not ModelStatus.Trained or not is_score(metric):  # dicts too
            self._failed.add(key)
            return None
        sample = dict(model.sample or {})
        sign = 1.0 if self.mode == "max" else -1.0
        y = sign * float(metric)
        reached = fidelity(model)
        if reached == math.inf:
            self._metrics.setdefault(key, []).append(y)
        self._samples.setdefault(key, sample)
        curve = tuple(sign * float(v) if is_score(v) else math.nan
                      for v in model.metrics.intermediates)
        steps = len(curve) if reached == math.inf else int(reached)
        head = curve[:steps - 1]
        head += (math.nan,) * (steps - 1 - len(head))
        curve = (*head, y)  # its metric is its value at the step it reached (the last)
        if reached not in self._books:
            self._add_fidelity(reached)
        self._curves.append((key, reached, curve))
        for level, book in self._books.items():
            value = fidelity_value(reached, curve, level) if level != math.inf else None
            if value is not None:
                book.setdefault(key, []).append(value)
        return key, sample, y

    def _add_fidelity(self, level: float) -> None:
        """Start the book of fidelity ``level`` with the values at that step of every
        model booked so far that reached it."""
        book: dict[bytes, list[float]] = {}
        for key, reached, curve in self._curves:
            value = fidelity_value(reached, curve, level)
            if value is not None:
                book.setdefault(key, []).append(value)
        self._books[level] = book

    def _results_in_order(self, level: float) -> list[tuple[bytes, float]]:
        """``(key, signed value)`` of each model booked at fidelity ``level``, in the
        order they were booked."""
        results = []
        for key, reached, curve in self._curves:
            value = fidelity_value(reached, curve, level)
            if value is not None:
                results.append((key, value))
        return results

    def _fit_fidelity(self, enough: int) -> float:
        """The fidelity a model of the results is fitted at: the highest one with at
        least ``enough`` samples (BOHB's rule), else the one with the most (the highest
        on a tie). Full fidelity when no model stopped early."""
        levels = sorted(self._books, reverse=True)
        for level in levels:
            if len(self._books[level]) >= enough:
                return level
        return max(levels, key=lambda level: len(self._books[level]))

    def results_at(self, level: float) -> dict[bytes, list[float]]:
        """The results booked at fidelity ``level`` (``math.inf``: trained to the end),
        by :func:`sample_key`, signed (bigger is better), in the order the samples
        first reached it; empty at a fidelity no model stopped at (copies)."""
        return {key: list(values) for key, values in self._books.get(level, {}).items()}

    def metrics_of(self, sample: Sample) -> list[float]:
        """The metric of each model of ``sample`` trained to its end, in the order they
        finished (models stopped early: :meth:`results_at`)."""
        sign = 1.0 if self.mode == "max" else -1.0
        return [sign * y for y in self._metrics.get(sample_key(sample), ())]

    def _moves(self, leaf: LabeledMutable, current: Any) -> list[Any]:
        """The values one label of a parent moves to (:func:`neighbour_values`)."""
        return neighbour_values(leaf, current, self.rng)

    def _reevaluation(self) -> Sample | None:
        """The sample :attr:`reevaluate` trains again now, or ``None``: as evolution's
        rule (one of the ``top_k`` best means with fewer than ``evaluations`` results,
        while the repeated models stay within ``share`` of all), except that a sample in
        flight waits for its result, so the workers never train one sample twice at
        once."""
        policy, metrics = self.reevaluate, self._metrics
        if policy is None or not metrics:
            return None
        repeats = self.model_count - self.seen_count  # models of samples known before
        if repeats + 1 > policy.share * (self.model_count + 1):
            return None
        flying = self.in_flight_counts()
        best = sorted(metrics, key=lambda k: statistics.fmean(metrics[k]),
                      reverse=True)[:policy.top_k]
        for key in best:
            if (key not in self._failed and not flying[key]  # never twice in flight
                    and len(metrics[key]) < policy.evaluations):
                return dict(self._samples[key])
        return None
