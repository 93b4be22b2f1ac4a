"""A model-based strategy for small budgets: local search around the best samples, each
step picked by a surrogate of the metric, asynchronous and noise-aware.

Each time a worker is free, :class:`ModelBased`:

1. trains the best sample again, when :class:`~strategies.evolution.Reevaluation` says so
   (noisy training: a sample is ranked by the mean of its results);
2. while fewer than ``n_initial`` samples are trained or in flight, proposes uniform
   random samples;
3. otherwise makes candidates: every one-label neighbour of the ``parents`` best samples
   (by mean metric; a Numerical label moves by a few Gaussian steps of its range, on the
   log scale where it has one, then is quantized), a few two-label mutations of each,
   and ``random_candidates`` uniform samples; drops those ever submitted; scores the
   rest with the surrogate and proposes the best by ``predicted + beta * spread *
   novelty`` (an upper confidence bound whose uncertainty is how few results share the
   candidate's values and pairs of values);
4. with ``restart`` (the default), searches as iterated local search does: the parent is
   the *centre*, the best sample trained since the last restart. Once every one-label
   neighbour of the centre is trained and none did better (a local optimum of the
   results; or once the centre stayed the same for twice as many results as it has
   neighbours), the centre is remembered as an optimum and the search restarts: the
   next proposal is the surrogate's pick of ``restart_pool`` random samples, and from
   then on no candidate within ``tabu`` labels of a remembered optimum is proposed
   while any other is left (1, the default, only matters where a label has more values
   than are tried: its one-label neighbours are all trained). The best sample overall
   (by mean) stays the one re-evaluated and ranked first; its re-evaluations after a
   restart do not make it the centre again.

The surrogate (:mod:`strategies._surrogate`) is an additive model of shrunk main effects
plus shrunk pairwise interactions, kept as running sums, in pure Python: this module
needs no numpy (nor scipy). It is fitted on normal scores of the results' ranks, so a
few broken architectures far below the rest do not set every effect. Adding a result
and scoring a candidate cost the same at 300 results as at 30; the ranks are scored
again from scratch (``O(n)``) only when the results grew by a quarter, so a proposal
costs about a millisecond on NAS-Bench-201's 6 labels (benchmarks/search_quality.py
prints ``proposal_ms_at_300``) and runs on the event loop without blocking it for long.

Why restarts. Without them about a fifth of the searches on NAS-Bench-201 cifar10 spent
200 of 300 evaluations around one of a few architectures 0.46-0.50 points below the
optimum whose every one-label neighbour is worse: the surrogate, fitted mostly on that
neighbourhood, rates its labels best and keeps proposing its two-label mutations. Iterated
local search (Lourenco, Martin, Stutzle, "Iterated local search", 2003) leaves a local
optimum once it is one; White et al. (below) restart their local search from random
architectures the same way; and the tabu distance follows tabu search (Glover, "Tabu
search, part I", 1989), which forbids the moves back. The restart point is the random
sample the surrogate prefers of a few (16), so it is spread over the space.

Why this design. On cell spaces like NAS-Bench-201, local search from the incumbent is
as good as the best model-based methods at small budgets (White, Nolen, Ravi et al.,
"Local search is state of the art for NAS benchmarks", 2020), and BANANAS (White,
Neiswanger, Savani, "BANANAS: Bayesian optimization with neural architectures for neural
architecture search", AAAI 2021) found that the acquisition is best optimised by
mutating the best architectures rather than sampling the space. SMAC (Hutter, Hoos,
Leyton-Brown, 2011) does the same: a surrogate scores a local search around the
incumbents plus random points, interleaved for exploration. A GP or a network ensemble
would cost milliseconds per fit only with numpy and grows with the results; on one-hot
choices a shrunk main-effect plus pairwise model is what those models mostly learn, and
it models the choices jointly where TPE (Bergstra, Bardenet, Bengio, Kegl, "Algorithms
for hyper-parameter optimization", NeurIPS 2011) models each label on its own.

Fidelity. Under a scheduler the proposer observes models stopped or paused early; as
:class:`~strategies.bayes_opt.BayesOpt` does (BOHB's rule), the surrogate and the local
searches run on the results of the highest fidelity with at least ``n_initial``
samples, each model counted at every fidelity up to the one it reached with its value
there; when that fidelity moves up, they are rebuilt from its results.

Asynchrony. A proposal never repeats a sample submitted before, in flight included
(:meth:`~strategies.base.BaseStrategy.is_new`), and the models in flight enter the
surrogate with a constant liar (Ginsbourger, Le Riche, Carraro, "Kriging is
well-suited to parallelize optimization", 2010): the mean result so far, taken back
after the proposal. So four free workers get four different candidates, and the liars
pull the effects of the values being trained towards the mean, which spreads the next
proposals. A re-evaluation waits until its sample is no longer in flight.

Resume and reproducibility: every result, the journal's included, is observed once by
:meth:`~strategies.base.BaseStrategy.resume`; the surrogate is rebuilt from them alone,
and so are the restarts (the local searches are replayed over the results in their
order once the space is known, so a resumed search has the optima the first one had).
With one worker the same seed gives the same samples; with several, results arriving in
another order change later proposals unless ``deterministic=True`` (see
:class:`~strategies.base.BaseStrategy`). Failed, invalid and interrupted models never
enter the surrogate, and their samples are never proposed again.

The defaults were tuned on NAS-Bench-201 with ``reevaluate=Reevaluation()``
(benchmarks/search_quality.py, seeds 1000-1019, budgets 50 and 100, cifar10 and
cifar100; not on the reported seeds 0-49): one parent, 5 random samples first, and
interactions weighted as much as main effects did best of the few settings tried. The
restarts were tuned on seeds 1000-1029 (cifar10, budgets 50-300): restarting after a
fixed number of results without improvement (16 or 24) cost regret at 100
evaluations; restarting from 2-3 label perturbations of the best, or from the
surrogate's best of 256 random samples, did not escape; a tabu distance of 2 kept the
searches from optima two labels from a local one (imagenet at 300: regret 0.158
against 0.122 with 1); more parents (3) or more random candidates (200) were worse at
50 and 100; re-evaluating the best 3 instead of the best 1 helped cifar10 at 300 only.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterator
from typing import Any

from engine._checks import check_bool, check_count, check_positive
from engine.mutable import Categorical, Numerical, Sample
from engine.space import ExecutableModelSpace
from strategies._surrogate import (
    MAX_NEIGHBOURS,
    NUMERICAL_STEPS,
    Encoder,
    Surrogate,
    SurrogateStrategy,
    fidelity_value,
    normal_scores,
)
from strategies.base import Leaves, NotYet, sample_key
from strategies.evolution import Reevaluation
from strategies.random_search import UnseenSampler, random_sample

__all__ = ("MAX_NEIGHBOURS", "ModelBased")

#: The surrogate is refitted from scratch once the results grew by this factor.
REFIT_GROWTH = 1.25
#: Below this many results, every proposal refits (cheap, and ranks still move a lot).
REFIT_MIN = 40


class ModelBased(SurrogateStrategy):
    """Surrogate-guided local search (see the module docstring).

    ``n_initial`` random samples come first. Then ``parents`` best samples are each
    searched around (``double_mutations`` two-label mutations each besides their
    one-label neighbours) with ``random_candidates`` random samples, and the surrogate
    picks; ``beta`` weighs exploration (0: pure exploitation). ``restart`` leaves a
    local optimum for the surrogate's pick of ``restart_pool`` random samples and keeps
    later candidates more than ``tabu`` labels away from it. ``bins`` is how many
    parts a Numerical label's range is cut into for the surrogate. ``reevaluate``, a
    :class:`~strategies.evolution.Reevaluation`, trains the best samples again: pass
    one when training the same sample twice can give different metrics.
    ``deterministic`` and ``mode`` are as for :class:`~strategies.base.BaseStrategy`.
    """

    def __init__(
        self, *, n_initial: int = 5, parents: int = 1, double_mutations: int = 4,
        random_candidates: int = 16, beta: float = 0.1, bins: int = 8,
        restart: bool = True, restart_pool: int = 16, tabu: int = 1,
        reevaluate: Reevaluation | None = None,
        seed: int | None = None, max_trials: int | None = None, mode: str = "max",
        deterministic: bool = False,
    ) -> None:
        super().__init__(reevaluate=reevaluate, seed=seed, max_trials=max_trials,
                         mode=mode, deterministic=deterministic)
        for name, value, least in (("n_initial", n_initial, 1), ("parents", parents, 1),
                                   ("double_mutations", double_mutations, 0),
                                   ("random_candidates", random_candidates, 0),
                                   ("restart_pool", restart_pool, 1), ("tabu", tabu, 0),
                                   ("bins", bins, 1)):
            check_count(name, value, minimum=least)
        check_positive("beta", beta, zero=True)
        check_bool("restart", restart)
        self.n_initial, self.parents = n_initial, parents
        self.double_mutations, self.random_candidates = double_mutations, random_candidates
        self.beta, self.bins = float(beta), bins
        # every model booked at the fitted fidelity (see _fit_fidelity)
        self._results: list[tuple[dict[str, Any], float]] = []
        self._level = math.inf
        self._encoder: Encoder | None = None
        self._tokens: list[tuple[int, ...]] = []  # of each result, for _encoder
        self._ranked: list[float] = []  # the results' values, sorted
        self._fitted_on = 0  # results at the last refit
        self._surrogate: Surrogate | None = None
        self._sampler: UnseenSampler | None = None
        self.restart, self.restart_pool, self.tabu = restart, restart_pool, tabu
        self._keys: list[bytes] = []  # of each result
        self._neighbourhood: int | None = None  # one-label neighbours of a sample
        self._advanced = 0  # results the epochs account for
        self._running: dict[bytes, tuple[float, int]] = {}  # sum and count, so far
        # samples trained since the last restart, in order (a set's order would change
        # with the hash seed, and ties of means would pick another centre per process)
        self._epoch: dict[bytes, None] = {}
        self._center: bytes | None = None  # the best of them: the local search's parent
        self._stall = 0  # results since the centre last changed
        self._optima: list[dict[str, Any]] = []  # the centres of the finished epochs

    # --- learning ----------------------------------------------------------------------

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once per finished model (the journal's at resume, then in completion
        order). A trained one adds its metric to its sample's mean and to the surrogate;
        any other marks its sample failed (never re-evaluated)."""
        booked = self._record(model)
        if booked is None:
            return
        level = self._fit_fidelity(self.n_initial)
        if level != self._level:  # the surrogate moves up a fidelity: its results anew
            self._level = level
            self._rebook()
            return
        key, reached, curve = self._curves[-1]
        value = fidelity_value(reached, curve, level)
        if value is not None:
            self._results.append((self._samples[key], value))
            self._keys.append(key)
            self._advance()

    def _rebook(self) -> None:
        """The results at the fitted fidelity, their surrogate and local searches anew."""
        ordered = self._results_in_order(self._level)
        self._results = [(self._samples[key], value) for key, value in ordered]
        self._keys = [key for key, _ in ordered]
        self._tokens, self._surrogate, self._fitted_on = [], None, 0
        self._advanced, self._epoch, self._center, self._stall = 0, {}, None, 0
        self._running, self._optima = {}, []
        self._advance()

    def _advance(self) -> None:
        """Brings the epochs up to date with the results (once the space is known)."""
        size = self._neighbourhood
        while size is not None and self._advanced < len(self._results):
            index = self._advanced
            self._advanced += 1
            key = self._keys[index]
            total, count = self._running.get(key, (0.0, 0))
            self._running[key] = (total + self._results[index][1], count + 1)
            if count and key not in self._epoch:  # a re-evaluation of an older sample
                continue
            self._epoch[key] = None
            center = max(self._epoch, key=lambda k: self._running[k][0] / self._running[k][1])
            if center != self._center:
                self._center, self._stall = center, 0
            else:
                self._stall += 1
            if self.restart and (self._stall >= 2 * size or (
                    self._stall > 0 and self._neighbours_known(center, index) >= size)):
                self._optima.append(self._samples[center])
                self._epoch, self._center, self._stall = {}, None, 0

    def _neighbours_known(self, center: bytes, index: int) -> int:
        """How many one-label neighbours of ``center`` are among the first ``index + 1``
        results."""
        middle = self._samples[center]
        count = 0
        for key in set(self._keys[:index + 1]):
            other = self._samples[key]
            if other.keys() == middle.keys() and sum(
                    other[label] != middle[label] for label in middle) == 1:
                count += 1
        return count

    @property
    def optima(self) -> list[Sample]:
        """The centres of the local searches the strategy restarted from, oldest first:
        samples none of whose one-label neighbours did better (copies)."""
        return [dict(sample) for sample in self._optima]

    def _setup(self, leaves: Leaves) -> None:
        """The encoder and sampler for ``leaves``; the surrogate is fitted on first need."""
        self._encoder = Encoder(leaves, self.bins)
        self._tokens = [self._encoder.tokens(sample) for sample, _ in self._results]
        self._surrogate = None
        self._fitted_on = 0
        self._sampler = UnseenSampler(leaves, self.rng)
        self._neighbourhood = sum(
            min(len(leaf.values) - 1, MAX_NEIGHBOURS) if isinstance(leaf, Categorical)
            else len(NUMERICAL_STEPS) if isinstance(leaf, Numerical) else 1
            for leaf in leaves.values())
        self._advanced, self._epoch, self._center, self._stall = 0, {}, None, 0
        self._running = {}
        self._optima = []
        self._advance()

    def _fitted(self) -> Surrogate | None:
        """The surrogate of every result so far.

        It is fitted on normal scores of the results' ranks, not on the metrics: NAS
        metrics are skewed (a few broken architectures far below the rest), and ranks
        keep those from setting every effect (as TPE's split into good and bad does).
        A new result enters with the score of its rank among the results then; all are
        scored again (a refit, ``O(n)``) once the results grew by a quarter since the
        last refit, so a proposal costs ``O(1)`` amortized."""
        encoder = self._encoder
        if encoder is None:
            return None
        while len(self._tokens) < len(self._results):
            self._tokens.append(encoder.tokens(self._results[len(self._tokens)][0]))
        values = [y for _, y in self._results]
        if self._surrogate is None or len(values) < REFIT_MIN or (
                len(values) >= REFIT_GROWTH * self._fitted_on):
            self._surrogate = Surrogate(len(encoder.labels))
            for tokens, score in zip(self._tokens, normal_scores(values), strict=True):
                self._surrogate.add(tokens, score)
            self._ranked = sorted(values)
            self._fitted_on = len(values)
            return self._surrogate
        for index in range(int(self._surrogate.count), len(values)):
            bisect.insort(self._ranked, values[index])
            rank = (bisect.bisect_left(self._ranked, values[index])
                    + bisect.bisect_right(self._ranked, values[index]) - 1) / 2
            score = statistics.NormalDist().inv_cdf((rank + 0.5) / len(self._ranked))
            self._surrogate.add(self._tokens[index], score)
        return self._surrogate

    # --- proposing ---------------------------------------------------------------------

    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called when a worker is free: a re-evaluation, a random sample while fewer than
        ``n_initial`` are known, else the surrogate's pick among the candidates (a random
        unseen sample when none is new); ``None`` when nothing unseen is left."""
        again = self._reevaluation()
        if again is not None:
            return again
        if self._sampler is None or self._sampler.leaves is not leaves:
            self._setup(leaves)
        assert self._sampler is not None  # for mypy: _setup made it
        book = self._books[self._level]
        if len(book) + self.in_flight >= self.n_initial and book:
            pick = self._pick(leaves)
            if pick is not None:
                return pick
        return self._sampler.draw(self.is_new)

    def _pick(self, leaves: Leaves) -> Sample | None:
        """The candidate with the best acquisition, the models in flight counted as liars."""
        encoder, surrogate = self._encoder, self._fitted()
        if encoder is None or surrogate is None:
            return None
        seen: set[bytes] = set()
        candidates = []
        for candidate in self._candidates(leaves):
            key = sample_key(candidate)
            if key not in seen and self.is_new(candidate):
                seen.add(key)
                candidates.append(candidate)
        if self.tabu and self._optima:
            assert encoder is not None
            optima = [encoder.tokens(o) for o in self._optima]
            far = [c for c in candidates if all(
                sum(a != b for a, b in zip(encoder.tokens(c), o, strict=True)) > self.tabu
                for o in optima)]
            candidates = far or candidates
        if not candidates:
            return None
        liar = surrogate.mean
        flying = [encoder.tokens(h.model.sample or {}) for h in self._pending]
        for tokens in flying:
            surrogate.add(tokens, liar)
        try:
            bonus = self.beta * surrogate.spread
            scores = []
            for candidate in candidates:
                predicted, novelty = surrogate.predict(encoder.tokens(candidate))
                scores.append(predicted + bonus * novelty)
        finally:
            for tokens in flying:
                surrogate.add(tokens, liar, -1.0)
        return candidates[max(range(len(scores)), key=scores.__getitem__)]

    def _candidates(self, leaves: Leaves) -> Iterator[Sample]:
        """Neighbours and two-label mutations of the best samples, then random samples."""
        book = self._books[self._level]
        ranked = sorted(book, key=lambda k: statistics.fmean(book[k]), reverse=True)
        if self.restart:
            if self._center is None:  # a restart: the surrogate's pick of many
                for _ in range(self.restart_pool):
                    yield random_sample(leaves, self.rng)
                return
            ranked = [self._center] + [k for k in ranked if k != self._center]
        for key in ranked[:self.parents]:
            known = self._samples[key]  # a conditional sample may lack labels: fill them
            parent = {label: known[label] if label in known else leaf.random_value(self.rng)
                      for label, leaf in leaves.items()}
            yield from self._neighbours(parent, leaves)
            for _ in range(self.double_mutations):
                yield self._mutation(parent, leaves, 2)
        for _ in range(self.random_candidates):
            yield random_sample(leaves, self.rng)

    def _neighbours(self, parent: Sample, leaves: Leaves) -> Iterator[Sample]:
        for label, leaf in leaves.items():
            for value in self._moves(leaf, parent[label]):
                yield {**parent, label: value}

    def _mutation(self, parent: Sample, leaves: Leaves, changes: int) -> Sample:
        child = dict(parent)
        for label in self.rng.sample(list(leaves), min(changes, len(leaves))):
            moves = self._moves(leaves[label], child[label])
            if moves:
                child[label] = self.rng.choice(moves)
        return child

    def __repr__(self) -> str:
        return (f"ModelBased(n_initial={self.n_initial}, parents={self.parents}, "
                f"double_mutations={self.double_mutations}, "
                f"random_candidates={self.random_candidates}, beta={self.beta}, "
                f"restart={self.restart}, restart_pool={self.restart_pool}, "
                f"tabu={self.tabu}, bins={self.bins}, reevaluate={self.reevaluate!r}, "
                f"seed={self.seed!r}, "
                f"max_trials={self.max_trials!r}, mode={self.mode!r}, "
                f"deterministic={self.deterministic})")
