"""Event subscribers: every event of a running search as a JSON line, and a live count
of the models in each status.

Two subscribers read the same engine at once, each at its own pace:

- ``print_events`` writes each event to stdout as one JSON line (msgspec, the same
  encoding as ``nas-engine events RUN``); ``engine.events.decode_json`` reads a line back
  into the same typed struct;
- ``StatusCount`` keeps, for each model, the status its last event gave it, and writes
  the count per status to stderr whenever it changes (at most every ``--every``
  seconds) and once more when the engine stops.

The search is the digits search of ``digits_search.py`` (``_digits.py``), small.

Run: ``python examples/subscribe_events.py --trials 6 > events.jsonl``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable
from pathlib import Path
from typing import TextIO

import anyio
from _digits import DEFAULT_DATA, digits_space, ensure_split

import engine as e
from engine.events import (
    EngineStopped,
    Event,
    MetricReported,
    ModelEvent,
    ModelFailed,
    ModelInterrupted,
    ModelInvalid,
    ModelQueued,
    ModelRetrying,
    ModelTrained,
    TrainingStarted,
    encode_json,
)
from strategies import RandomSearch, RegularizedEvolution, Strategy, search

#: The status each model event leaves its model in.
STATUS_AFTER: dict[type[ModelEvent], e.ModelStatus] = {
    ModelQueued: e.ModelStatus.Frozen,
    TrainingStarted: e.ModelStatus.Training,
    MetricReported: e.ModelStatus.Training,
    ModelTrained: e.ModelStatus.Trained,
    ModelFailed: e.ModelStatus.Failed,
    ModelRetrying: e.ModelStatus.Retrying,
    ModelInterrupted: e.ModelStatus.Interrupted,
    ModelInvalid: e.ModelStatus.Invalid,
}


async def print_events(events: AsyncIterable[Event], out: TextIO = sys.stdout) -> int:
    """Write every event as a JSON line until the engine's last one; returns how many."""
    count = 0
    async for event in events:
        out.write(encode_json(event).decode() + "\n")
        out.flush()
        count += 1
    return count


class StatusCount:
    """The current status of every model seen, from events alone."""

    def __init__(self) -> None:
        self.status: dict[int, e.ModelStatus] = {}

    def update(self, event: Event) -> bool:
        """Apply ``event``; whether a model's status changed."""
        if not isinstance(event, ModelEvent) or type(event) not in STATUS_AFTER:
            return False
        new = STATUS_AFTER[type(event)]
        old = self.status.get(event.model_id)
        self.status[event.model_id] = new
        return new is not old

    def line(self) -> str:
        """``status: 2 training, 3 trained``, statuses in life-cycle order."""
        counts = Counter(self.status.values())
        parts = [f"{counts[s]} {s.value}" for s in e.ModelStatus if counts[s]]
        return "status: " + (", ".join(parts) if parts else "no models yet")

    async def follow(self, events: AsyncIterable[Event], out: TextIO = sys.stderr,
                     every: float = 1.0) -> None:
        """Keep the count until the engine stops, writing it when it changed (at most
        every ``every`` seconds), and at the end."""
        written = -every
        async for event in events:
            if isinstance(event, EngineStopped):
                break
            if self.update(event) and time.monotonic() - written >= every:
                out.write(self.line() + "\n")
                written = time.monotonic()
        out.write(f"final {self.line()}\n")


def make_strategy(name: str, seed: int) -> Strategy:
    return RandomSearch(seed) if name == "random" else RegularizedEvolution(6, 3, seed=seed)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A search with two event subscribers: every event as a JSON line on "
        "stdout, a count of models per status on stderr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--strategy", choices=("random", "evolution"), default="random",
                        help="how to propose architectures")
    parser.add_argument("--trials", type=int, default=6, help="models to train")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per model")
    parser.add_argument("--seed", type=int, default=0, help="strategy and training seed")
    parser.add_argument("--every", type=float, default=1.0,
                        help="seconds between status lines at most")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="FILE",
                        help="the split digits data, made on first use")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    space = digits_space(ensure_split(args.data), args.epochs, args.seed)
    engine = e.Engine(e.ProcessPool(args.workers), max_trials=args.trials)
    # Subscribed before the engine starts, so both see its first event too.
    json_lines, statuses = engine.subscribe(), engine.subscribe()
    async with anyio.create_task_group() as tg:
        tg.start_soon(print_events, json_lines)
        tg.start_soon(StatusCount().follow, statuses, sys.stderr, args.every)
        async with engine:
            await search(space, make_strategy(args.strategy, args.seed), engine)
    # Both subscriptions end with the engine's last event: the task group is done.


if __name__ == "__main__":
    try:
        anyio.run(main, parse_args(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
