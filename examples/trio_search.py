"""The digits search driven from Trio: ``trio.run``, a Trio nursery, Trio's threads.

The engine is written against anyio, so it runs unchanged inside a Trio program; this
script uses no asyncio and no anyio entry point. A nursery runs a small subscriber that
prints each trained model as it arrives, next to the search.

Run: ``python examples/trio_search.py --trials 8``
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import AsyncIterable
from pathlib import Path

import trio
from _digits import DEFAULT_DATA, describe, digits_space, ensure_split, held_out

import engine as e
from engine.events import Event, ModelTrained
from strategies import RandomSearch, RegularizedEvolution, search


async def print_trained(events: AsyncIterable[Event]) -> None:
    async for event in events:
        if isinstance(event, ModelTrained):
            print(f"model #{event.model_id} trained: validation {event.final:.3f} "
                  f"({event.duration:.1f} s)", flush=True)


async def main(args: argparse.Namespace) -> None:
    data = ensure_split(args.data)
    space = digits_space(data, args.epochs, args.seed)
    strategy = (RandomSearch(args.seed) if args.strategy == "random"
                else RegularizedEvolution(6, 3, seed=args.seed))
    engine = e.Engine(e.ProcessPool(args.workers), max_trials=args.trials)
    events = engine.subscribe()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(print_trained, events)  # ends with the engine's last event
        async with engine:
            ranked = await search(space, strategy, engine)
    if not ranked:
        print("no model trained")
        return
    best = ranked[0]
    sample = best.sample or {}
    val, test = await trio.to_thread.run_sync(
        functools.partial(held_out, sample, data, args.epochs, args.seed))
    print(f"trio {trio.__version__}: best of {len(engine.handles())} models: {describe(sample)}")
    print(f"validation {best.metric:.3f} in the search; trained again: validation {val:.3f}, "
          f"test {test:.3f}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The digits search under trio.run.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--strategy", choices=("random", "evolution"), default="evolution",
                        help="how to propose architectures")
    parser.add_argument("--trials", type=int, default=12, help="models to train")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per model")
    parser.add_argument("--seed", type=int, default=0, help="strategy and training seed")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="FILE",
                        help="the split digits data, made on first use")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        trio.run(main, parse_args(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
