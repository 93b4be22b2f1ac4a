"""ProcessPool figures for benchmarks/engine_overhead.py.

- :func:`overhead_ratio`: no-op trials per second through ``Engine(ProcessPool(2))``
  (one subscriber draining the events) over no-op calls per second through
  ``anyio.to_process.run_sync`` with 2 in flight. Target: >= 0.5.
- :func:`parent_cpu_us_per_trial`: CPU time of this (the parent) process, all its
  threads and none of its children, per no-op trial through ``Engine(ProcessPool(2))``
  with one subscriber and the journal on; the median of three rounds. Target: <= 100.
- :func:`utilization`: 2 workers run 200 trials that each busy-wait 20 ms; the time
  spent busy over (workers x wall time). Target: >= 0.97.

Both start their workers before the clock starts: they measure steady state; both take
``prefetch`` (the pool's default, 1). The evaluators live in this module, which the
workers import through the parent's sys.path.
``python benchmarks/_process_figures.py [asyncio] [trio]`` prints both for prefetch 0
and 1, one after the other, with a breakdown (the pool alone, without the engine;
to_process alone), and :func:`cpu_breakdown`: the parent's CPU per no-op trial layer by
layer (a bare to_process call, the pool alone, + the engine, + a subscriber, + the
journal).

Measured on an H200 machine (16 vCPUs, load below 1), in the same run as the code
before prefetch, asyncio / trio: utilization 0.982 / 0.978 with prefetch=1, against
0.958 / 0.954 before and 0.948 / 0.943 with prefetch=0; overhead_ratio 0.558 / 0.643,
against 0.521 / 0.728 before and 0.467 / 0.522 with prefetch=0 (engine+pool 7664 /
7614 no-op trials/s, against 6799 / 7626 and 6508 / 4252). A repeat (two rounds, old
and new interleaved) gave utilization 0.978-0.980 against 0.948-0.961, and
overhead_ratio 0.555-0.647 against 0.561-0.646: no-op trials are bound by the parent's
CPU (about 130 us a trial), and the to_process baseline itself moved between 7600 and
15000 calls/s from run to run. Between two 20 ms trials a worker idled 0.36-0.40 ms
with prefetch=1, 0.7-1.0 ms before, 1.0-1.15 ms with prefetch=0: what is left is the
worker's own work between trials (capture, load) in that machine's sandbox, where
each system call is slow.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_process

import engine as e
from engine import Engine
from engine.workers.process import ProcessPool

__all__ = ("cpu_breakdown", "overhead_ratio", "parent_cpu_us_per_trial", "utilization")


class Space(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Numerical(0.0, 1.0, label="x"))


def noop_trial(model: Space) -> float:
    return 0.0


def busy_trial(model: Space, seconds: float) -> float:
    """Spins for ``seconds``; its metric is the time it actually spun."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pass
    return time.perf_counter() - start


def noop_call() -> None:
    return None


async def _drain(subscription: Any) -> None:
    async for _ in subscription:
        pass


async def _through_engine(models: list[e.SimplifiedModelSpace], workers: int,
                          prefetch: int = 1) -> tuple[float, list[e.ExecutableModelSpace]]:
    """Wall time from the first submit until the last model finished, and the models."""
    async with anyio.create_task_group() as tg:
        engine = Engine(ProcessPool(workers, prefetch=prefetch),
                        queue_size=max(64, len(models)))
        tg.start_soon(_drain, engine.subscribe())
        async with engine:  # the workers are up once this is entered
            start = time.perf_counter()
            handles = [await engine.submit(model) for model in models]
            finished = [await handle for handle in handles]
            elapsed = time.perf_counter() - start
    return elapsed, finished


async def _to_process_calls_per_s(calls: int, in_flight: int) -> float:
    remaining = [calls]

    async def caller() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await anyio.to_process.run_sync(noop_call)

    async with anyio.create_task_group() as tg:  # start the worker processes first
        for _ in range(in_flight):
            tg.start_soon(anyio.to_process.run_sync, noop_call)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(in_flight):
            tg.start_soon(caller)
    return calls / (time.perf_counter() - start)


async def overhead_ratio(trials: int = 1000, prefetch: int = 1) -> float:
    """Engine + ProcessPool(2) no-op trials/s over to_process.run_sync no-op calls/s."""
    space = e.SimplifiedModelSpace.from_model(Space(), e.FunctionEvaluator(noop_trial))
    models = [space.freeze({"x": i / trials}) for i in range(trials)]
    elapsed, finished = await _through_engine(models, workers=2, prefetch=prefetch)
    assert all(m.status is e.ModelStatus.Trained for m in finished)
    baseline = await _to_process_calls_per_s(trials, in_flight=2)
    return (trials / elapsed) / baseline


async def parent_cpu_us_per_trial(trials: int = 1000, rounds: int = 3, *,
                                  subscriber: bool = True, journal: bool = True) -> float:
    """CPU microseconds this process spends per no-op trial through ProcessPool(2), with
    one subscriber and the journal on (either can be left off, for :func:`cpu_breakdown`):
    from the first submit of a round to its last handle resolving (committed). The
    median of ``rounds`` rounds in one engine, after a warm-up round; CPU time, unlike
    wall time, hardly moves with the machine's load."""
    space = e.SimplifiedModelSpace.from_model(Space(), e.FunctionEvaluator(noop_trial))
    per_trial = []
    with tempfile.TemporaryDirectory() as folder:
        async with anyio.create_task_group() as tg:
            engine = Engine(ProcessPool(2), queue_size=64,
                            journal=Path(folder) / "run.nasrun" if journal else None)
            if subscriber:
                tg.start_soon(_drain, engine.subscribe())
            async with engine:
                for round_ in range(rounds + 1):
                    count = trials if round_ else max(50, trials // 10)
                    models = [space.freeze({"x": i / count}) for i in range(count)]
                    start = time.process_time()
                    handles = [await engine.submit(model) for model in models]
                    for handle in handles:
                        await handle
                    if round_:
                        per_trial.append((time.process_time() - start) / count * 1e6)
            if not all(h.status is e.ModelStatus.Trained for h in engine.handles()):
                raise RuntimeError("a no-op trial did not train")
    return statistics.median(per_trial)


async def pool_cpu_us_per_trial(trials: int = 1000, rounds: int = 3) -> float:
    """CPU microseconds this process spends per no-op trial through ProcessPool(2).run
    alone (no engine), as many in flight as the pool takes; the median of ``rounds``."""
    spent = await _pool_rounds(ProcessPool(2), trials, rounds, time.process_time)
    return statistics.median(s / trials * 1e6 for s in spent)


async def cpu_breakdown(trials: int = 1000) -> dict[str, float]:
    """Where ``parent_cpu_us_per_trial`` goes, each layer measured on its own in one run:
    a bare ``anyio.to_process.run_sync`` no-op call (2 in flight, for scale), the pool
    alone, then the engine around it without a subscriber or a journal, then with one
    subscriber, then with the journal too (``parent_cpu_us_per_trial``)."""
    start = time.process_time()
    await _to_process_calls_per_s(trials, in_flight=2)
    return {
        "to_process_call": (time.process_time() - start) / trials * 1e6,
        "pool_alone": await pool_cpu_us_per_trial(trials),
        "engine": await parent_cpu_us_per_trial(trials, subscriber=False, journal=False),
        "engine_subscriber": await parent_cpu_us_per_trial(trials, journal=False),
        "engine_subscriber_journal": await parent_cpu_us_per_trial(trials),
    }


async def utilization(trials: int = 200, seconds: float = 0.02, prefetch: int = 1) -> float:
    """Busy time over (2 workers x wall time) for trials that each spin ``seconds``."""
    space = e.SimplifiedModelSpace.from_model(
        Space(), e.FunctionEvaluator(busy_trial, seconds=seconds))
    models = [space.freeze({"x": i / trials}) for i in range(trials)]
    elapsed, finished = await _through_engine(models, workers=2, prefetch=prefetch)
    busy = sum(m.metric or 0.0 for m in finished)
    return busy / (2 * elapsed)


class _Trial:
    model_id, attempt = 0, 1

    def loading(self) -> None: ...

    def started(self, worker: str, gpus: tuple[int, ...] = (), setup: float = 0.0) -> None: ...

    def intermediate(self, value: float) -> None: ...

    def final(self, value: float) -> None: ...


class _Monitor:
    def worker_started(self, worker: str, pid: int | None, gpus: tuple[int, ...]) -> None: ...

    def worker_died(self, worker: str, pid: int | None, exitcode: int | None,
                    signal: int | None, reason: str) -> None: ...


async def pool_trials_per_s(trials: int = 400, workers: int = 2, prefetch: int = 1) -> float:
    """No-op trials per second through ProcessPool.run alone (no engine), as many in
    flight as the pool takes: where the engine's share of the overhead ends and the
    pool's begins."""
    pool = ProcessPool(workers, prefetch=prefetch)
    (elapsed,) = await _pool_rounds(pool, trials, 1, time.perf_counter)
    return trials / elapsed


async def _pool_rounds(pool: ProcessPool, trials: int, rounds: int,
                       clock: Callable[[], float]) -> list[float]:
    """Serve ``pool`` and run ``rounds`` rounds of ``trials`` no-op models through its
    run() alone, as many in flight as it takes; what ``clock`` measured of each round
    (the models are made before a round's clock starts)."""
    space = e.SimplifiedModelSpace.from_model(Space(), e.FunctionEvaluator(noop_trial))
    spent = []

    async def runner(models: Iterator[e.SimplifiedModelSpace]) -> None:
        for model in models:
            await pool.run(model, _Trial())

    async with anyio.create_task_group() as tg:
        await tg.start(pool.serve, _Monitor())
        for _ in range(rounds):
            models = iter([space.freeze({"x": i / trials}) for i in range(trials)])
            start = clock()
            async with anyio.create_task_group() as runners:
                for _ in range(pool.capacity + pool.prefetch):
                    runners.start_soon(runner, models)
            spent.append(clock() - start)
        tg.cancel_scope.cancel()
    return spent


async def _report() -> None:
    space = e.SimplifiedModelSpace.from_model(Space(), e.FunctionEvaluator(noop_trial))
    print("  to_process calls/s", round(await _to_process_calls_per_s(1000, 2)))
    for prefetch in (0, 1):  # one after the other, so both see the same machine
        models = [space.freeze({"x": i / 1000}) for i in range(1000)]
        elapsed, _ = await _through_engine(models, workers=2, prefetch=prefetch)
        print(f"  prefetch={prefetch}: engine+pool trials/s {round(1000 / elapsed)}, pool "
              f"alone {round(await pool_trials_per_s(1000, prefetch=prefetch))}")
    breakdown = await cpu_breakdown()
    print("  parent CPU us per no-op trial: " + ", ".join(
        f"{name} {value:.0f}" for name, value in breakdown.items()))
    for prefetch in (0, 1):
        print(f"  prefetch={prefetch}: overhead_ratio "
              f"{await overhead_ratio(prefetch=prefetch):.3f}, utilization "
              f"{await utilization(prefetch=prefetch):.3f}")


if __name__ == "__main__":
    import sys

    # Run the figures from the module as imported, not from __main__: a script's symbols
    # take a slower path (see _recipe.Symbol) that would distort them.
    import _process_figures as figures

    for backend in sys.argv[1:] or ["asyncio", "trio"]:
        print(backend)
        anyio.run(figures._report, backend=backend)
