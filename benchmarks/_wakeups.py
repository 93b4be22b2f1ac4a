"""Loop iterations and task steps per no-op trial, layer by layer (the layers of
``_process_figures.cpu_breakdown``): counts, not times, so they hold on a noisy machine.

Run: ``python benchmarks/_wakeups.py [asyncio] [trio] [--trials N]``

On asyncio it counts ``BaseEventLoop._run_once`` calls (loop iterations) and the
callbacks run (a task step is a callback of its Task, named by the task); on trio, an
Instrument counts ``before_io_wait`` (loop iterations) and ``before_task_step``. Each
layer is counted from its pool's start to its end, warm-up round included, so the
figures carry a little start-up; divide by the trials run.

What it found (issue 13, item 5), the journal and one subscriber on, 2000 trials:
5.1-5.9 task steps and 2.0-2.1 loop iterations per no-op trial on both backends, where
a step costs 13-16 us of CPU when one task wakes another through an Event and a bare
checkpoint 8-10 us (so the steps alone are 70-90 us of the 300-450). Per trial: 2
steps are the benchmark's own submit and await (each public await is a checkpoint);
1.1-1.8 the runners (one when a trial's job settles, the rest when a runner finds the
queue empty and is woken by the next submit); 0.7-1.05 the subscriber; 0.55-1.0 the
pool's reader (one read often brings two trials' messages; on asyncio each read is a
callback as well); 0.02-0.2 the journal's writer and resolver (a batch per 10 ms).
The pool's rebalancer woke 0.26-0.30 times per trial on asyncio (0.04-0.06 on trio)
to look at imbalances that had already ended; it now sleeps REBALANCE_AFTER first.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _process_figures as figures


class _Counts:
    def __init__(self) -> None:
        self.iterations = 0
        self.steps: collections.Counter[str] = collections.Counter()


_counts = _Counts()


def _count_asyncio() -> None:
    """Wrap asyncio's loop iteration and callback run (in this process only)."""
    loop_class: Any = asyncio.base_events.BaseEventLoop
    run_once = loop_class._run_once

    def counted_run_once(self: Any) -> None:
        _counts.iterations += 1
        run_once(self)

    handle_class: Any = asyncio.events.Handle
    run = handle_class._run

    def counted_run(self: Any) -> None:
        owner = getattr(self._callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            _counts.steps["task " + owner.get_name().rsplit(".", 1)[-1]] += 1
        else:
            _counts.steps["callback"] += 1
        run(self)

    loop_class._run_once, handle_class._run = counted_run_once, counted_run


class _TrioCounter:
    """A trio Instrument."""

    def before_io_wait(self, timeout: float) -> None:
        _counts.iterations += 1

    def before_task_step(self, task: Any) -> None:
        _counts.steps["task " + task.name.rsplit(".", 1)[-1]] += 1


def _layers(trials: int) -> list[tuple[str, int, Callable[[], Awaitable[Any]]]]:
    warm = max(50, trials // 10)  # parent_cpu_us_per_trial's warm-up round

    def engine(subscriber: bool, journal: bool) -> Callable[[], Awaitable[Any]]:
        return lambda: figures.parent_cpu_us_per_trial(
            trials, rounds=1, subscriber=subscriber, journal=journal)

    return [
        ("pool_alone", trials, lambda: figures._pool_rounds(
            figures.ProcessPool(2), trials, 1, time.process_time)),
        ("engine", trials + warm, engine(False, False)),
        ("engine_subscriber", trials + warm, engine(True, False)),
        ("engine_subscriber_journal", trials + warm, engine(True, True)),
    ]


async def wakeup_breakdown(trials: int = 2000) -> None:
    """Print, per layer, loop iterations and task steps per trial, and the busiest."""
    for name, count, measure in _layers(trials):
        _counts.iterations, _counts.steps = 0, collections.Counter()
        await measure()
        steps = sum(_counts.steps.values())
        print(f"  {name}: loop iterations {_counts.iterations / count:.2f}, "
              f"steps {steps / count:.2f} per trial; " + ", ".join(
                  f"{who} {n / count:.2f}" for who, n in _counts.steps.most_common(6)
                  if n / count >= 0.02))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backends", nargs="*", default=["asyncio", "trio"])
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    for backend in args.backends:
        print(backend)
        if backend == "asyncio":
            _count_asyncio()
            anyio.run(wakeup_breakdown, args.trials)
        else:
            anyio.run(wakeup_breakdown, args.trials, backend="trio",
                      backend_options={"instruments": [_TrioCounter()]})
