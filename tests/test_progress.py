"""The progress line counts what a user means: models running on a worker (not the ones
prefetched for it), finished ones, interrupted ones apart, and the whole run's budget,
the models a resumed run finished before included."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, InlinePool, ProcessPool, Progress, show_progress
from engine import events as ev
from engine.events import Event
from tests._journal_fixtures import journal_slow, journal_space
from tests.process_fixtures import children, model, sleep_for

pytestmark = pytest.mark.anyio


def events(*specs: tuple[type[Any], dict[str, Any]]) -> list[Event]:
    return [kind(seq=seq, time=float(seq), **fields) for seq, (kind, fields) in
            enumerate(specs, 1)]


def queued(model_id: int) -> tuple[type[Any], dict[str, Any]]:
    return (ev.ModelQueued, {"model_id": model_id, "sample": {}})


def started(model_id: int, worker: str) -> tuple[type[Any], dict[str, Any]]:
    return (ev.TrainingStarted, {"model_id": model_id, "worker": worker, "attempt": 1})


def trained(model_id: int, final: float) -> tuple[type[Any], dict[str, Any]]:
    return (ev.ModelTrained, {"model_id": model_id, "final": final, "duration": 1.0})


def test_a_prefetched_model_starting_ends_the_one_before_on_its_worker() -> None:
    # What a ProcessPool with prefetch emits: the worker's Done starts the model it holds
    # (TrainingStarted) before the engine records the one that ended (ModelTrained).
    progress = Progress(total=4)
    for event in events(queued(1), queued(2), queued(3), queued(4), started(1, "w0"),
                        started(2, "w1"), started(3, "w0")):
        progress.update(event)
    assert (progress.running, progress.queued, progress.done) == (2, 1, 0)
    assert progress.line().startswith("trials 0/4 done (0 failed) | 2 running | 1 queued | ")
    progress.update(ev.ModelTrained(seq=8, time=8.0, model_id=1, final=0.5, duration=1.0))
    assert (progress.running, progress.queued, progress.done) == (2, 1, 1)
    progress.update(ev.ModelRetrying(seq=9, time=9.0, model_id=2, attempt=2, reason="x"))
    assert (progress.running, progress.queued) == (1, 2)
    progress.update(ev.WorkerDied(seq=10, time=10.0, worker="w0", reason="killed"))
    assert progress.running == 0


async def test_running_never_counts_more_models_than_workers(tmp_path: Path) -> None:
    progress, most, naive = Progress(), 0, set[int]()
    most_naive = 0
    engine = Engine(ProcessPool(2, prefetch=1))
    subscription = engine.subscribe()

    async def watch() -> None:
        nonlocal most, most_naive
        async for event in subscription:
            progress.update(event)
            most = max(most, progress.running)
            if isinstance(event, ev.TrainingStarted):
                naive.add(event.model_id)
            elif isinstance(event, ev.ModelTrained):
                naive.discard(event.model_id)
            most_naive = max(most_naive, len(naive))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        async with engine:
            for _ in range(8):
                await engine.submit(model(sleep_for, seconds=0.05))
    # Events alone may show more models training than workers (a prefetched model's
    # training event can come before the end of the one before it on its worker, or not,
    # as the worker's messages arrive); the progress line never counts more than 2.
    assert most_naive >= 2
    assert 1 <= most <= 2
    assert (progress.done, progress.running, progress.queued) == (8, 0, 0)
    assert children() == []


async def interrupted_run(run: Path, gate: Path) -> Progress:
    """Six models: two trained, then four interrupted (one training, three queued) by a
    cancellation, as Ctrl-C does."""
    engine = Engine(InlinePool(1), journal=run, max_trials=6, queue_size=6)
    subscription = engine.subscribe()
    result: list[Progress] = []

    async def watch() -> None:
        result.append(await show_progress(subscription, engine=engine, stream=io.StringIO()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        with anyio.CancelScope() as scope:
            async with engine:
                for x in (1, 2):
                    await (await engine.submit(journal_space().freeze({"x": x})))
                slow = journal_space(journal_slow, gate=str(gate))
                for x in (3, 4, 5, 6):
                    await engine.submit(slow.freeze({"x": x}))
                async for event in engine.subscribe():
                    if isinstance(event, ev.MetricReported) and event.model_id == 3:
                        scope.cancel()
    return result[0]


async def test_interrupted_models_are_not_done_and_a_resume_counts_the_whole_run(
        tmp_path: Path) -> None:
    run, gate = tmp_path / "run.nasrun", tmp_path / "gate"
    progress = await interrupted_run(run, gate)
    assert (progress.done, progress.interrupted, progress.running, progress.queued) == (
        2, 4, 0, 0)
    assert progress.line().startswith(
        "trials 2/6 done (0 failed) | 4 interrupted | 0 running | 0 queued | best 2 (max, #2)")

    gate.touch()  # the resumed trainings now finish
    engine = Engine(InlinePool(1), journal=run, max_trials=6)
    subscription = engine.subscribe()
    resumed = Progress(engine=engine)
    lines: list[str] = []

    async def watch() -> None:
        async for event in subscription:
            resumed.update(event)
            lines.append(resumed.line())

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        async with engine:
            pass  # it trains the four interrupted models again
    assert lines[0].startswith("trials 2/6 done (0 failed) | 0 running | 0 queued")
    assert lines[-1].startswith("trials 6/6 done (0 failed) | 0 running | 0 queued | "
                                "best 6 (max, #6)")
    assert resumed.total == 6
