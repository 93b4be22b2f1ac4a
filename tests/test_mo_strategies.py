"""Multi-objective strategies: NSGA-II ranked regularized evolution and random search.

Here each strategy is driven by hand, the way BaseStrategy.run drives it (propose,
freeze, the model finishes, observe), with real frozen models whose final metrics are
dicts: the selection logic, aging, determinism and rebuilding from models."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

import engine as e
from engine import ModelStatus
from engine._objective import Objective
from engine.pareto import crowding_distance, hypervolume, non_dominated, non_dominated_sort
from strategies.base import NotYet, sample_key
from strategies.multi_objective import (
    MultiObjectiveEvolution,
    MultiObjectiveRandomSearch,
    ParetoArchive,
    check_objectives,
)
from strategies.random_search import RandomSearch

LABELS = [f"op{i}" for i in range(6)]
OBJECTIVES = [Objective(name="accuracy", mode="max"), Objective(name="latency", mode="min")]
Metrics = Callable[[dict[str, Any]], dict[str, float]]


class Cell(e.BaseModelSpace):
    """Six labels of five values (15625 samples)."""

    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(5)), label=label) for label in LABELS))


async def unused(model: Cell) -> float:  # the evaluator's function; never called here
    del model
    return 0.0


def cell_space() -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(unused))


def tradeoff(sample: dict[str, Any]) -> dict[str, float]:
    """Accuracy grows with the ops' sum, latency with the count of 3s and 4s plus a
    little of the sum: the two conflict, and the front is not one point."""
    ops = [sample[label] for label in LABELS]
    return {"accuracy": float(sum(ops)) + 0.1 * ops[0],
            "latency": float(sum(op >= 3 for op in ops)) + 0.01 * sum(ops)}


def finished(space: e.ExecutableModelSpace, sample: dict[str, Any],
             final: Any, status: ModelStatus = ModelStatus.Trained) -> e.ExecutableModelSpace:
    model = space.freeze(sample)
    model.status = status
    model.metrics.final = final
    return model


def drive(strategy: Any, count: int, metrics: Metrics = tradeoff) -> list[e.ExecutableModelSpace]:
    """Propose, finish and observe ``count`` models one at a time; the models in order."""
    space = cell_space()
    strategy._canonical = space.canonicalizer()  # as run() sets it
    leaves = space.simplify()
    models = []
    while len(models) < count:
        sample = strategy.propose(leaves)
        if isinstance(sample, NotYet):
            continue
        assert sample is not None
        assert strategy.is_new(sample)
        model = finished(space, sample, metrics(sample))
        strategy._seen.add(strategy.key_of(sample))  # as run() records a submit
        strategy._ids.add(len(models))
        strategy.observe(model)
        models.append(model)
    return models


def points(models: list[e.ExecutableModelSpace]) -> list[tuple[float, float]]:
    return [(m.metrics.final["accuracy"], m.metrics.final["latency"])  # type: ignore[index]
            for m in models]


# --- arguments --------------------------------------------------------------------------


def test_objectives_are_checked_with_what_to_pass() -> None:
    with pytest.raises(ValueError, match="at least one Objective"):
        check_objectives([])
    with pytest.raises(TypeError, match=r"Objective\(name=..., mode=...\) items, got 'acc'"):
        check_objectives(["acc"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="distinct"):
        check_objectives([Objective(name="a"), Objective(name="a", mode="min")])
    with pytest.raises(ValueError, match="sample_size"):
        MultiObjectiveEvolution(OBJECTIVES, 4, 5)
    with pytest.raises(ValueError, match="mutation_prob"):
        MultiObjectiveEvolution(OBJECTIVES, mutation_prob=0.0)


def test_an_engine_with_one_objective_is_refused() -> None:
    class OneObjective:
        def set_objective(self, mode: str = "max", *, name: str | None = None) -> None:
            del mode, name

    strategy = MultiObjectiveEvolution(OBJECTIVES, seed=0)
    with pytest.raises(TypeError, match="needs an engine with set_objectives"):
        strategy.declare_objectives(OneObjective())  # type: ignore[arg-type]


# --- the archive ------------------------------------------------------------------------


def test_archive_means_repeats_and_marks_failures() -> None:
    space, archive = cell_space(), ParetoArchive(OBJECTIVES)
    sample = dict.fromkeys(LABELS, 1)
    assert archive.record(b"k", finished(space, sample, {"accuracy": 0.8, "latency": 2.0,
                                                         "other": 7.0})) == (0.8, 2.0)
    assert archive.record(b"k", finished(space, sample, {"accuracy": 0.6, "latency": 4.0})) \
        == pytest.approx((0.7, 3.0))
    assert archive.record(b"nan", finished(space, sample, {"accuracy": math.nan,
                                                           "latency": 1.0})) is None
    assert archive.record(b"bad", finished(space, sample, None, ModelStatus.Failed)) is None
    assert archive.failed == {b"nan", b"bad"}
    with pytest.raises(ValueError, match=r"lack the objective\(s\) \['latency'\]"):
        archive.record(b"typo", finished(space, sample, {"accuracy": 0.5, "latncy": 1.0}))
    assert [point for _, point in archive.front()] == [pytest.approx((0.7, 3.0))]


# --- evolution --------------------------------------------------------------------------


def test_evolution_fills_randomly_then_mutates_one_label_of_a_member() -> None:
    strategy = MultiObjectiveEvolution(OBJECTIVES, 8, 3, seed=1)
    models = drive(strategy, 30)
    members = {sample_key(strategy.archive.samples[k]) for k in strategy.population}
    assert len(strategy.population) == 8
    children = [m.sample or {} for m in models[8:]]
    seen = [m.sample or {} for m in models]
    for index, child in enumerate(children, start=8):
        parents = [s for s in seen[:index] if sum(s[k] != child[k] for k in LABELS) == 1]
        assert parents, f"child {index} is not one mutation away from an earlier sample"
    assert len({sample_key(s) for s in seen}) == 30  # never a repeat
    assert members <= {sample_key(s) for s in seen[-8:]}  # aging: the youngest 8


def test_standing_is_nsga2_rank_then_crowding_within_the_population() -> None:
    strategy = MultiObjectiveEvolution(OBJECTIVES, 12, seed=3)
    drive(strategy, 40)
    keys = list(strategy.population)
    means = [strategy.archive.mean(k) for k in keys]
    standing = strategy.standing()
    for rank, front in enumerate(non_dominated_sort(means, ["max", "min"])):
        crowding = crowding_distance([means[i] for i in front])
        for i, distance in zip(front, crowding, strict=True):
            assert standing[keys[i]] == (rank, -distance)


def test_tournament_winner_is_on_the_best_front_and_least_crowded() -> None:
    strategy = MultiObjectiveEvolution(OBJECTIVES, 12, 12, seed=5)  # everyone competes
    drive(strategy, 40)
    standing = strategy.standing()
    for _ in range(20):
        winner = strategy.key_of(strategy.tournament())
        assert standing[winner] == min(standing.values())
        assert standing[winner][0] == 0


def test_evolution_improves_the_front_over_random_search() -> None:
    volumes = {}
    for name, make in (("evolution", lambda s: MultiObjectiveEvolution(OBJECTIVES, 10,
                                                                        seed=s)),
                       ("random", lambda s: MultiObjectiveRandomSearch(OBJECTIVES, s))):
        volumes[name] = [hypervolume(points(drive(make(seed), 150)), ["max", "min"],
                                     (0.0, 7.0)) for seed in range(4)]
    assert sum(volumes["evolution"]) > sum(volumes["random"])


def test_same_seed_same_results_same_proposals() -> None:
    first = drive(MultiObjectiveEvolution(OBJECTIVES, 6, seed=11), 40)
    second = drive(MultiObjectiveEvolution(OBJECTIVES, 6, seed=11), 40)
    other = drive(MultiObjectiveEvolution(OBJECTIVES, 6, seed=12), 40)
    assert [m.sample for m in first] == [m.sample for m in second]
    assert [m.sample for m in first] != [m.sample for m in other]


def test_failed_models_never_join_and_are_never_proposed_again() -> None:
    def failing(sample: dict[str, Any]) -> dict[str, float]:
        return tradeoff(sample) if sample["op0"] != 0 else {"accuracy": math.nan,
                                                            "latency": 1.0}

    strategy = MultiObjectiveEvolution(OBJECTIVES, 6, seed=2)
    models = drive(strategy, 60, failing)
    failed = {strategy.key_of(m.sample or {}) for m in models if m.sample and
              m.sample["op0"] == 0}
    assert failed
    assert failed == strategy.archive.failed
    assert not failed & set(strategy.population)


def test_a_new_strategy_rebuilds_population_and_front_from_the_models() -> None:
    original = MultiObjectiveEvolution(OBJECTIVES, 7, seed=4)
    models = drive(original, 25)
    rebuilt = MultiObjectiveEvolution(OBJECTIVES, 7, seed=4)
    rebuilt._canonical = cell_space().canonicalizer()
    for model in models:  # what resume() does with the engine's finished models
        rebuilt.observe(model)
    assert list(rebuilt.population) == list(original.population)
    assert rebuilt.front() == original.front()
    assert rebuilt.standing() == original.standing()


# --- random search ----------------------------------------------------------------------


def test_random_search_proposes_what_random_search_does_and_keeps_the_front() -> None:
    strategy = MultiObjectiveRandomSearch(OBJECTIVES, 9)
    models = drive(strategy, 30)
    plain = RandomSearch(9)
    plain_samples = [m.sample for m in drive(plain, 30, tradeoff)]
    assert [m.sample for m in models] == plain_samples
    front = non_dominated(points(models), ["max", "min"])
    assert [sample for sample, _ in strategy.front()] == [models[i].sample for i in front]
    assert [point for _, point in strategy.front()] == [points(models)[i] for i in front]
