"""Training functions for tests/test_process_stop_warm.py, importable by name in a
worker process (see ``tests/_spaces.py``)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import engine as e

#: How long a trial that is never stopped keeps reporting, at most (seconds): it fails
#: after that, so a test where the stop does not reach it fails rather than hangs.
PATIENCE = 60.0


class Counter(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Categorical([1, 2, 3, 4], label="x"))


def space(function: Any, **kwargs: Any) -> e.SimplifiedModelSpace:
    return e.SimplifiedModelSpace.from_model(Counter(), e.FunctionEvaluator(function, **kwargs))


def keep_reporting(model: Counter) -> float:
    """Reports step after step (about every 10 ms) until its worker ends it, catching
    every Exception on the way (the halt must not be one); fails after PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    step = 0
    while time.monotonic() < deadline:
        step += 1
        try:
            e.report_intermediate(float(step))
        except Exception:  # a model that swallows errors
            pass
        time.sleep(0.01)
    raise RuntimeError("never stopped")


def go_quiet(model: Counter) -> float:
    """Reports two steps, then never reports again (nor returns)."""
    e.report_intermediate(1.0)
    e.report_intermediate(2.0)
    threading.Event().wait()
    return 0.0


def pid(model: Counter) -> float:
    """The worker process it ran in."""
    return float(os.getpid())


def pause_me(model: Counter, epochs: int = 4) -> float:
    """Keeps a checkpoint per epoch. Afresh, it reports two epochs, then waits to be
    halted, saving nothing and reporting only finals (dropped once paused); continued
    from a checkpoint, it trains to the end. Its final is the epoch it continued from."""
    state: Any = e.load_checkpoint()
    start = 0 if state is None else int(state["epoch"])
    for epoch in range(start + 1, epochs + 1):
        e.save_checkpoint({"epoch": epoch})
        e.report_intermediate(float(epoch))
        if start == 0 and epoch == 2:
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline:
                time.sleep(0.01)
                e.report_final(-1.0)
            raise RuntimeError("never halted")
    return float(start)


def at_step(step: int, act: str) -> Any:
    """A listener for ``engine.listen`` that calls ``handle.<act>()`` once per model,
    when it reports ``step``."""
    done: set[int] = set()

    def hear(handle: e.ModelHandle, reached: int, _: object) -> None:
        if reached == step and handle.model_id not in done:
            done.add(handle.model_id)
            getattr(handle, act)()

    return hear
