"""Importable training functions that keep checkpoints, for the pause / checkpoint tests
(some run in worker processes or in a driver process the tests kill)."""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio.lowlevel

import engine as e

EPOCHS = 4


class Counter(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical([1, 2, 3, 4, 5, 6], label="x"))


def value(x: int, step: int) -> float:
    """Model ``x``'s report at ``step``: which model and which epoch, readable."""
    return float(10 * x + step)


def _start() -> int:
    """The epochs already trained: from the checkpoint this attempt continues from."""
    state: Any = e.load_checkpoint()
    return 0 if state is None else int(state["epoch"])


async def climb(model: Counter, epochs: int = EPOCHS) -> float:
    """Trains ``epochs`` epochs: checkpoint, then report, then a checkpoint of the event
    loop (where a pause lands). Its final is the epoch it continued from."""
    start = _start()
    for epoch in range(start + 1, epochs + 1):
        e.save_checkpoint({"epoch": epoch, "x": model.x})
        e.report_intermediate(value(model.x, epoch))
        await anyio.lowlevel.checkpoint()
    return float(start)


async def idle(model: Counter) -> float:
    """Trains until cancelled."""
    await anyio.sleep_forever()
    return 0.0


def climb_sync(model: Counter, epochs: int = EPOCHS, fail_at: int = 0, die_at: int = 0,
               hang_at: int = 0) -> float:
    """``climb`` in a thread or a worker process. On an attempt that starts afresh, it
    raises after reporting step ``fail_at``, its process exits (as if killed) after
    ``die_at``, or it hangs for good after ``hang_at`` (0: never)."""
    start = _start()
    for epoch in range(start + 1, epochs + 1):
        e.save_checkpoint({"epoch": epoch, "x": model.x})
        e.report_intermediate(value(model.x, epoch))
        if start == 0 and epoch == fail_at:
            raise RuntimeError(f"failed after epoch {epoch}")
        if start == 0 and epoch == die_at:
            os._exit(3)
        if start == 0 and epoch == hang_at:
            threading.Event().wait()
    return float(start)


def space(function: Any = climb, **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Counter(), e.FunctionEvaluator(function, **kwargs))
