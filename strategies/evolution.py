"""Regularized (aging) evolution, Real et al. 2019, asynchronous, for noisy training too.

A child is proposed the moment a worker is free, so no worker waits for a generation:

- while the population (plus the models in flight) is smaller than ``population_size``,
  propose uniform random samples;
- otherwise pick ``sample_size`` members at random, take the best of them as the parent
  and propose a mutation of it;
- a sample's first trained model makes it the youngest member of the population, and the
  oldest member leaves once the population is over ``population_size`` (aging, not the
  worst).

A member's metric is the mean over the trained models of its sample at the highest
fidelity it reached: when a sample is trained again (a re-evaluation, or a repeated child
without ``deduplicate``) its mean is updated wherever it stands, its age is kept, and it
never joins twice; once aged out it stays out. Tournaments and the re-evaluation
standings compare members as :func:`strategies.rank` ranks samples: highest fidelity
first, then the best mean. Fidelity matters under a scheduler (``ASHA(proposer=...)``),
whose proposer hears models stopped or paused early (:func:`strategies.base.fidelity`:
``metrics.stopped_at``, ``math.inf`` for a model trained to its end): a value after one
epoch never outranks one after a full training. Without a scheduler every model is at
full fidelity and members compare by their means alone.

With ``reevaluate`` (a :class:`Reevaluation`) the strategy spends a bounded share of the
budget training the best samples again, so that its best, and :func:`strategies.rank`'s,
rest on the mean of several trainings rather than on one lucky value. Re-evaluations are
asynchronous like children: one is proposed instead of a child when a worker is free.
Leave the engine's own ``deduplicate`` off, or it marks every re-evaluation invalid.

Failed, invalid and interrupted models count against the budget like any other, do not
join the population (so random samples refill it while it is short), and their samples
are never proposed again, as child or re-evaluation. A NaN metric counts as failed.

On resume the journal's models rebuild everything from the data alone: each sample's
metrics and mean, the share used by re-evaluations (the models whose sample was known
before), the history and the population (in the order the models are found). The random
stream starts again from ``seed``, so later children need not be the ones an
uninterrupted run would make.

With ``deduplicate`` (the default) no child repeats a sample that was ever submitted.
Without it a child may repeat a trained sample, as in the original algorithm.

Reproducibility: each child comes from the population at the moment a worker frees, so
with several workers the same seed can give other children when models finish in
another order (with one worker it cannot). ``deterministic=True`` makes the run
reproducible at some cost in idle time: see :class:`~strategies.base.BaseStrategy`.
"""

from __future__ import annotations

import bisect
import collections
import math
import random
import statistics
from typing import Any

import msgspec

from engine._checks import check_count
from engine._objective import is_score
from engine.mutable import Categorical, LabeledMutable, Sample
from engine.space import ExecutableModelSpace, ModelStatus
from strategies.base import BaseStrategy, Leaves, NotYet, fidelity
from strategies.random_search import UnseenSampler

__all__ = ("Individual", "Reevaluation", "RegularizedEvolution", "default_sample_size", "mutate")

#: Mutations tried (each from a fresh tournament) before falling back to a random sample.
MAX_MUTATIONS = 100


class Individual(msgspec.Struct, frozen=True, kw_only=True):
    """A trained sample as evolution remembers it. In the population ``metric`` is the mean
    over its ``evaluations`` trained models at ``fidelity``, the highest fidelity any of
    its models reached (:func:`strategies.base.fidelity`: ``math.inf`` when trained to
    the end); in the history, one model's own metric and fidelity."""

    sample: dict[str, Any]
    metric: float
    evaluations: int = 1
    fidelity: float = math.inf


class Reevaluation(msgspec.Struct, frozen=True, kw_only=True):
    """When :class:`RegularizedEvolution` trains a sample it trained before again.

    Each time a worker is free, before a child is proposed: of the ``top_k`` samples
    first in the standings (the highest fidelity reached, then the best mean there, as
    :func:`strategies.rank` orders them), the best one that never failed and has fewer
    than ``evaluations`` trained models at its highest fidelity (its models in flight
    included) is proposed again, provided the models of repeated samples would stay
    within ``share`` of all the models the strategy knows of. So each new leader is
    trained again until it has ``evaluations`` results or a better-evidenced sample
    overtakes it, and the final best is the best mean of several trainings, not one
    lucky value. When training is deterministic this is waste: pass ``reevaluate=None``.

    The defaults did best of those tried on NAS-Bench-201 at 300 evaluations
    (benchmarks/search_quality.py, tuned on seeds 1000-1119, not on the reported 0-19).
    """

    top_k: int = 1
    evaluations: int = 8
    share: float = 0.1

    def __post_init__(self) -> None:
        for name in ("top_k", "evaluations"):
            check_count(f"Reevaluation.{name}", getattr(self, name))
        if not 0 < self.share < 1:
            raise ValueError(f"Reevaluation.share must be in (0, 1) (the part of the budget "
                             f"re-evaluations may use), got {self.share!r}")


class _Standings:
    """Every trained sample's fidelity and mean metric there, kept sorted best first:
    highest fidelity first, then best mean (ties: first trained first)."""

    def __init__(self, sign: float) -> None:
        self._sign = sign
        self._order: list[tuple[float, float, int, bytes]] = []
        self._entries: dict[bytes, tuple[float, float, int, bytes]] = {}

    def update(self, key: bytes, fidelity: float, mean: float) -> None:
        old = self._entries.get(key)
        if old is not None:
            del self._order[bisect.bisect_left(self._order, old)]
        entry = (-fidelity, self._sign * mean, len(self._entries) if old is None else old[2],
                 key)
        bisect.insort(self._order, entry)
        self._entries[key] = entry

    def top(self, k: int) -> list[bytes]:
        return [key for _, _, _, key in self._order[:k]]


def _other_value(leaf: LabeledMutable, current: Any, rng: random.Random) -> Any:
    """A value of ``leaf`` other than ``current`` (``current`` when it has no other)."""
    if isinstance(leaf, Categorical):
        if leaf.weights is not None:  # the prior, among the other values it allows
            pairs = [(v, w) for v, w in zip(leaf.values, leaf.weights, strict=True)
                     if v != current and w > 0]
            if pairs:
                return rng.choices([v for v, _ in pairs], [w for _, w in pairs])[0]
        others = [v for v in leaf.values if v != current]
        return rng.choice(others) if others else current
    for _ in range(10):
        value = leaf.random_value(rng)
        if value != current:
            return value
    return current


def _can_change(leaf: LabeledMutable) -> bool:
    return not isinstance(leaf, Categorical) or len(leaf.values) > 1


def mutate(parent: Sample, leaves: Leaves, rng: random.Random,
           mutation_prob: float | None = None) -> Sample:
    """A child of ``parent``. With ``mutation_prob`` ``None`` exactly one label (drawn
    uniformly) takes another value; otherwise each label does with that probability,
    and one label is forced when none was drawn.

    Only labels ``parent`` holds are mutated: a model's sample is canonical (the labels
    its network leaves unused are dropped), so changing one of its labels changes the
    network. The labels it lacks are drawn at random first, so that a change that uses
    them (a deeper Repeat, another candidate) finds values there."""
    child = dict(parent)
    for label, leaf in leaves.items():
        if label not in child:
            child[label] = leaf.random_value(rng)
    labels = [label for label, leaf in leaves.items() if label in parent and _can_change(leaf)]
    if not labels:
        return child
    chosen = ([] if mutation_prob is None
              else [label for label in labels if rng.random() < mutation_prob])
    for label in chosen or [rng.choice(labels)]:
        child[label] = _other_value(leaves[label], child[label], rng)
    return child


class RegularizedEvolution(BaseStrategy):
    """Aging evolution (see the module docstring).

    ``population_size`` members are kept; ``sample_size`` of them compete to be each
    child's parent. ``sample_size=None`` (the default) takes a third of the population,
    at least 2 (1 for a population of 1): the tournament's share of the population sets
    the selection pressure, so a third keeps the same pressure at every size (Real et
    al. used a quarter, 25 of 100). The defaults, 30 and so 10, did best of the sizes
    tried on NAS-Bench-201 with 300 evaluations (benchmarks/search_quality.py); a much
    smaller budget favours a smaller population. An explicit ``sample_size`` larger
    than the population, or not a positive int, is refused.

    ``mutation_prob`` ``None`` mutates exactly one label per child; a number in (0, 1]
    mutates each label with that probability. ``mode`` says whether a
    bigger metric is better. ``deduplicate`` keeps every child new. ``reevaluate``, a
    :class:`Reevaluation`, trains the best samples again: pass ``Reevaluation()`` when
    training the same sample twice can give different metrics (the default ``None``
    never re-evaluates). ``deterministic=True`` gives the same children for the same seed
    whatever order models finish in (see the module docstring).
    """

    def __init__(
        self, population_size: int = 30, sample_size: int | None = None, *,
        mutation_prob: float | None = None, deduplicate: bool = True,
        reevaluate: Reevaluation | None = None,
        seed: int | None = None, max_trials: int | None = None, mode: str = "max",
        deterministic: bool = False,
    ) -> None:
        super().__init__(seed=seed, max_trials=max_trials, mode=mode,
                         deterministic=deterministic)
        sample_size = _check_sizes(population_size, sample_size)
        if mutation_prob is not None and not 0 < mutation_prob <= 1:
            raise ValueError(f"mutation_prob must be in (0, 1] or None (mutate one label), "
                             f"got {mutation_prob!r}")
        if reevaluate is not None and not isinstance(reevaluate, Reevaluation):
            raise TypeError(f"reevaluate must be a Reevaluation or None, got "
                            f"{type(reevaluate).__name__}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.mutation_prob = mutation_prob
        self.deduplicate = deduplicate
        self.reevaluate = reevaluate
        self.population: collections.deque[Individual] = collections.deque()
        self.history: list[Individual] = []
        self._member_keys: collections.deque[bytes] = collections.deque()  # population's
        # (fidelity, metric) of each trained model of a sample, in the order they finished
        self._results: dict[bytes, list[tuple[float, float]]] = {}
        self._records: dict[bytes, Individual] = {}  # each trained sample as it stands
        self._standings = _Standings(-1.0 if self.mode == "max" else 1.0)
        self._failed: set[bytes] = set()
        self._sampler: UnseenSampler | None = None

    def metrics_of(self, sample: Sample) -> list[float]:
        """The metric of each trained model of ``sample``, in the order they finished,
        whatever fidelity each reached (:attr:`history` has each one's)."""
        return [metric for _, metric in self._results.get(self.key_of(sample), ())]

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once per finished model (the journal's at resume, then in completion
        order). A trained one adds its metric, at the fidelity it reached, to its sample's
        record: a sample trained for the first time joins the population as its youngest
        member (the oldest leaves when it is full); one already there keeps its place with
        the new mean at its highest fidelity. Any other model marks its sample as failed:
        it is never proposed again."""
        metric, key = model.metric, self.key_of(model.sample or {})
        if model.status is not ModelStatus.Trained or not is_score(metric):  # dicts too
            self._failed.add(key)
            return
        sample = dict(model.sample or {})
        reached = fidelity(model)
        self.history.append(Individual(sample=sample, metric=float(metric), fidelity=reached))
        new = key not in self._results
        results = self._results.setdefault(key, [])
        results.append((reached, float(metric)))
        top = max(f for f, _ in results)
        at_top = [m for f, m in results if f == top]
        member = Individual(sample=sample if new else self._records[key].sample,
                            metric=statistics.fmean(at_top), evaluations=len(at_top),
                            fidelity=top)
        self._records[key] = member
        self._standings.update(key, member.fidelity, member.metric)
        self._join(key, member, new)

    def _join(self, key: bytes, member: Individual, new: bool) -> None:
        """Put ``member`` in the population: in its sample's place when it is there, as the
        youngest when it is ``new``; a sample that aged out stays out."""
        if not new:
            if key in self._member_keys:
                self.population[self._member_keys.index(key)] = member
            return
        self.population.append(member)
        self._member_keys.append(key)
        if len(self.population) > self.population_size:
            self.population.popleft()
            self._member_keys.popleft()

    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called when a worker is free: a sample to train again (see
        :class:`Reevaluation`); else a random sample while the population is short, else an
        unseen mutation of a tournament winner; ``None`` when nothing unseen is left;
        ``NOT_YET`` when a nearly used-up space needs another call (see
        :class:`~strategies.random_search.UnseenSampler`)."""
        again = self._reevaluation()
        if again is not None:
            return again
        if self.population and len(self.population) + self.in_flight >= self.population_size:
            for _ in range(MAX_MUTATIONS):
                child = mutate(self.tournament().sample, leaves, self.rng, self.mutation_prob)
                if self._allowed(child):
                    return child
        if self._sampler is None or self._sampler.leaves is not leaves:
            self._sampler = UnseenSampler(leaves, self.rng)
        return self._sampler.draw(self._allowed)

    def _reevaluation(self) -> Sample | None:
        """The sample :attr:`reevaluate` trains again now, or ``None``."""
        policy = self.reevaluate
        if policy is None:
            return None
        repeats = self.model_count - self.seen_count  # models of samples known before
        if repeats + 1 > policy.share * (self.model_count + 1):
            return None
        flying = self.in_flight_counts()
        for key in self._standings.top(policy.top_k):
            record = self._records[key]  # evaluations: its results at its top fidelity
            if key not in self._failed and record.evaluations + flying[key] < policy.evaluations:
                return dict(record.sample)
        return None

    def _allowed(self, sample: Sample) -> bool:
        """Whether ``sample`` may be proposed: new, or (without ``deduplicate``) not failed."""
        if self.deduplicate:
            return self.is_new(sample)
        return self.key_of(sample) not in self._failed

    def tournament(self) -> Individual:
        """The best of ``sample_size`` members drawn without replacement: the highest
        fidelity, then the best mean there (the first drawn wins a tie)."""
        size = min(self.sample_size, len(self.population))
        best: Individual | None = None
        for member in self.rng.sample(list(self.population), size):
            if best is None or member.fidelity > best.fidelity or (
                    member.fidelity == best.fidelity
                    and self.better(member.metric, best.metric)):
                best = member
        if best is None:
            raise RuntimeError("tournament() needs a non-empty population")
        return best

    def __repr__(self) -> str:
        return (f"RegularizedEvolution(population_size={self.population_size}, "
                f"sample_size={self.sample_size}, mutation_prob={self.mutation_prob!r}, "
                f"deduplicate={self.deduplicate}, reevaluate={self.reevaluate!r}, "
                f"seed={self.seed!r}, max_trials={self.max_trials!r}, mode={self.mode!r}, "
                f"deterministic={self.deterministic})")


def default_sample_size(population_size: int) -> int:
    """A third of ``population_size``, at least 2, at most ``population_size``."""
    return min(population_size, max(2, population_size // 3))


def _check_sizes(population_size: int, sample_size: int | None) -> int:
    """The sample size to use (see :class:`RegularizedEvolution`); ValueError when a size
    is not a positive int or ``sample_size`` exceeds the population."""
    check_count("population_size", population_size)
    if sample_size is None:
        return default_sample_size(population_size)
    check_count("sample_size", sample_size, meaning="or None: a third of the population")
    if sample_size > population_size:
        raise ValueError(f"sample_size ({sample_size}) must not exceed population_size "
                         f"({population_size}); leave it out to take a third of the "
                         f"population")
    return sample_size
