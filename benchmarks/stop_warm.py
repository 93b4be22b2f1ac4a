"""Seconds per model stopped early through ``Engine(ProcessPool(1))``, with workers
that import torch: each model trains a small torch model, reports every epoch, and is
stopped (``handle.stop()``, as ASHA does) at its second report; the next model waits
for the worker. Figures, in the same run:

- ``stopped_trial_s_warm``: the stopped trial ends at its next report and its worker
  takes the next model (ProcessPool's Halt).
- ``stopped_trial_s_killed``: the old path, forced by ``HALT_GRACE = 0``: the worker
  is killed and a new one spawns and imports torch.

``python benchmarks/stop_warm.py [models]`` (default 8) prints both as JSON figure
lines, then the worker deaths each run had.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

import engine as e
import engine.workers.process as process
from engine import events as ev


class Space(e.BaseModelSpace):
    def __init__(self) -> None:
        self.width = e.ensure_frozen(e.Categorical([8, 16], label="width"))


def train(model: Space, epochs: int = 50) -> float:
    """A small torch regression, one report per epoch."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, model.width), torch.nn.ReLU(),
                              torch.nn.Linear(model.width, 1))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.randn(256, 16), torch.randn(256, 1)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        for _ in range(20):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            optimizer.step()
        e.report_intermediate(float(loss))
    return float(loss)


def _stop_at_two(handle: e.ModelHandle, step: int, _: Any) -> None:
    if step == 2:
        handle.stop()


async def seconds_per_stopped_trial(models: int, *, warm: bool) -> tuple[float, int]:
    """(seconds per stopped model, worker deaths) for ``models`` models in a row."""
    process.HALT_GRACE = 5.0 if warm else 0.0
    engine = e.Engine(e.ProcessPool(1, prefetch=0, preload=["torch"]))
    log = engine.subscribe()
    space = e.SimplifiedModelSpace.from_model(Space(), e.FunctionEvaluator(train))
    async with engine:
        engine.listen(_stop_at_two)
        await (await engine.submit(space.freeze({"width": 8})))  # warm-up (stopped too)
        began = time.perf_counter()
        for i in range(models):
            handle = await engine.submit(space.freeze({"width": 8 if i % 2 else 16}))
            await handle
            assert handle.model.metrics.stopped_at == 2, handle.model.metrics
        elapsed = time.perf_counter() - began
    deaths = sum([isinstance(event, ev.WorkerDied) async for event in log])
    return elapsed / models, deaths


async def _report(models: int) -> None:
    for warm in (True, False):
        seconds, deaths = await seconds_per_stopped_trial(models, warm=warm)
        name = "stopped_trial_s_warm" if warm else "stopped_trial_s_killed"
        print(json.dumps({"figure": name, "value": round(seconds, 3), "unit": "s"}))
        print(f"  worker deaths: {deaths} for {models} stopped models", file=sys.stderr)


if __name__ == "__main__":
    import stop_warm  # its symbols from the module as imported, not from __main__

    anyio.run(stop_warm._report, int(sys.argv[1]) if sys.argv[1:] else 8)
