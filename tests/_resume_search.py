"""A real search with a journal, for the kill-and-resume test:
``python -m tests._resume_search RUN BUDGET [--strategy random|evolution]``.

It prints ``trained <id>`` once each trained model is committed to the journal, so the
test knows when to kill it.
"""

from __future__ import annotations

import argparse
import sys
import time

import anyio

import engine as e
from engine import Engine, InlinePool
from strategies import RandomSearch, RegularizedEvolution, search


class Grid(e.BaseModelSpace):
    def __init__(self) -> None:
        self.a = e.ensure_frozen(e.Categorical(list(range(12)), label="a"))
        self.b = e.ensure_frozen(e.Categorical(list(range(12)), label="b"))


def train(model: Grid) -> float:
    time.sleep(0.02)
    e.report_intermediate(model.a)
    return -((model.a - 7) ** 2) - (model.b - 3) ** 2


def space() -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Grid(), e.FunctionEvaluator(train))


async def main(run: str, budget: int, strategy: str) -> None:
    chosen = (RandomSearch(seed=1) if strategy == "random"
              else RegularizedEvolution(population_size=8, sample_size=3, seed=1))
    async with Engine(InlinePool(2), max_trials=budget, journal=run) as engine:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_announce, engine, engine.subscribe())
            await search(space(), chosen, engine)
            tg.cancel_scope.cancel()


async def _announce(engine: Engine, events: e.Subscription) -> None:
    async for event in events:
        if isinstance(event, e.events.ModelTrained):
            handle = next(h for h in engine.handles() if h.model_id == event.model_id)
            await handle  # resolves once its result is committed to the journal
            print(f"trained {event.model_id}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("budget", type=int)
    parser.add_argument("--strategy", default="random")
    args = parser.parse_args()
    anyio.run(main, args.run, args.budget, args.strategy)
    sys.exit(0)
