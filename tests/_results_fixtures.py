"""Run files for the results API and dashboard tests: events written by a real RunStore,
and importable evaluator functions for real engine runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

import engine as e
from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    MetricReported,
    ModelFailed,
    ModelQueued,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
)
from engine.store import RunStore

TRACEBACK = 'Traceback (most recent call last):\n  File "train.py", line 3\nValueError: nope\n'


def run_events(*, stop: bool = True) -> list[Event]:
    """Three trained models with curves, one that failed, retried and trained, one that
    failed for good, one still training; then (``stop``) the engine stops."""
    events: list[Any] = [(EngineStarted, {"pool": "inline", "capacity": 2})]
    for model_id, final in {1: 0.5, 2: 0.9, 3: 0.7}.items():
        events += [(ModelQueued, {"model_id": model_id, "sample": {"x": model_id, "act": "relu"}}),
                   (TrainingStarted, {"model_id": model_id, "worker": "w0", "attempt": 1})]
        events += [(MetricReported, {"model_id": model_id, "value": final * s / 3, "step": s})
                   for s in (1, 2, 3)]
        events += [(ModelTrained, {"model_id": model_id, "final": final, "duration": 1.5})]
    events += [
        (ModelQueued, {"model_id": 4, "sample": {"x": 4, "act": "tanh"}}),
        (TrainingStarted, {"model_id": 4, "worker": "w1", "attempt": 1}),
        (MetricReported, {"model_id": 4, "value": 0.1, "step": 1}),
        (ModelFailed, {"model_id": 4, "error_type": "OSError", "message": "disk",
                       "traceback": "tb", "attempt": 1}),
        (ModelRetrying, {"model_id": 4, "attempt": 2, "reason": "OSError: disk"}),
        (TrainingStarted, {"model_id": 4, "worker": "w0", "attempt": 2}),
        (MetricReported, {"model_id": 4, "value": 0.3, "step": 1}),
        (ModelTrained, {"model_id": 4, "final": 0.3, "duration": 2.0}),
        (ModelQueued, {"model_id": 5, "sample": {"x": 5, "act": "tanh"}}),
        (TrainingStarted, {"model_id": 5, "worker": "w1", "attempt": 1}),
        (ModelFailed, {"model_id": 5, "error_type": "ValueError", "message": "nope",
                       "traceback": TRACEBACK, "attempt": 1}),
        (ModelQueued, {"model_id": 6, "sample": {"x": 6, "act": "relu"}}),
        (TrainingStarted, {"model_id": 6, "worker": "w1", "attempt": 1}),
        (MetricReported, {"model_id": 6, "value": 0.2, "step": 1})]
    if stop:
        events += [(EngineStopped, {"reason": "finished"})]
    return [kind(seq=seq, time=100.0 + seq, **fields)
            for seq, (kind, fields) in enumerate(events, 1)]


async def write(path: Path, events: list[Event]) -> None:
    store = await RunStore.open(path)
    for event in events:
        store.append(event)
    await store.aclose()


def write_run(path: Path, events: list[Event] | None = None) -> Path:
    anyio.run(write, path, run_events() if events is None else events)
    return path


class Grid(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical(list(range(40)), label="x"))
        self.act = e.ensure_frozen(e.Categorical(["relu", "tanh", "gelu"], label="act"))


def grid_space(fn: Any, **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Grid(), e.FunctionEvaluator(fn, **kwargs))


def curve_or_fail(model: Grid, fail: int = -1, steps: int = 3) -> float:
    """Reports ``steps`` intermediates; fails when ``model.x == fail``."""
    for step in range(steps):
        e.report_intermediate(model.x * (step + 1) / steps)
    if model.x == fail:
        raise ValueError(f"x={model.x} does not fit")
    return float(model.x)


async def failed_loud_run(path: Path) -> Path:
    """A real engine run: one ProcessPool trial prints 3 lines and a line to stderr, then
    raises; its full output is kept in the run file."""
    from tests._engine_fixtures import loud_model

    async with e.Engine(e.ProcessPool(1), journal=path) as engine:
        await (await engine.submit(loud_model(3, fail=True)))
    return path
