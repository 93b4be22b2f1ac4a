"""RayPool figures for benchmarks/engine_overhead.py.

- :func:`ray_vs_process_ratio`: no-op trials per second through ``Engine(RayPool(2))``
  over the same through ``Engine(ProcessPool(2))``, measured in the same run on the same
  machine (one subscriber draining the events of each). Needs Ray (the ``ray`` extra).

Both engines are up before the clock starts (steady state; the RayPool starts a local
Ray instance of its own) and run alternating batches; each rate is the median batch.
The evaluator lives in this module, which the workers import through the parent's
sys.path.

Run: python benchmarks/_ray_figures.py [asyncio|trio ...]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import anyio

import engine as e
from engine import Engine

__all__ = ("ray_vs_process_ratio",)


class Space(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Numerical(0.0, 1.0, label="x"))


def noop_trial(model: Space) -> float:
    return 0.0


async def _drain(subscription: Any) -> None:
    async for _ in subscription:
        pass


def _models(trials: int) -> list[e.SimplifiedModelSpace]:
    space = e.SimplifiedModelSpace.from_model(Space(), e.FunctionEvaluator(noop_trial))
    return [space.freeze({"x": i / trials}) for i in range(trials)]


async def _batch_rate(engine: Engine, trials: int) -> float:
    """No-op trials per second, from the first submit until the last one finished."""
    models = _models(trials)
    start = time.perf_counter()
    handles = [await engine.submit(model) for model in models]
    finished = [await handle for handle in handles]
    elapsed = time.perf_counter() - start
    if not all(m.status is e.ModelStatus.Trained for m in finished):
        raise RuntimeError(f"not every no-op trial trained through {engine.pool!r}")
    return trials / elapsed


async def ray_and_process_rates(trials: int = 400, rounds: int = 3,
                                workers: int = 2) -> tuple[float, float]:
    """Median no-op trials/s through RayPool and through ProcessPool (``workers`` each),
    in alternating batches of ``trials`` while both pools are up, so that both see the
    same load on a shared machine."""
    from engine.workers.process import ProcessPool
    from engine.workers.ray_pool import RayPool

    rates: tuple[list[float], list[float]] = ([], [])
    engines = (Engine(RayPool(workers), queue_size=trials),
               Engine(ProcessPool(workers), queue_size=trials))
    async with anyio.create_task_group() as tg:
        for engine in engines:
            tg.start_soon(_drain, engine.subscribe())
        async with engines[0], engines[1]:  # the workers are up once these are entered
            for _ in range(rounds):
                for engine, rate in zip(engines, rates, strict=True):
                    rate.append(await _batch_rate(engine, trials))
    return statistics.median(rates[0]), statistics.median(rates[1])


async def ray_vs_process_ratio(trials: int = 400) -> float:
    """RayPool(2) no-op trials/s over ProcessPool(2) no-op trials/s, same run."""
    ray_rate, process_rate = await ray_and_process_rates(trials)
    return ray_rate / process_rate


async def _report() -> None:
    ray_rate, process_rate = await ray_and_process_rates()
    print("  RayPool(2) trials/s", round(ray_rate))
    print("  ProcessPool(2) trials/s", round(process_rate))
    print("  ray_vs_process_ratio", round(ray_rate / process_rate, 3))


if __name__ == "__main__":
    import sys

    for backend in sys.argv[1:] or ["asyncio", "trio"]:
        print(backend)
        anyio.run(_report, backend=backend)
