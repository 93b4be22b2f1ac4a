from __future__ import annotations

import math
import random
import shutil
import statistics
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

import engine as e
from engine import Engine, InlinePool, ModelStatus
from engine import events as ev
from strategies import (
    GridSearch,
    RandomSearch,
    RegularizedEvolution,
    StopReason,
    rank,
    sample_key,
    search,
)
from strategies.base import BaseStrategy, ranked_samples
from strategies.evolution import Reevaluation, mutate
from strategies.grid import grid_samples

LABELS = [f"op{i}" for i in range(6)]
TARGET = {label: i % 5 for i, label in enumerate(LABELS)}


class Cell(e.BaseModelSpace):
    """Six labels of five values: a small NAS-Bench-like space (15625 samples)."""

    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(5)), label=label) for label in LABELS))


class Small(e.BaseModelSpace):
    """Twelve samples."""

    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical([0, 1, 2, 3], label="x"))
        self.y = e.ensure_frozen(e.Categorical(["a", "b", "c"], label="y"))


class Mixed(e.BaseModelSpace):
    def __init__(self) -> None:
        self.kind = e.ensure_frozen(e.Categorical(["p", "q"], label="kind"))
        self.lr = e.ensure_frozen(e.Numerical(0.0, 1.0, label="lr"))


async def matches(model: Cell) -> float:
    """How many ops equal TARGET's (6 is the optimum)."""
    return float(sum(op == TARGET[label] for op, label in zip(model.ops, LABELS, strict=True)))


async def small_score(model: Small) -> float:
    if model.x == 0:
        raise RuntimeError(f"x=0 cannot train (y={model.y})")
    return float(model.x * 10 + "abc".index(model.y))


async def mixed_score(model: Mixed) -> float:
    return float(model.lr)


def space(model: e.BaseModelSpace, fn: Any) -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(model, e.FunctionEvaluator(fn))


async def run(strategy: BaseStrategy, model_space: e.ExecutableModelSpace, *,
              workers: int = 1, max_trials: int | None = None) -> list[e.ModelHandle]:
    async with Engine(InlinePool(workers), max_trials=max_trials) as engine:
        await strategy.run(engine, model_space)
        assert engine.in_flight == 0
    return engine.handles()


def samples(handles: list[e.ModelHandle]) -> list[dict[str, Any]]:
    return [h.model.sample or {} for h in handles]


def keys(handles: list[e.ModelHandle]) -> list[bytes]:
    return [sample_key(s) for s in samples(handles)]


# --- shared behaviour -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda s: RandomSearch(s), lambda s: RegularizedEvolution(5, 2, seed=s),
             lambda s: RegularizedEvolution(5, 2, seed=s, reevaluate=Reevaluation(share=0.3)),
             lambda s: GridSearch(shuffle=True, seed=s)],
    ids=["random", "evolution", "evolution-reevaluate", "grid"])
@pytest.mark.anyio
async def test_same_seed_same_samples(make: Any) -> None:
    cell = space(Cell(), matches)
    first = samples(await run(make(7), cell, max_trials=30))
    again = samples(await run(make(7), cell, max_trials=30))
    other = samples(await run(make(8), cell, max_trials=30))
    assert len(first) == 30
    assert first == again
    assert first != other


@pytest.mark.anyio
async def test_engine_budget_stops_the_strategy_cleanly() -> None:
    strategy = RandomSearch(0)
    handles = await run(strategy, space(Cell(), matches), workers=3, max_trials=7)
    assert len(handles) == 7
    assert all(h.status is ModelStatus.Trained for h in handles)
    assert strategy.stop_reason is StopReason.budget


@pytest.mark.anyio
async def test_own_max_trials() -> None:
    strategy = RegularizedEvolution(3, 2, seed=1, max_trials=5)
    handles = await run(strategy, space(Cell(), matches), workers=2)
    assert len(handles) == 5
    assert strategy.stop_reason is StopReason.max_trials


@pytest.mark.anyio
async def test_search_ranks_best_first_in_either_mode() -> None:
    async with Engine(InlinePool(2), max_trials=12) as engine:
        best_first = await search(space(Small(), small_score), RandomSearch(3), engine)
    metrics = [m.metric for m in best_first]
    assert metrics == sorted(metrics, reverse=True)
    assert len(metrics) == 9  # the three x=0 samples failed and are not ranked
    assert best_first[0].sample == {"x": 3, "y": "c"}
    lowest = rank([h.model for h in engine.handles()], "min")
    assert [m.metric for m in lowest] == sorted(metrics)
    async with Engine(InlinePool(1), max_trials=12) as engine:
        models = await search(space(Small(), small_score), RandomSearch(3, mode="min"), engine)
    assert models[0].sample == {"x": 1, "y": "a"}


def test_bad_arguments_say_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"mode must be 'max' .* got 'maximize'"):
        RandomSearch(0, mode="maximize")
    with pytest.raises(ValueError, match=r"sample_size \(6\) must not exceed population_size"):
        RegularizedEvolution(5, 6)
    with pytest.raises(ValueError, match=r"population_size must be an int >= 1, got 0"):
        RegularizedEvolution(0, 1)
    with pytest.raises(ValueError, match=r"mutation_prob must be in \(0, 1\]"):
        RegularizedEvolution(5, 2, mutation_prob=0.0)
    with pytest.raises(ValueError, match="max_trials must be a non-negative int"):
        GridSearch(max_trials=-1)
    with pytest.raises(ValueError, match=r"Reevaluation.top_k must be an int >= 1, got 0"):
        Reevaluation(top_k=0)
    with pytest.raises(ValueError, match=r"Reevaluation.evaluations must be an int >= 1, "
                       r"got True"):
        Reevaluation(evaluations=True)
    with pytest.raises(ValueError, match=r"Reevaluation.share must be in \(0, 1\).*got 1.0"):
        Reevaluation(share=1.0)
    with pytest.raises(TypeError, match="reevaluate must be a Reevaluation or None, got bool"):
        RegularizedEvolution(reevaluate=True)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_frozen_model_is_not_a_space() -> None:
    frozen = space(Small(), small_score).freeze({"x": 1, "y": "a"})
    async with Engine() as engine:
        with pytest.raises(ValueError, match=r"searches an initialized space.*status is frozen"):
            await RandomSearch(0).run(engine, frozen)


def test_sample_key_ignores_order_and_sequence_type() -> None:
    assert sample_key({"a": 1, "b": (1, 2)}) == sample_key({"b": [1, 2], "a": 1})
    assert sample_key({"a": 1}) != sample_key({"a": 2})
    assert sample_key({"a": 1}) != sample_key({"a": True})


# --- random ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_random_deduplicates_and_stops_when_the_space_is_used_up() -> None:
    strategy = RandomSearch(5)
    handles = await run(strategy, space(Small(), small_score), workers=2, max_trials=50)
    assert len(handles) == 12
    assert len(set(keys(handles))) == 12
    assert strategy.stop_reason is StopReason.space_exhausted
    failed = [h for h in handles if h.status is ModelStatus.Failed]
    assert {(h.model.sample or {})["x"] for h in failed} == {0}


@pytest.mark.anyio
async def test_random_without_deduplication_repeats() -> None:
    handles = await run(RandomSearch(5, deduplicate=False), space(Small(), small_score),
                        max_trials=30)
    assert len(handles) == 30
    assert len(set(keys(handles))) < 30


# --- grid ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_grid_visits_every_categorical_combination_once_in_order() -> None:
    strategy = GridSearch()
    handles = await run(strategy, space(Small(), small_score), workers=3)
    expected = [{"x": x, "y": y} for x in [0, 1, 2, 3] for y in "abc"]
    assert samples(handles) == expected
    assert strategy.stop_reason is StopReason.space_exhausted


@pytest.mark.anyio
async def test_grid_refines_numerical_labels_without_repeats() -> None:
    strategy = GridSearch()
    handles = await run(strategy, space(Mixed(), mixed_score), max_trials=14)
    got = samples(handles)
    assert got[:2] == [{"kind": "p", "lr": 0.5}, {"kind": "q", "lr": 0.5}]
    assert got[2:6] == [{"kind": k, "lr": lr} for k in "pq" for lr in (0.25, 0.75)]
    assert {s["lr"] for s in got[6:14]} == {k / 8 for k in (1, 3, 5, 7)}
    assert len(set(keys(handles))) == 14
    assert strategy.granularity == 3
    assert strategy.stop_reason is StopReason.budget


def test_grid_samples_order() -> None:
    leaves = space(Small(), small_score).simplify()
    assert list(grid_samples(leaves, 1))[:4] == [
        {"x": 0, "y": "a"}, {"x": 0, "y": "b"}, {"x": 0, "y": "c"}, {"x": 1, "y": "a"}]


# --- evolution -------------------------------------------------------------------------


def test_mutate_changes_one_label_or_each_with_its_probability() -> None:
    leaves = space(Cell(), matches).simplify()
    rng = random.Random(0)
    parent = dict(TARGET)
    for _ in range(50):
        child = mutate(parent, leaves, rng)
        assert sum(child[k] != parent[k] for k in LABELS) == 1
        assert set(child) == set(parent)
    everything = mutate(parent, leaves, rng, mutation_prob=1.0)
    assert all(everything[k] != parent[k] for k in LABELS)


@pytest.mark.anyio
async def test_evolution_finds_the_optimum_and_beats_random() -> None:
    cell = space(Cell(), matches)
    evolution = RegularizedEvolution(10, 3, seed=0)
    evolved = await run(evolution, cell, max_trials=150)
    randomly = await run(RandomSearch(0), cell, workers=2, max_trials=150)
    best = max(h.model.metric or 0 for h in evolved)
    assert best == 6.0
    assert best > max(h.model.metric or 0 for h in randomly)
    assert len(set(keys(evolved))) == 150


@pytest.mark.anyio
async def test_evolution_population_ages_out_the_oldest() -> None:
    evolution = RegularizedEvolution(4, 2, seed=3)
    await run(evolution, space(Cell(), matches), max_trials=20)
    assert len(evolution.history) == 20
    assert list(evolution.population) == evolution.history[-4:]


@pytest.mark.anyio
async def test_evolution_minimizes() -> None:
    evolution = RegularizedEvolution(10, 3, seed=0, mode="min")
    handles = await run(evolution, space(Cell(), matches), max_trials=120)
    assert min(h.model.metric or 0 for h in handles) == 0.0
    late = [h.model.metric or 0 for h in handles[60:]]
    assert sum(late) / len(late) < 1.0  # uniform samples average 1.2 matches


@pytest.mark.anyio
async def test_evolution_failed_models_count_but_never_join_nor_repeat() -> None:
    evolution = RegularizedEvolution(3, 2, seed=2)
    handles = await run(evolution, space(Small(), small_score), workers=2, max_trials=40)
    assert len(handles) == 12  # the whole space, each sample once
    assert len(set(keys(handles))) == 12
    assert evolution.stop_reason is StopReason.space_exhausted
    assert [h.status for h in handles].count(ModelStatus.Failed) == 3
    assert all(m.sample["x"] != 0 for m in evolution.history)
    assert len(evolution.history) == 9


@pytest.mark.anyio
async def test_evolution_without_deduplication_repeats_only_trained_samples() -> None:
    evolution = RegularizedEvolution(3, 2, seed=2, deduplicate=False)
    handles = await run(evolution, space(Small(), small_score), max_trials=40)
    assert len(handles) == 40
    assert len(set(keys(handles))) < 40
    failed = [sample_key(s) for s in samples(handles) if s["x"] == 0]
    assert len(failed) == len(set(failed)) >= 1  # a failed sample is never tried again


async def gated(model: Cell, gate: MemoryObjectReceiveStream[None]) -> float:
    await gate.receive()
    return await matches(model)


@pytest.mark.anyio
async def test_evolution_proposes_the_moment_a_worker_frees() -> None:
    send, receive = anyio.create_memory_object_stream[None](10)
    cell = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(gated, gate=receive))
    seen: list[ev.Event] = []
    async with Engine(InlinePool(3), max_trials=5) as engine, send, receive:
        events = engine.subscribe()
        async with anyio.create_task_group() as tg:
            tg.start_soon(RegularizedEvolution(2, 2, seed=0).run, engine, cell)
            async for event in events:
                seen.append(event)
                started = sum(isinstance(x, ev.TrainingStarted) for x in seen)
                if isinstance(event, ev.TrainingStarted) and started == 3:
                    await send.send(None)  # let exactly one of the three finish
                if isinstance(event, ev.ModelQueued) and event.model_id == 4:
                    break
            # Model 4 was queued while two models still ran: nobody waited for them.
            assert sum(isinstance(x, ev.ModelTrained) for x in seen) == 1
            first = next(x for x in seen if isinstance(x, ev.ModelTrained))
            parent = engine.handles()[first.model_id - 1].model.sample or {}
            child = engine.handles()[3].model.sample or {}
            assert sum(child[k] != parent[k] for k in LABELS) == 1  # a mutation of it
            for _ in range(4):
                await send.send(None)
    assert [h.status for h in engine.handles()] == [ModelStatus.Trained] * 5


# --- resume: state rebuilt from engine.handles() ------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda n: RandomSearch(4, max_trials=n),
             lambda n: RegularizedEvolution(4, 2, seed=4, max_trials=n),
             lambda n: GridSearch(max_trials=n)],
    ids=["random", "evolution", "grid"])
@pytest.mark.anyio
async def test_a_new_strategy_continues_from_the_engines_models(make: Any) -> None:
    cell = space(Cell(), matches)
    async with Engine(InlinePool(1)) as engine:
        first = make(6)
        await first.run(engine, cell)
        second = make(10)
        await second.run(engine, cell)
    handles = engine.handles()
    assert len(handles) == 10  # the second counted the first's six against max_trials
    assert len(set(keys(handles))) == 10
    if isinstance(second, GridSearch):
        assert samples(handles) == list(grid_samples(cell.simplify(), 1))[:10]
    if isinstance(first, RegularizedEvolution) and isinstance(second, RegularizedEvolution):
        assert second.history[:6] == first.history
        assert list(second.population) == second.history[-4:]


@pytest.mark.parametrize(
    "make", [lambda: RandomSearch(4), lambda: RegularizedEvolution(4, 2, seed=4),
             lambda: GridSearch(shuffle=True, seed=4)],
    ids=["random", "evolution", "grid"])
@pytest.mark.anyio
async def test_a_resumed_journal_continues_the_search(tmp_path: Path, make: Any) -> None:
    run, cell = tmp_path / "run.nasrun", space(Cell(), matches)
    async with Engine(InlinePool(1), max_trials=8, journal=run) as engine:
        await make().run(engine, cell)
    async with Engine(InlinePool(1), max_trials=16, journal=run) as engine:
        assert len(engine.handles()) == 8  # the journal's finished models
        resumed = make()
        await resumed.run(engine, cell)
    handles = engine.handles()
    assert len(handles) == 16
    assert len(set(keys(handles))) == 16
    assert resumed.stop_reason is StopReason.budget
    if isinstance(resumed, RegularizedEvolution):
        assert [m.sample for m in resumed.history[:8]] == samples(handles[:8])
        assert list(resumed.population) == resumed.history[-4:]
    else:  # random and grid continue exactly where an uninterrupted run would be
        async with Engine(InlinePool(1), max_trials=16) as engine:
            await make().run(engine, cell)
        assert samples(handles) == samples(engine.handles())


@pytest.mark.anyio
async def test_resume_awaits_models_still_in_flight() -> None:
    cell = space(Cell(), matches)
    async with Engine(InlinePool(2)) as engine:
        handle = await engine.submit(cell.freeze(dict(TARGET)))
        evolution = RegularizedEvolution(2, 1, seed=0, max_trials=3)
        await evolution.run(engine, cell)
        assert handle.done
    assert evolution.history[0].sample == TARGET
    assert len(engine.handles()) == 3


# --- noisy training: ranking by the mean, re-evaluation -----------------------------------


class Scripted:
    """Each sample's metrics in turn (``None``: that training fails), one per call."""

    def __init__(self, script: dict[str, list[float | None]]) -> None:
        self.script = {name: list(values) for name, values in script.items()}

    async def __call__(self, model: Small) -> float:
        value = self.script[f"{model.x}{model.y}"].pop(0)
        if value is None:
            raise RuntimeError(f"x={model.x} y={model.y} did not train this time")
        return value


class Noisy:
    """``matches`` plus Gaussian noise drawn from its own seeded stream, call by call."""

    def __init__(self, seed: int, sigma: float = 1.0) -> None:
        self.rng, self.sigma = random.Random(seed), sigma

    async def __call__(self, model: Cell) -> float:
        return await matches(model) + self.rng.gauss(0.0, self.sigma)


def noisy_cell(seed: int = 0) -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(Noisy(seed)))


async def submit_all(model_space: e.ExecutableModelSpace,
                     samples_in_order: list[dict[str, Any]]) -> list[e.ModelHandle]:
    async with Engine(InlinePool(1)) as engine:
        for sample in samples_in_order:
            await engine.submit(model_space.freeze(sample))
    return engine.handles()


A, B, C = {"x": 1, "y": "a"}, {"x": 2, "y": "b"}, {"x": 3, "y": "c"}


@pytest.mark.anyio
async def test_rank_scores_each_sample_once_by_its_mean() -> None:
    script: dict[str, list[float | None]] = {
        "1a": [9.0, None, 1.0, float("nan")], "2b": [6.0], "3c": [4.0, 8.0, 7.0]}
    handles = await submit_all(space(Small(), Scripted(script)), [A, B, A, C, A, C, C, A])
    models = [h.model for h in handles]
    # A's one value of 9 is the best single value, but its mean is 5 (the failed and
    # the NaN model are left out): C (mean 19/3) and B (6) rank above it.
    assert rank(models) == [models[3], models[1], models[0]]
    assert rank(models, "min") == [models[0], models[1], models[3]]
    entries = ranked_samples(models)
    assert [(en.model.sample, en.mean, en.metrics, en.count) for en in entries] == [
        (C, pytest.approx(19 / 3), (4.0, 8.0, 7.0), 3), (B, 6.0, (6.0,), 1),
        (A, 5.0, (9.0, 1.0), 2)]
    assert models[0].metric == 9.0  # each model keeps its own metric


@pytest.mark.anyio
async def test_search_returns_one_model_per_sample_best_mean_first() -> None:
    script: dict[str, list[float | None]] = {"1a": [9.0, 1.0], "2b": [6.0, 7.0]}

    class Twice(BaseStrategy):
        def propose(self, leaves: Any) -> dict[str, Any] | None:
            return [A, B, A, B][self.model_count] if self.model_count < 4 else None

    async with Engine(InlinePool(1)) as engine:
        best_first = await search(space(Small(), Scripted(script)), Twice(), engine)
    assert [m.sample for m in best_first] == [B, A]
    assert [m.metric for m in best_first] == [6.0, 9.0]


def repeats_in_order(handles: list[e.ModelHandle]) -> list[int]:
    """The indices of the models whose sample was submitted before."""
    seen: set[bytes] = set()
    repeats = []
    for index, key in enumerate(keys(handles)):
        if key in seen:
            repeats.append(index)
        seen.add(key)
    return repeats


def check_policy(handles: list[e.ModelHandle], policy: Reevaluation) -> list[int]:
    """Assert that a one-worker top-1 run re-evaluated exactly when :class:`Reevaluation`
    says: the leader by mean, while it has fewer than ``evaluations`` results and the
    repeats stay within ``share``. Returns the repeats' indices."""
    assert policy.top_k == 1
    models, repeats = [h.model for h in handles], repeats_in_order(handles)
    for index in range(1, len(models)):
        leader = ranked_samples(models[:index])[0]
        due = (leader.count < policy.evaluations
               and len([r for r in repeats if r < index]) + 1 <= policy.share * (index + 1))
        assert (index in repeats) is due, f"model {index}"
        if due:
            assert models[index].sample == leader.model.sample
    return repeats


@pytest.mark.anyio
async def test_reevaluation_trains_the_leader_again_within_its_share() -> None:
    policy = Reevaluation(top_k=1, evaluations=4, share=0.2)
    evolution = RegularizedEvolution(5, 2, seed=0, reevaluate=policy)
    handles = await run(evolution, noisy_cell(), max_trials=80)
    repeats = check_policy(handles, policy)
    assert len(repeats) >= 5
    entries = ranked_samples(h.model for h in handles)
    assert max(entry.count for entry in entries) == policy.evaluations
    assert len(entries) == 80 - len(repeats)  # every other model is a new child
    assert entries[0].count > 1  # the search's best rests on repeated evidence
    assert evolution.metrics_of(entries[0].model.sample or {}) == list(entries[0].metrics)


@pytest.mark.anyio
async def test_population_holds_each_sample_once_with_its_mean() -> None:
    evolution = RegularizedEvolution(20, 2, seed=1, reevaluate=Reevaluation(share=0.3))
    handles = await run(evolution, noisy_cell(1), max_trials=60)
    first_trained = list(dict.fromkeys(keys(handles)))  # distinct, in order of first result
    assert [sample_key(m.sample) for m in evolution.population] == first_trained[-20:]
    assert max(member.evaluations for member in evolution.population) > 1
    for member in evolution.population:
        metrics = evolution.metrics_of(member.sample)
        assert member.evaluations == len(metrics)
        assert member.metric == statistics.fmean(metrics)
    assert [m.metric for m in evolution.history] == [h.model.metric for h in handles]


@pytest.mark.anyio
async def test_reevaluation_counts_models_in_flight() -> None:
    policy = Reevaluation(top_k=2, evaluations=2, share=0.5)
    handles = await run(RegularizedEvolution(4, 2, seed=2, reevaluate=policy), noisy_cell(2),
                        workers=4, max_trials=40)
    counts = [entry.count for entry in ranked_samples(h.model for h in handles)]
    assert len(repeats_in_order(handles)) >= 4
    assert max(counts) == 2


@pytest.mark.anyio
async def test_a_sample_that_fails_when_trained_again_is_not_tried_a_third_time() -> None:
    script: dict[str, list[float | None]] = {
        f"{x}{y}": [float(x * 10 + "abc".index(y)), None] for x in range(4) for y in "abc"}
    evolution = RegularizedEvolution(3, 2, seed=0, reevaluate=Reevaluation(share=0.5))
    handles = await run(evolution, space(Small(), Scripted(script)), max_trials=40)
    repeats = repeats_in_order(handles)
    assert len(repeats) >= 2
    assert len(handles) == 12 + len(repeats)  # every sample once, and some leaders again
    assert all(handles[index].status is ModelStatus.Failed for index in repeats)
    assert len({keys(handles)[index] for index in repeats}) == len(repeats)  # never thrice
    assert evolution.stop_reason is StopReason.space_exhausted


@pytest.mark.parametrize("where", ["engine", "journal"])
@pytest.mark.anyio
async def test_reevaluation_resumes_from_the_models_found(tmp_path: Path, where: str) -> None:
    policy = Reevaluation(top_k=1, evaluations=6, share=0.25)

    def make(max_trials: int | None = None) -> RegularizedEvolution:
        return RegularizedEvolution(4, 2, seed=5, reevaluate=policy, max_trials=max_trials)

    if where == "engine":  # a second strategy on the same engine
        async with Engine(InlinePool(1), max_trials=60) as engine:
            await make(30).run(engine, noisy_cell(5))
            resumed = make()
            await resumed.run(engine, noisy_cell(5))
        runs = [engine.handles()]
    else:  # two copies of a journal, each resumed by a new strategy
        first = tmp_path / "a.nasrun"
        async with Engine(InlinePool(1), max_trials=30, journal=first) as engine:
            await make().run(engine, noisy_cell(5))
        shutil.copy(first, tmp_path / "b.nasrun")
        runs = []
        for name in ("a", "b"):
            async with Engine(InlinePool(1), max_trials=60,
                              journal=tmp_path / f"{name}.nasrun") as engine:
                resumed = make()
                await resumed.run(engine, noisy_cell(6))
            runs.append(engine.handles())
        assert samples(runs[1]) == samples(runs[0])  # resuming is deterministic too
    handles = runs[0]
    assert len(handles) == 60
    repeats = check_policy(handles, policy)  # the rebuilt counts decide as before
    assert any(index >= 30 for index in repeats)
    for entry in ranked_samples(h.model for h in handles):
        assert resumed.metrics_of(entry.model.sample or {}) == list(entry.metrics)


class Found:
    """A finished model as ``engine.handles()`` lists it (what ``resume`` reads)."""

    def __init__(self, model_id: int, model: e.ExecutableModelSpace) -> None:
        self.model_id, self.model, self.done = model_id, model, True


class Journal:
    """An engine that knows finished models only: enough for ``BaseStrategy.resume``."""

    def __init__(self, models: list[e.ExecutableModelSpace]) -> None:
        self._handles = [Found(i, model) for i, model in enumerate(models)]

    def handles(self) -> list[Found]:
        return self._handles


def trained(sample: dict[str, Any], curve: list[float],
            stopped_at: int | None = None) -> e.ExecutableModelSpace:
    """A model of ``Small`` trained along ``curve``: to its end, or stopped by a
    scheduler at ``stopped_at`` (its metric then that step's value)."""
    model = space(Small(), small_score).freeze(sample)
    steps = curve if stopped_at is None else curve[:stopped_at]
    model.status = ModelStatus.Trained
    model.metrics = e.Metrics(intermediates=list(steps), final=steps[-1],
                              stopped_at=stopped_at)
    return model


@pytest.mark.parametrize("mode", ["max", "min"])
def test_evolution_compares_members_at_the_highest_fidelity_first(mode: str) -> None:
    """Under a scheduler a model stopped after one epoch is no rival for one trained to its
    end, however good its early value: the tournament and the standings that choose
    re-evaluations rank by fidelity first, then by the mean there, as ``rank`` does."""
    sign = 1.0 if mode == "max" else -1.0
    full, sprinter = {"x": 1, "y": "a"}, {"x": 2, "y": "b"}
    models = [trained(full, [sign * v for v in (0.5, 0.7, 0.8)]),
              trained(sprinter, [sign * v for v in (0.9, 0.95, 0.99)], stopped_at=1)]
    evolution = RegularizedEvolution(2, 2, seed=0, mode=mode,
                                     reevaluate=Reevaluation(evaluations=2, share=0.5))
    evolution.resume(Journal(models))  # type: ignore[arg-type]
    for _ in range(5):  # both members are drawn: the full one wins every time
        assert evolution.tournament().sample == full
    assert rank(models, mode)[0] is models[0]
    leaves = space(Small(), small_score).simplify()
    assert evolution.propose(leaves) == full  # the leader trained again, not the sprinter
    assert [(m.fidelity, m.metric) for m in evolution.population] == [
        (math.inf, sign * 0.8), (1.0, sign * 0.9)]


def test_a_reevaluation_stopped_early_leaves_the_mean_at_full_fidelity() -> None:
    """A sample trained to its end and again, stopped at a rung the second time: its mean
    and its count of evaluations stay those of its full trainings, as ``rank``'s."""
    sample = {"x": 3, "y": "c"}
    models = [trained(sample, [0.5, 0.6, 0.7]),
              trained(sample, [0.95, 0.96, 0.97], stopped_at=1),
              trained({"x": 1, "y": "a"}, [0.6, 0.68, 0.69])]
    evolution = RegularizedEvolution(3, 2, seed=0,
                                     reevaluate=Reevaluation(evaluations=2, share=0.5))
    evolution.resume(Journal(models))  # type: ignore[arg-type]
    member = evolution.population[0]
    assert (member.metric, member.evaluations) == (0.7, 1)
    assert ranked_samples(models)[0].mean == member.metric
    # 0.7 after one full training still leads (0.69 is the other's) and is due again
    assert evolution.propose(space(Small(), small_score).simplify()) == sample
    assert evolution.metrics_of(sample) == [0.7, 0.95]  # every model's, as they came
    assert member.fidelity == math.inf
    assert [m.fidelity for m in evolution.history] == [math.inf, 1.0, math.inf]
