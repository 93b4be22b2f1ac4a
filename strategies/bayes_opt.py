"""Bayesian optimisation for small budgets: a Gaussian process on the labels, expected
improvement over the mutations of the best samples and random samples, asynchronous and
noise-aware.

Each time a worker is free, :class:`BayesOpt`:

1. trains the best sample again, when :class:`~strategies.evolution.Reevaluation` says so
   (noisy training: a sample is ranked by the mean of its results), as
   :class:`~strategies.model_based.ModelBased` does: never while it is in flight;
2. while fewer than ``n_initial`` samples are trained or in flight, proposes uniform
   random samples;
3. otherwise fits a Gaussian process (:mod:`strategies._gp`: an exponential kernel of the
   mean per-label distance, Hamming on Categorical labels) to every trained sample, its
   target the normal score of the rank of its mean result, its noise shrinking with its
   number of results; scores the candidates by expected improvement over the best
   posterior mean of a trained sample, and proposes the best one never submitted.

The candidates are every one-label neighbour of the ``parents`` samples with the best
posterior mean (a Numerical label moves by a few Gaussian steps of its range, on the log
scale where it has one, then is quantized), the two-label mutations of the best one (all
of them, or ``double_mutations`` drawn when there are more), and ``random_candidates``
uniform samples, which let the search leave a local optimum whose every neighbour is
worse once the model expects more elsewhere.

Why this design. BANANAS (White, Neiswanger, Savani, "BANANAS: Bayesian optimization with
neural architectures for neural architecture search", AAAI 2021) found that on cell
spaces the acquisition is best optimised over mutations of the best architectures, and
that a model of one-hot encoded choices (their path encoding) with expected improvement
beats evolution and other Bayesian optimisation at small budgets. COMBO
(Oh et al., NeurIPS 2019) and CoCaBO (Ru et al., ICML 2020) put a GP on categorical
choices with a kernel of the Hamming distance, which models the choices jointly where TPE
(Bergstra, Bardenet, Bengio, Kegl, NeurIPS 2011) models each label on its own. The
targets are normal scores of ranks, not the metrics: NAS metrics are skewed (a few broken
architectures far below the rest) and a stationary GP on the raw values would spend its
length scale on them. The hyper-parameters are chosen by marginal likelihood over a small
grid (:data:`~strategies._gp.THETAS` x :data:`~strategies._gp.NOISES`), again only when
the trained samples grew by a tenth since the last choice, one length scale per call of
:meth:`~BayesOpt.propose`, which returns ``NOT_YET`` meanwhile (the loop lets other tasks
run and asks again): so no call blocks the event loop for more than a few factorisations
of a ``n x n`` matrix, and a proposal at 300 results costs one, with numpy
(benchmarks/search_quality.py prints it as ``proposal_ms_at_300``).

Fidelity. Under a scheduler (``ASHA(proposer=BayesOpt(...))``) the proposer observes
models stopped or paused early; each is booked at the step it reached
(:meth:`~strategies._surrogate.SurrogateStrategy._record`), and the GP is fitted on the
results of the highest fidelity with at least ``n_initial`` samples (a model counts at
every fidelity up to the one it reached, with its value at that step), else of the
fidelity with the most: BOHB's rule (Falkner, Klein, Hutter, "BOHB: robust and
efficient hyperparameter optimization at scale", ICML 2018). So epoch-1 values of
stopped models never mix with final ones, and a model trained to its end is booked
exactly as without a scheduler. Beyond ``max_points`` samples at that fidelity the fit
takes the best half and the latest others, so a proposal costs the same at 1500 models
as at 500.

Asynchrony. A proposal never repeats a sample submitted before, in flight included
(:meth:`~strategies.base.BaseStrategy.is_new`). The new samples in flight enter the GP by
the kriging believer (Ginsbourger, Le Riche, Carraro, "Kriging is well-suited to
parallelize optimization", 2010): each is given the posterior mean as its result, which
leaves the mean where it was and takes the uncertainty there away, so four free workers
get four different candidates spread over the space.

Resume and reproducibility: every result, the journal's included, is observed once by
:meth:`~strategies.base.BaseStrategy.resume`; the GP is rebuilt from them alone. With one
worker the same seed gives the same samples; with several, results arriving in another
order change later proposals unless ``deterministic=True`` (see
:class:`~strategies.base.BaseStrategy`). Failed, invalid and interrupted models never
enter the GP, and their samples are never proposed again.

The defaults were set before measuring, not tuned; benchmarks/search_quality.py measured
them on NAS-Bench-201, seeds 1000-1029 (not the reported 0-49). On cifar10 at 300 the
regret left is mostly noise in the final ranking: the optimum was trained, once, with an
unlucky result, so :class:`~strategies.evolution.Reevaluation` matters more there than
the model does. Of two re-evaluation settings tried on those seeds, ``Reevaluation()``
(the best sample again, up to 10 % of the models) and ``Reevaluation(top_k=3,
share=0.15)``, the second took cifar10 at 300 from 0.064 to 0.021 regret and lost at 50
on cifar100 (0.27 to 0.51) and imagenet (0.55 to 0.74); the benchmark uses the second,
the only one below Optuna TPE in every cell there.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterator

import numpy as np

from engine._checks import check_count
from engine.mutable import Sample
from engine.space import ExecutableModelSpace
from strategies._gp import (
    NOISES,
    THETAS,
    Array,
    Fit,
    Points,
    distances,
    expected_improvement,
    fit,
)
from strategies._surrogate import SurrogateStrategy, normal_scores
from strategies.base import NOT_YET, Leaves, NotYet, sample_key
from strategies.evolution import Reevaluation
from strategies.random_search import UnseenSampler, random_sample

__all__ = ("BayesOpt", "normal_scores")

#: The hyper-parameters are chosen again once the trained samples grew by this factor.
REGRID_GROWTH = 1.1


class BayesOpt(SurrogateStrategy):
    """GP-based Bayesian optimisation (see the module docstring).

    ``n_initial`` random samples come first. Then the candidates are the one-label
    neighbours of the ``parents`` best samples (by posterior mean), the two-label
    mutations of the best one (at most ``double_mutations``, drawn when there are more)
    and ``random_candidates`` random samples; the one with the highest expected
    improvement is proposed. The GP is fitted at the highest fidelity with
    ``n_initial`` results, on at most ``max_points`` of them (see the module
    docstring). ``reevaluate``, a
    :class:`~strategies.evolution.Reevaluation`, trains the best samples again: pass one
    when training the same sample twice can give different metrics. ``deterministic``
    and ``mode`` are as for :class:`~strategies.base.BaseStrategy`.
    """

    def __init__(
        self, *, n_initial: int = 10, parents: int = 3, double_mutations: int = 256,
        random_candidates: int = 200, max_points: int = 512,
        reevaluate: Reevaluation | None = None, seed: int | None = None,
        max_trials: int | None = None, mode: str = "max", deterministic: bool = False,
    ) -> None:
        super().__init__(reevaluate=reevaluate, seed=seed, max_trials=max_trials,
                         mode=mode, deterministic=deterministic)
        for name, value, least in (("n_initial", n_initial, 2), ("parents", parents, 1),
                                   ("double_mutations", double_mutations, 0),
                                   ("random_candidates", random_candidates, 0),
                                   ("max_points", max_points, 2)):
            check_count(name, value, minimum=least)
        self.n_initial, self.parents = n_initial, parents
        self.double_mutations, self.random_candidates = double_mutations, random_candidates
        self.max_points = max_points
        self._points: Points | None = None
        self._level = math.inf  # the fidelity the GP is fitted at (see _fit_fidelity)
        self._keys: list[bytes] = []  # the samples the GP is fitted on, in order
        self._rows: list[Array] = []  # the encoded row of each of _keys
        self._distances = np.zeros((0, 0))  # between the first rows, kept as they grow
        self._hyper: tuple[float, float] | None = None  # (theta, ratio) last chosen
        self._hyper_on = 0  # trained samples when it was chosen
        self._grid: list[Fit | None] = []  # the best fit of each length scale so far
        self._sampler: UnseenSampler | None = None

    # --- learning ----------------------------------------------------------------------

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once per finished model (the journal's at resume, then in completion
        order). A trained one adds its metric to its sample's mean; any other marks its
        sample failed (never re-evaluated)."""
        self._record(model)

    def _model(self) -> tuple[Fit, Array, list[bytes]] | None:
        """The GP of the trained samples at the fitted fidelity, their distance matrix
        and their keys (in the order they first reached it); ``None`` after fitting one
        row of the grid (:meth:`_grid_row`), so that no call blocks the event loop for
        the whole grid. The hyper-parameters are chosen again when the fidelity moves
        up: its results are another function."""
        assert self._points is not None  # for mypy: propose set it up
        level = self._fit_fidelity(self.n_initial)
        book = self._books[level]
        if level != self._level:
            self._level, self._hyper, self._hyper_on, self._grid = level, None, 0, []
        keys = self._window(book)
        if keys[:len(self._keys)] != self._keys:  # the window moved: encode it again
            self._keys, self._rows, self._distances = [], [], np.zeros((0, 0))
        if len(self._keys) < len(keys):
            self._rows.extend(self._points.encode(
                [self._samples[key] for key in keys[len(self._keys):]]))
            self._keys = keys
        x = np.array(self._rows)
        d = self._distances = _grown(self._distances, x, self._points.kinds)
        y = np.array(normal_scores([statistics.fmean(book[k]) for k in keys]))
        counts = np.array([float(len(book[k])) for k in keys])
        if self._hyper is None or len(book) >= REGRID_GROWTH * self._hyper_on:
            self._grid_row(d, y, counts, len(book))
            return None
        return fit(d, y, counts, [self._hyper]), d, keys

    def _window(self, book: dict[bytes, list[float]]) -> list[bytes]:
        """The keys of ``book`` the GP is fitted on: all of them, or, beyond
        ``max_points``, the best half by mean and the latest others (in book order), so
        a fit costs the same however many models a scheduler's rungs stopped."""
        keys = list(book)
        if len(keys) <= self.max_points:
            return keys
        best = set(sorted(keys, key=lambda k: statistics.fmean(book[k]),
                          reverse=True)[:self.max_points // 2])
        rest = [key for key in keys if key not in best][-(self.max_points - len(best)):]
        chosen = best.union(rest)
        return [key for key in keys if key in chosen]

    def _grid_row(self, d: Array, y: Array, counts: Array, size: int) -> None:
        """Fit the next length scale of the grid at every noise level; after the last,
        keep the best of the grid by marginal likelihood (the first on a tie), chosen
        on ``size`` results."""
        theta = THETAS[len(self._grid)]
        try:
            self._grid.append(fit(d, y, counts, [(theta, ratio) for ratio in NOISES]))
        except np.linalg.LinAlgError:  # none of this row factorised: leave it out
            self._grid.append(None)
        if len(self._grid) < len(THETAS):
            return
        fits = [row for row in self._grid if row is not None]
        self._grid = []
        if fits:
            best = max(fits, key=lambda row: row.log_likelihood)
            self._hyper, self._hyper_on = (best.theta, best.ratio), size
        elif self._hyper is None:
            raise np.linalg.LinAlgError("no kernel of the grid could be factorised")

    # --- proposing ---------------------------------------------------------------------

    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called when a worker is free: a re-evaluation, a random sample while fewer than
        ``n_initial`` are known, else the candidate with the best expected improvement
        (a random unseen sample when none is new); ``None`` when nothing unseen is left;
        ``NOT_YET`` after fitting one length scale of the hyper-parameter grid."""
        again = self._reevaluation()
        if again is not None:
            return again
        if self._sampler is None or self._sampler.leaves is not leaves:
            self._points, self._rows, self._distances = Points(leaves), [], np.zeros((0, 0))
            self._keys = []
            self._sampler = UnseenSampler(leaves, self.rng)
        known = len(self._books[self._fit_fidelity(self.n_initial)])
        if known + self.in_flight >= self.n_initial and known >= 2:
            pick = self._pick(leaves)
            if pick is not None:
                return pick
        return self._sampler.draw(self.is_new)

    def _pick(self, leaves: Leaves) -> Sample | NotYet | None:
        """The new candidate with the best expected improvement, the new samples in
        flight counted at their posterior mean (kriging believer); ``NOT_YET`` while
        the hyper-parameters are being chosen."""
        assert self._points is not None  # for mypy: propose set it up
        fitted_model = self._model()
        if fitted_model is None:
            return NOT_YET
        model, d, keys = fitted_model
        fitted = model.predict_mean(d)
        flying = self._flying(set(keys))
        if flying:
            model = self._believe(model, d, flying)
        order = np.argsort(-fitted, kind="stable")
        parents = [self._samples[keys[i]] for i in order[:self.parents]]
        candidates = list(self._candidates(parents, leaves))
        points = self._points.encode(candidates)
        x = np.array(self._rows)
        if flying:
            x = np.concatenate([x, self._points.encode(flying)])
        mean, std = model.predict(distances(points, x, self._points.kinds))
        scores = expected_improvement(mean, std, float(fitted.max()))
        for index in map(int, np.argsort(-scores, kind="stable")):
            if self.is_new(candidates[index]):
                return candidates[index]
        return None

    def _flying(self, known: set[bytes]) -> list[Sample]:
        """The samples in flight that are not among ``known``, the GP's (re-evaluations
        are)."""
        flying: dict[bytes, Sample] = {}
        for handle in self._pending:
            sample = handle.model.sample or {}
            key = sample_key(sample)
            if key not in known:
                flying.setdefault(key, dict(sample))
        return list(flying.values())

    def _believe(self, model: Fit, d: Array, flying: list[Sample]) -> Fit:
        """``model`` refitted (same hyper-parameters) with each of ``flying`` at its mean."""
        assert self._points is not None  # for mypy: propose set it up
        x, z = np.array(self._rows), self._points.encode(flying)
        cross = distances(z, x, self._points.kinds)
        believed = model.predict_mean(cross)
        full = np.block([[d, cross.T], [cross, distances(z, z, self._points.kinds)]])
        y = np.concatenate([model.y, believed])
        counts = np.concatenate([model.counts, np.ones(len(flying))])
        return Fit(full, y, counts, model.theta, model.ratio)

    def _candidates(self, parents: list[Sample], leaves: Leaves) -> Iterator[Sample]:
        """Neighbours of ``parents``, two-label mutations of the first, random samples."""
        filled = [{label: parent[label] if label in parent else leaf.random_value(self.rng)
                   for label, leaf in leaves.items()} for parent in parents]
        for parent in filled:  # a conditional sample may lack labels: filled above
            for label, leaf in leaves.items():
                for value in self._moves(leaf, parent[label]):
                    yield {**parent, label: value}
        yield from self._doubles(filled[0], leaves)
        for _ in range(self.random_candidates):
            yield random_sample(leaves, self.rng)

    def _doubles(self, parent: Sample, leaves: Leaves) -> Iterator[Sample]:
        """Every two-label mutation of ``parent``, or ``double_mutations`` drawn of them."""
        moves = {label: self._moves(leaf, parent[label]) for label, leaf in leaves.items()}
        pairs = [(a, b) for a, b in itertools.combinations(moves, 2) if moves[a] and moves[b]]
        if sum(len(moves[a]) * len(moves[b]) for a, b in pairs) <= self.double_mutations:
            for a, b in pairs:
                for u, v in itertools.product(moves[a], moves[b]):
                    yield {**parent, a: u, b: v}
            return
        for _ in range(self.double_mutations if pairs else 0):
            a, b = self.rng.choice(pairs)
            yield {**parent, a: self.rng.choice(moves[a]), b: self.rng.choice(moves[b])}

    def __repr__(self) -> str:
        return (f"BayesOpt(n_initial={self.n_initial}, parents={self.parents}, "
                f"double_mutations={self.double_mutations}, "
                f"random_candidates={self.random_candidates}, "
                f"max_points={self.max_points}, reevaluate={self.reevaluate!r}, "
                f"seed={self.seed!r}, "
                f"max_trials={self.max_trials!r}, mode={self.mode!r}, "
                f"deterministic={self.deterministic})")


def _grown(d: Array, x: Array, kinds: list[int]) -> Array:
    """``d``, the distances between the first rows of ``x``, extended to all of them."""
    old = d.shape[0]
    if old == len(x):
        return d
    new = distances(x[old:], x, kinds)
    return np.block([[d, new[:, :old].T], [new]])

