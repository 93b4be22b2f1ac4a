"""Proposals stay cheap on a space of any size: no strategy lists the space, and a
proposal looks at a bounded number of samples (issue 11.6). Work is counted, not timed."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from strategies import GridSearch, RandomSearch, RegularizedEvolution, StopReason, sample_key
from strategies._walk import MAX_SHUFFLED, Permutation, Walk
from strategies.base import NOT_YET, BaseStrategy, Leaves, NotYet
from strategies.evolution import MAX_MUTATIONS
from strategies.random_search import MAX_REDRAWS, MAX_WALK, UnseenSampler

LOOKS_PER_PROPOSAL = MAX_REDRAWS + MAX_WALK


class Huge(e.BaseModelSpace):
    """Twelve labels of ten values: 10**12 samples."""

    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(10)), label=f"op{i}") for i in range(12)))


class Small(e.BaseModelSpace):
    """Five labels of four values: 1024 samples (a shuffled-list walk)."""

    def __init__(self) -> None:
        self.ops = e.ensure_frozen(e.MutableList(
            e.Categorical(list(range(4)), label=f"op{i}") for i in range(5)))


async def total(model: Any) -> float:
    return float(sum(model.ops))


def space(model: e.BaseModelSpace) -> e.RawFormatModelSpace:
    return e.RawFormatModelSpace.from_model(model, e.FunctionEvaluator(total))


def counting(base: type[BaseStrategy]) -> Any:
    """``base`` that records how many samples each proposal looked at (``is_new`` calls)."""

    class Counting(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.looks: list[int] = []
            self._looked = 0

        def is_new(self, sample: Any) -> bool:
            self._looked += 1
            return bool(super().is_new(sample))

        def propose(self, leaves: Leaves) -> Any:
            self._looked = 0
            proposed = super().propose(leaves)
            self.looks.append(self._looked)
            return proposed

    return Counting


def never_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing a categorical's values for a grid fails the test (RandomSearch and evolution
    used it to enumerate the space)."""

    def refuse(self: e.Categorical, granularity: int | None = None) -> list[Any]:
        raise AssertionError(f"the space was enumerated ({self.label})")

    monkeypatch.setattr(e.Categorical, "grid_values", refuse)


@pytest.mark.parametrize("make", [lambda: counting(RandomSearch)(0),
                                  lambda: counting(RegularizedEvolution)(8, 2, seed=0)],
                         ids=["random", "evolution"])
@pytest.mark.anyio
async def test_a_1e12_sample_space_is_never_listed(make: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    never_list(monkeypatch)
    strategy = make()
    async with Engine(InlinePool(4), max_trials=150) as engine:
        await strategy.run(engine, space(Huge()))
    keys = {sample_key(h.model.sample or {}) for h in engine.handles()}
    assert len(keys) == 150
    assert all(h.status is ModelStatus.Trained for h in engine.handles())
    # A fresh draw on a 10**12 space is new: about one look per proposal.
    assert sum(strategy.looks) <= 2 * len(strategy.looks)


@pytest.mark.anyio
async def test_grid_shuffle_on_a_1e12_sample_space_lists_nothing() -> None:
    strategy = counting(GridSearch)(shuffle=True, seed=0)
    async with Engine(InlinePool(2), max_trials=40) as engine:
        await strategy.run(engine, space(Huge()))
    assert len({sample_key(h.model.sample or {}) for h in engine.handles()}) == 40
    assert max(strategy.looks) <= 2  # the previous point (submitted since) and the next


@pytest.mark.parametrize(("make", "tries"), [
    (lambda: counting(RandomSearch)(1), MAX_REDRAWS),
    (lambda: counting(RegularizedEvolution)(8, 2, seed=1), MAX_MUTATIONS + MAX_REDRAWS),
], ids=["random", "evolution"])
@pytest.mark.anyio
async def test_using_up_a_space_looks_at_a_bounded_number_of_samples(make: Any,
                                                                     tries: int) -> None:
    strategy = make()
    async with Engine(InlinePool(4)) as engine:
        await strategy.run(engine, space(Small()))
    keys = [sample_key(h.model.sample or {}) for h in engine.handles()]
    assert len(keys) == len(set(keys)) == 4 ** 5
    assert strategy.stop_reason is StopReason.space_exhausted
    assert max(strategy.looks) <= tries + MAX_WALK
    # Over the whole run the walk looks at each sample about once, not once per proposal.
    assert sum(strategy.looks) <= len(keys) * tries + 3 * len(keys)


def test_the_sampler_finds_the_last_unseen_samples_of_a_large_space() -> None:
    """A space of 50,625 with three samples unseen (an affine walk): each call looks at
    no more than its share, and the three come out, then ``None``."""
    leaves = {f"l{i}": e.Categorical(list(range(15)), label=f"l{i}") for i in range(4)}
    unseen = {sample_key({"l0": a, "l1": 7, "l2": 3, "l3": 14}) for a in (2, 11, 13)}
    proposed: set[bytes] = set()
    looks = 0

    def is_new(sample: dict[str, Any]) -> bool:
        nonlocal looks
        looks += 1
        key = sample_key(sample)
        return key in unseen and key not in proposed

    sampler = UnseenSampler(leaves, random.Random(0))
    calls = 0
    while True:
        looks = 0
        found = sampler.draw(is_new)
        calls += 1
        assert looks <= LOOKS_PER_PROPOSAL
        if found is None:
            break
        if not isinstance(found, NotYet):
            proposed.add(sample_key(found))
    assert proposed == unseen
    assert calls * MAX_WALK >= 15 ** 4  # the walk went all the way round, in pieces


@pytest.mark.parametrize("size", [1, 7, MAX_SHUFFLED, MAX_SHUFFLED + 1, 6 * 7 * 11 * 13])
def test_a_permutation_visits_every_index_once(size: int) -> None:
    order = Permutation(size, random.Random(size))
    assert sorted(order[i] for i in range(size)) == list(range(size))


def test_a_walk_goes_on_where_it_stopped_and_keeps_an_unsubmitted_point() -> None:
    walk = Walk(["a", "b"], [[0, 1, 2], ["x", "y"]], None)
    assert walk.size == 6
    assert walk.next_new(lambda s: s["a"] == 2, 3) is NOT_YET
    found = walk.next_new(lambda s: s["a"] == 2, 10)
    assert found == {"a": 2, "b": "x"}
    assert walk.next_new(lambda s: s["a"] == 2, 10) == found  # not submitted: offered again
    assert walk.next_new(lambda s: s == {"a": 2, "b": "y"}, 10) == {"a": 2, "b": "y"}
    assert walk.next_new(lambda s: False, 10) is None


class Patient(BaseStrategy):
    """Answers NOT_YET three times, then one sample."""

    def __init__(self) -> None:
        super().__init__(max_trials=1)
        self.others_ran: list[bool] = []
        self.other_task_ran = False

    def propose(self, leaves: Leaves) -> dict[str, Any] | NotYet | None:
        self.others_ran.append(self.other_task_ran)
        if len(self.others_ran) <= 3:
            return NOT_YET
        return {label: 0 for label in leaves}


@pytest.mark.anyio
async def test_not_yet_lets_other_tasks_run_and_the_search_goes_on() -> None:
    strategy = Patient()

    async def other() -> None:
        strategy.other_task_ran = True

    async with Engine(InlinePool(1)) as engine, anyio.create_task_group() as tg:
        tg.start_soon(other)
        await strategy.run(engine, space(Small()))
    # Each NOT_YET passes a checkpoint: by the third proposal the other task has run.
    assert strategy.others_ran[2:] == [True, True]
    assert [h.model.sample for h in engine.handles()] == [{f"op{i}": 0 for i in range(5)}]
    assert strategy.stop_reason is StopReason.max_trials
