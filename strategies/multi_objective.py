"""Multi-objective search: regularized evolution with NSGA-II's selection, and random
search, both keeping the Pareto front of what they saw.

Each finished model is read as a point: :func:`engine.pareto.objective_vector` of its
``metrics.final`` (a dict, by objective name) for the strategy's ``objectives``. A model
that did not train, or whose point has a NaN or infinite value, counts as failed: its
sample is never proposed again. A sample trained more than once is the mean of its
points.

:class:`MultiObjectiveEvolution` is :class:`~strategies.evolution.RegularizedEvolution`
(Real et al. 2019: aging population, tournament, one mutation per child) with the
tournament decided as NSGA-II (Deb et al. 2002) ranks: the member on the better
non-dominated front of the population wins, and on the same front the one in the less
crowded region (larger crowding distance), so the population spreads along the front
instead of collapsing onto one objective. (Syne Tune's
``MultiObjectiveRegularizedEvolution`` likewise scores members by non-dominated sorting
by default; the crowding tie-break is NSGA-II's.) Aging, not elitism, removes members:
the oldest leaves, whatever its rank. The defaults (30 members, tournaments of 10) did
best of the sizes tried on NAS-Bench-201 (benchmarks/multi_objective.py, seeds
1000-1004; the reported seeds 0-19 were not used to choose).

Both strategies declare their objectives to the engine (``engine.set_objectives``), so
the run file, the CLI and the results rank by the same Pareto definition; and both
rebuild their whole state from the engine's models at resume (the journal's, in the
order found), so a resumed run continues with the same population and front.
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Sequence

from engine._objective import Objective
from engine.mutable import Sample
from engine.pareto import crowding_distance, modes_of, non_dominated, non_dominated_sort
from engine.pareto import objective_vector as objective_vector
from engine.space import ExecutableModelSpace, ModelStatus
from strategies.base import BaseStrategy, EngineLike, Leaves, NotYet
from strategies.evolution import MAX_MUTATIONS, _check_sizes, mutate
from strategies.random_search import RandomSearch, UnseenSampler

__all__ = ("MultiObjectiveEvolution", "MultiObjectiveRandomSearch", "ParetoArchive",
           "check_objectives")

Vector = tuple[float, ...]


def check_objectives(objectives: Sequence[Objective]) -> tuple[Objective, ...]:
    """``objectives`` as a tuple: at least one, each an :class:`~engine.Objective`, names
    distinct; ValueError / TypeError naming what was wrong otherwise."""
    checked = tuple(objectives)
    if not checked:
        raise ValueError("objectives must name at least one Objective(name=..., mode=...)")
    for item in checked:
        if not isinstance(item, Objective):
            raise TypeError(f"objectives must be Objective(name=..., mode=...) items, got "
                            f"{item!r}")
    names = [o.name for o in checked]
    if len(set(names)) != len(names):
        raise ValueError(f"objective names must be distinct, got {names}")
    return checked


class ParetoArchive:
    """Every trained sample's point (the mean of its models' points), in the order first
    trained, and the samples whose models failed. :meth:`record` is the only writer."""

    def __init__(self, objectives: Sequence[Objective]) -> None:
        self.objectives = check_objectives(objectives)
        self.modes = modes_of(self.objectives)
        self.samples: dict[bytes, Sample] = {}
        self.points: dict[bytes, list[Vector]] = {}
        self.failed: set[bytes] = set()

    def record(self, key: bytes, model: ExecutableModelSpace) -> Vector | None:
        """Add ``model`` (of the sample whose key is ``key``); its sample's mean point,
        or ``None`` when it failed (did not train, or has no finite point). A dict
        lacking an objective raises ValueError (see :func:`objective_vector`)."""
        point = None
        if model.status is ModelStatus.Trained:
            point = objective_vector(model.metrics.final, self.objectives)
        if point is None:
            self.failed.add(key)
            return None
        self.samples.setdefault(key, dict(model.sample or {}))
        self.points.setdefault(key, []).append(point)
        return self.mean(key)

    def mean(self, key: bytes) -> Vector:
        """The mean point of the sample with ``key`` (it must have trained)."""
        return tuple(statistics.fmean(column) for column in zip(*self.points[key], strict=True))

    def front(self) -> list[tuple[Sample, Vector]]:
        """The non-dominated trained samples with their mean points, in the order first
        trained."""
        keys = list(self.points)
        means = [self.mean(key) for key in keys]
        return [(dict(self.samples[keys[i]]), means[i]) for i in non_dominated(means, self.modes)]


class _MultiObjective(BaseStrategy):
    """What both strategies share: the objectives, their declaration, the archive."""

    archive: ParetoArchive

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return self.archive.objectives

    def declare_objectives(self, engine: EngineLike) -> None:
        """Called at the start of :meth:`run`: the engine's objectives become these.
        TypeError for an engine that takes a single objective only."""
        declare = getattr(engine, "set_objectives", None)
        if not callable(declare):
            raise TypeError(f"{type(self).__name__} needs an engine with set_objectives() "
                            f"(several objectives); {type(engine).__name__} has none")
        declare(list(self.objectives))

    def front(self) -> list[tuple[Sample, Vector]]:
        """The Pareto front of the trained samples seen so far: (sample, mean point)."""
        return self.archive.front()


class MultiObjectiveRandomSearch(RandomSearch, _MultiObjective):
    """Uniform random samples, as :class:`~strategies.RandomSearch` (never repeated with
    ``deduplicate``), recording every result so :meth:`front` is the Pareto front of
    what it found. Its samples depend only on ``seed`` and the space."""

    def __init__(self, objectives: Sequence[Objective], seed: int | None = None, *,
                 deduplicate: bool = True, max_trials: int | None = None,
                 deterministic: bool = False) -> None:
        super().__init__(seed, deduplicate=deduplicate, max_trials=max_trials,
                         deterministic=deterministic)
        self.archive = ParetoArchive(objectives)

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once per finished model: its point joins the archive."""
        self.archive.record(self.key_of(model.sample or {}), model)

    def __repr__(self) -> str:
        return (f"MultiObjectiveRandomSearch(objectives={list(self.objectives)!r}, "
                f"seed={self.seed!r}, deduplicate={self.deduplicate}, "
                f"max_trials={self.max_trials!r}, deterministic={self.deterministic})")


class MultiObjectiveEvolution(_MultiObjective):
    """Regularized evolution ranked by NSGA-II (see the module docstring).

    ``population_size`` members are kept (the oldest leaves); ``sample_size`` of them
    (default: a third, at least 2) compete to be a child's parent; the winner has the
    best (non-dominated rank, crowding distance) within the population, the first
    drawn on a full tie. ``mutation_prob`` as in
    :class:`~strategies.RegularizedEvolution`. Children are always new samples; random
    samples fill the population while it is short. ``deterministic`` as in
    :class:`~strategies.base.BaseStrategy`.
    """

    def __init__(
        self, objectives: Sequence[Objective], population_size: int = 30,
        sample_size: int | None = None, *, mutation_prob: float | None = None,
        seed: int | None = None, max_trials: int | None = None, deterministic: bool = False,
    ) -> None:
        super().__init__(seed=seed, max_trials=max_trials, deterministic=deterministic)
        self.archive = ParetoArchive(objectives)
        self.sample_size = _check_sizes(population_size, sample_size)
        if mutation_prob is not None and not 0 < mutation_prob <= 1:
            raise ValueError(f"mutation_prob must be in (0, 1] or None (mutate one label), "
                             f"got {mutation_prob!r}")
        self.population_size = population_size
        self.mutation_prob = mutation_prob
        self.population: collections.deque[bytes] = collections.deque()  # oldest first
        self._standing: dict[bytes, tuple[int, float]] | None = None  # cache, see below
        self._sampler: UnseenSampler | None = None

    def observe(self, model: ExecutableModelSpace) -> None:
        """Called once per finished model (the journal's at resume, then in completion
        order). A sample trained for the first time joins the population as its youngest
        member (the oldest leaves when it is full); a failed one is never proposed
        again."""
        key = self.key_of(model.sample or {})
        first = key not in self.archive.points
        if self.archive.record(key, model) is None:
            return
        self._standing = None
        if first:
            self.population.append(key)
            if len(self.population) > self.population_size:
                self.population.popleft()

    def propose(self, leaves: Leaves) -> Sample | NotYet | None:
        """Called when a worker is free: a random sample while the population (with the
        models in flight) is short, else an unseen mutation of a tournament winner;
        ``None`` when nothing unseen is left, ``NOT_YET`` as in
        :class:`~strategies.RandomSearch`."""
        if self.population and len(self.population) + self.in_flight >= self.population_size:
            for _ in range(MAX_MUTATIONS):
                child = mutate(self.tournament(), leaves, self.rng, self.mutation_prob)
                if self.is_new(child):
                    return child
        if self._sampler is None or self._sampler.leaves is not leaves:
            self._sampler = UnseenSampler(leaves, self.rng)
        return self._sampler.draw(self.is_new)

    def standing(self) -> dict[bytes, tuple[int, float]]:
        """Each member's (non-dominated rank from 0, minus its crowding distance in its
        front): smaller is better. Computed once per change of the population."""
        if self._standing is None:
            keys = list(self.population)
            means = [self.archive.mean(key) for key in keys]
            self._standing = {}
            for rank, front in enumerate(non_dominated_sort(means, self.archive.modes)):
                crowding = crowding_distance([means[i] for i in front])
                for i, distance in zip(front, crowding, strict=True):
                    self._standing[keys[i]] = (rank, -distance)
        return self._standing

    def tournament(self) -> Sample:
        """The sample of the best of ``sample_size`` members drawn without replacement."""
        if not self.population:
            raise RuntimeError("tournament() needs a non-empty population")
        standing = self.standing()
        drawn = self.rng.sample(list(self.population),
                                min(self.sample_size, len(self.population)))
        winner = min(drawn, key=lambda key: standing[key])  # min keeps the first on ties
        return dict(self.archive.samples[winner])

    def __repr__(self) -> str:
        return (f"MultiObjectiveEvolution(objectives={list(self.objectives)!r}, "
                f"population_size={self.population_size}, sample_size={self.sample_size}, "
                f"mutation_prob={self.mutation_prob!r}, seed={self.seed!r}, "
                f"max_trials={self.max_trials!r}, deterministic={self.deterministic})")
