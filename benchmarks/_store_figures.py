"""Run-store figures.

- ``resume_100k_events_s``: seconds to reopen a run of 100,000 events and compute its
  resume state (target: under 2 s).
- ``write_events_per_s``: events per second the background writer commits when an engine
  appends them as fast as it can.

Run ``python benchmarks/_store_figures.py`` to print both.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import anyio

import engine as e
from engine.events import (
    EngineStarted,
    EngineStopped,
    Event,
    MetricReported,
    ModelQueued,
    ModelTrained,
    TrainingStarted,
)
from engine.store import RunStore

METRICS_PER_MODEL = 7  # 10 events per model: queued, training, 7 metrics, trained


class SyntheticSpace(e.BaseModelSpace):
    """The space of the synthetic run's models, so that a resumed engine can rebuild
    (and train again) the one model the run leaves unfinished."""

    def __init__(self) -> None:
        self.width = e.ensure_frozen(e.Categorical([16 * i for i in range(8)], label="width"))
        self.act = e.ensure_frozen(e.Categorical(["relu", "tanh"], label="act"))
        self.lr = e.ensure_frozen(e.Categorical([0.1, 0.01], label="lr"))


def noop(model: SyntheticSpace) -> float:
    return 0.0


def model_blob() -> bytes:
    """A real dump of one frozen model of :class:`SyntheticSpace` (about 200 bytes)."""
    space = e.SimplifiedModelSpace.from_model(SyntheticSpace(), e.FunctionEvaluator(noop))
    return space.freeze({"width": 16, "act": "relu", "lr": 0.1}).dump()


def synthetic_events(count: int) -> list[Event]:
    """``count`` events of a plausible run: engine started, trained models, stopped."""
    events: list[Event] = [EngineStarted(seq=1, time=0.0, pool="inline", capacity=4)]
    model = 0
    while len(events) < count - 1:
        model += 1
        seq, now = len(events) + 1, float(len(events))
        events.append(ModelQueued(seq=seq, time=now, model_id=model,
                                  sample={"width": 16 * (model % 8), "act": "relu", "lr": 0.1}))
        events.append(TrainingStarted(seq=seq + 1, time=now, model_id=model, worker="w0",
                                      attempt=1))
        for step in range(METRICS_PER_MODEL):
            events.append(MetricReported(seq=seq + 2 + step, time=now, model_id=model,
                                         value=step / 10, step=step))
        events.append(ModelTrained(seq=seq + 2 + METRICS_PER_MODEL, time=now,
                                   model_id=model, final=model / 1000, duration=1.0))
    del events[count - 1:]
    events.append(EngineStopped(seq=count, time=float(count), reason="finished"))
    return events


async def write_run(path: Path, events: list[Event]) -> float:
    """Append ``events`` to a new run at ``path``; returns seconds until all committed."""
    store = await RunStore.open(path)
    blob = model_blob()
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(store.serve)
        for event in events:
            if isinstance(event, ModelQueued):
                store.record_model(event.model_id, blob)
            store.append(event)
            if event.seq % 64 == 0:  # an engine yields to the loop now and then
                await anyio.lowlevel.checkpoint()
        await store.flushed(events[-1].seq)
        elapsed = time.perf_counter() - start
        tg.cancel_scope.cancel()
    return elapsed


async def _reopen(path: Path) -> float:
    start = time.perf_counter()
    store = await RunStore.open(path)
    state = store.resume_state
    elapsed = time.perf_counter() - start
    await store.aclose()
    if state.next_seq != 100_001:
        raise RuntimeError(f"expected 100,000 events, the run has {state.next_seq - 1}")
    return elapsed


def resume_100k_events_s(directory: str | None = None) -> float:
    """Seconds to open a 100,000-event run and load its resume state (best of 3)."""
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        path = Path(folder) / "run.nasrun"
        anyio.run(write_run, path, synthetic_events(100_000))
        return min(anyio.run(_reopen, path) for _ in range(3))


def write_events_per_s(count: int = 100_000, directory: str | None = None) -> float:
    """Events per second from the first append to the last commit."""
    events = synthetic_events(count)
    with tempfile.TemporaryDirectory(dir=directory) as folder:
        return count / anyio.run(write_run, Path(folder) / "run.nasrun", events)


if __name__ == "__main__":
    print(f"resume_100k_events_s: {resume_100k_events_s():.3f} s (target < 2 s)")
    print(f"write_events_per_s:   {write_events_per_s():,.0f} events/s")
