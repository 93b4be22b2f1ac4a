"""Promotion ASHA and promotion Hyperband: models pause at rungs, the best are resumed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import engine as e
from engine import Engine, InlinePool, ModelStatus
from strategies import (
    PromotionASHA,
    PromotionHyperband,
    RandomSearch,
    RegularizedEvolution,
    search,
)
from tests.test_schedulers import STEPS, Cell, quality, value

pytestmark = pytest.mark.anyio


async def climb(model: Cell) -> float:
    """The learning curve of test_schedulers, continued from its checkpoint when resumed
    (epoch, save_checkpoint, report: the documented order)."""
    sample = {"a": model.a, "b": model.b}
    state = e.load_checkpoint()
    start = 0 if state is None else int(state["step"])
    for step in range(start + 1, STEPS + 1):
        await anyio.lowlevel.checkpoint()  # one epoch
        e.save_checkpoint({"step": step})
        e.report_intermediate(value(sample, step))
    return value(sample, STEPS)


def cell() -> e.SimplifiedModelSpace:
    """Stored in a run file and rebuilt from it at a resume, with ``climb``."""
    return e.SimplifiedModelSpace.from_model(Cell(), e.FunctionEvaluator(climb))


def reference(samples: list[dict[str, Any]], brackets: list[int],
              rungs: tuple[tuple[int, ...], ...], eta: float) -> list[int]:
    """Promotion ASHA with one worker, written out plainly: each time the worker is
    free, promote (brackets in order, the highest rung first, best first) the best
    unpromoted model of a rung's top floor(n/eta), else start the next sample. Returns
    the steps each sample trains in the end."""
    steps = [0] * len(samples)
    at: dict[tuple[int, int], list[int]] = {}  # (bracket, rung index) -> arrivals
    promoted: set[tuple[int, int, int]] = set()

    def train(i: int, level: int) -> None:
        ladder = rungs[brackets[i]]
        steps[i] = ladder[level] if level < len(ladder) else STEPS
        if level < len(ladder):
            at.setdefault((brackets[i], level), []).append(i)

    started = 0
    while True:
        job = None
        for b in range(len(rungs)):
            for level in reversed(range(len(rungs[b]))):
                arrived = at.get((b, level), [])
                top = sorted(arrived, key=lambda i: (-quality(samples[i]), arrived.index(i)))
                for i in top[:math.floor(len(arrived) / eta)]:
                    if job is None and (b, level, i) not in promoted:
                        job = (b, level, i)
        if job is not None:
            promoted.add(job)
            train(job[2], job[1] + 1)
        elif started < len(samples):
            train(started, 0)
            started += 1
        else:
            return steps


def check_against_reference(strategy: PromotionHyperband,
                            handles: list[e.ModelHandle]) -> None:
    handles = sorted(handles, key=lambda h: h.model_id)  # one worker: proposal order
    samples = [dict(h.model.sample or {}) for h in handles]
    brackets = [strategy.brackets.of(h.model_id) for h in handles]
    expected = reference(samples, brackets, strategy.brackets.rungs,
                         strategy.reduction_factor)
    assert [len(h.model.metrics.intermediates) for h in handles] == expected
    for handle, steps in zip(handles, expected, strict=True):
        sample = dict(handle.model.sample or {})
        assert handle.model.metrics.intermediates == [value(sample, s)
                                                      for s in range(1, steps + 1)]
        if steps == STEPS:
            assert handle.status is ModelStatus.Trained
            assert handle.model.metrics.stopped_at is None
        else:
            assert handle.status is ModelStatus.Paused  # left paused at its rung


async def test_promotion_asha_promotes_the_top_of_each_rung() -> None:
    strategy = PromotionASHA(RandomSearch(0), max_resource=STEPS, reduction_factor=3,
                             max_trials=27)
    assert strategy.rungs == (1, 3)
    async with Engine(InlinePool(1)) as engine:
        ranked = await search(cell(), strategy, engine)
    handles = engine.handles()
    check_against_reference(strategy, handles)
    lengths = [len(h.model.metrics.intermediates) for h in handles]
    past_1, past_3 = sum(n > 1 for n in lengths), sum(n > 3 for n in lengths)
    assert strategy.promotions == past_1 + past_3
    # at least floor(n / eta) of each rung went on; more when a model promoted early
    # was overtaken later (asynchronous: nobody waited for the rung to fill)
    assert past_1 >= 27 // 3
    assert past_3 >= past_1 // 3
    full = [h for h in handles if h.status is ModelStatus.Trained]
    assert len(full) == past_3
    best = max(handles, key=lambda h: quality(dict(h.model.sample or {})))
    assert best in full
    assert ranked[0] is best.model
    # every step trained once: a resumed model continued from its checkpoint
    assert sum(lengths) == 27 * 1 + past_1 * 2 + past_3 * 6


async def test_promotion_hyperband_promotes_within_brackets() -> None:
    strategy = PromotionHyperband(RandomSearch(1), max_resource=STEPS, reduction_factor=3,
                                  max_trials=30, seed=4)
    assert strategy.brackets.rungs == ((1, 3), (3,), ())
    async with Engine(InlinePool(1)) as engine:
        await search(cell(), strategy, engine)
    handles = engine.handles()
    assert {strategy.brackets.of(h.model_id) for h in handles} == {0, 1, 2}
    check_against_reference(strategy, handles)
    for handle in handles:
        if strategy.brackets.of(handle.model_id) == 2:
            assert handle.status is ModelStatus.Trained  # no rungs: trained to the end


async def test_the_proposer_observes_each_model_once_at_its_first_rung() -> None:
    proposer = RegularizedEvolution(6, sample_size=3, seed=1)
    strategy = PromotionASHA(proposer, max_resource=STEPS, max_trials=24)
    async with Engine(InlinePool(3)) as engine:
        await strategy.run(engine, cell())
    handles = engine.handles()
    assert len(proposer.history) == 24
    assert proposer.in_flight == strategy.in_flight == 0
    assert proposer.seen_count == 24
    by_sample = {tuple(sorted(h.model.sample.items())): h for h in handles}  # type: ignore[union-attr]
    for seen in proposer.history:  # each at its first rung (step 1), as trained there
        handle = by_sample[tuple(sorted(seen.sample.items()))]
        assert seen.metric == value(seen.sample, 1)
        assert handle.model.metrics.intermediates[0] == seen.metric
    assert strategy.promotions >= 8
    assert any(h.status is ModelStatus.Trained for h in handles)


async def test_promotion_never_waits_for_a_rung_to_fill() -> None:
    """A model held before its first rung holds up nobody: the others pause, are
    promoted, finish, and new ones start meanwhile."""
    release = anyio.Event()
    slow_sample = {"a": 5, "b": 5}

    async def held(model: Cell) -> float:
        if {"a": model.a, "b": model.b} == slow_sample and e.load_checkpoint() is None:
            await release.wait()
        return await climb(model)

    class First(RandomSearch):
        def propose(self, leaves: e.Sample) -> e.Sample | None:  # type: ignore[override]
            return dict(slow_sample) if self.seen_count == 0 else super().propose(leaves)  # type: ignore[return-value,arg-type]

    strategy = PromotionASHA(First(3), max_resource=STEPS, max_trials=12)
    space = e.RawFormatModelSpace.from_model(Cell(), e.FunctionEvaluator(held))
    async with Engine(InlinePool(2)) as engine, anyio.create_task_group() as tg:
        tg.start_soon(strategy.run, engine, space)
        while len(engine.handles()) < 12 or engine.in_flight > 1:
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()
        slow = engine.handles()[0]
        assert slow.model.metrics.intermediates == []
        assert strategy.promotions >= 3  # the other worker promoted meanwhile
        assert any(h.status is ModelStatus.Trained for h in engine.handles())
        release.set()
    assert slow.status is ModelStatus.Trained  # the best sample: promoted to the end
    assert slow.model.metrics.stopped_at is None


async def test_a_resumed_run_promotes_the_journals_paused_models(tmp_path: Path) -> None:
    run = tmp_path / "run.db"
    first = PromotionASHA(RandomSearch(0), max_resource=STEPS, max_trials=8)
    async with Engine(InlinePool(1), journal=run) as engine:
        await first.run(engine, cell())
    before = {h.model_id: len(h.model.metrics.intermediates) for h in engine.handles()}
    assert any(h.status is ModelStatus.Paused for h in engine.handles())
    second = PromotionASHA(RandomSearch(1), max_resource=STEPS, max_trials=20)
    async with Engine(InlinePool(1), journal=run) as engine:
        await second.run(engine, cell())
        handles = engine.handles()
    assert len(handles) == 20
    for level, entries in enumerate(first.ladder.entries):  # rebuilt from the journal
        assert set(entries) <= set(second.ladder.entries[level])
    after = {h.model_id: len(h.model.metrics.intermediates) for h in handles}
    assert any(after[i] > steps for i, steps in before.items())  # promoted after a resume
    check_against_reference(second, handles)  # as if the run had never stopped


def test_promotion_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_resource"):
        PromotionASHA(max_resource=0)
    with pytest.raises(ValueError, match="brackets"):
        PromotionHyperband(max_resource=9, brackets=4)
    with pytest.raises(TypeError, match="proposer must be a BaseStrategy"):
        PromotionASHA(object(), max_resource=9)  # type: ignore[arg-type]
