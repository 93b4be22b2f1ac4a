"""A pool that trains nothing, for strategy tests."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import anyio
import anyio.lowlevel

from engine._checkpoint import spot_for, use_checkpoints
from engine._checks import check_count
from engine._context import use_reporter
from engine.errors import TrialFailed
from engine.space import ExecutableModelSpace
from engine.workers._base import PoolMonitor, Trial, TrialOutput

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

__all__ = ("MockPool",)

Handler: TypeAlias = Callable[[ExecutableModelSpace], "float | Awaitable[float | None] | None"]


class MockPool:
    """A pool that trains nothing: ``handler(model)`` is each model's trial, called on
    the event loop; it returns the final metric (or an awaitable of it), may call
    ``report_intermediate`` / ``report_final``, and raises to fail the model. Runs
    ``capacity`` models at once, each ``run()`` a checkpoint. For strategy tests: no
    thread, no process, no torch; passes :func:`check_exception`. The handler may keep
    checkpoints (``save_checkpoint`` / ``load_checkpoint``), so a paused model resumes
    where its last checkpoint left it."""

    name = "mock"
    prefetch = 0

    def __init__(self, handler: Handler, capacity: int = 1) -> None:
        check_count("capacity", capacity)
        self._handler, self._capacity = handler, capacity
        self._free = [f"mock-{i}" for i in reversed(range(capacity))]
        self.models: list[ExecutableModelSpace] = []  # every model run, in order

    @property
    def capacity(self) -> int:
        return self._capacity

    def check(self, model: ExecutableModelSpace) -> None:
        """Any model will do: the handler decides what it means."""

    async def serve(self, monitor: PoolMonitor, *,
                    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        for name in reversed(self._free):
            monitor.worker_started(name, None, ())
        task_status.started()
        await anyio.sleep_forever()

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        await anyio.lowlevel.checkpoint()
        worker = self._free.pop()
        try:
            trial.started(worker)
            self.models.append(model)
            try:
                with use_reporter(trial), use_checkpoints(spot_for(trial)):
                    value = self._handler(model)
                    if inspect.isawaitable(value):
                        value = await value
            except Exception as exc:
                raise TrialFailed.from_exception(exc) from None
            if value is not None:
                trial.final(float(value))
        finally:
            self._free.append(worker)
        return TrialOutput()
