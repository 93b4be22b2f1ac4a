"""InlinePool's thread trials: what crosses between a trial's thread and the loop."""

from __future__ import annotations

import threading

import anyio
import pytest

import engine as e
from engine import InlinePool

pytestmark = pytest.mark.anyio


class _Space(e.BaseModelSpace):
    def __init__(self) -> None:
        self.x = e.ensure_frozen(e.Numerical(0.0, 1.0, label="x"))


def _reports(model: _Space, body_done: threading.Event) -> None:
    e.report_final(1.0)
    e.report_intermediate(2.0)
    e.report_final(3.0)
    body_done.set()


class _Recorder:
    """A Trial that records each call, and whether the trial's body had ended then."""

    model_id, attempt = 1, 1

    def __init__(self, body_done: threading.Event) -> None:
        self.body_done = body_done
        self.calls: list[tuple[str, float | None, bool]] = []

    def started(self, worker: str, gpus: tuple[int, ...] = ()) -> None:
        self.calls.append(("started", None, self.body_done.is_set()))

    def intermediate(self, value: float) -> None:
        self.calls.append(("intermediate", value, self.body_done.is_set()))

    def final(self, value: float) -> None:
        self.calls.append(("final", value, self.body_done.is_set()))


class _Monitor:
    def worker_started(self, worker: str, pid: int | None, gpus: tuple[int, ...]) -> None: ...

    def worker_died(self, worker: str, pid: int | None, exitcode: int | None,
                    signal: int | None, reason: str) -> None: ...


async def test_a_thread_trials_last_final_comes_with_its_end_in_order() -> None:
    # A final only sets the trial's value: the last one travels with the thread's
    # return (no round trip of its own); one reported before an intermediate is passed
    # on first, so the trial sees the calls in the order they were made.
    body_done = threading.Event()
    space = e.SimplifiedModelSpace.from_model(
        _Space(), e.FunctionEvaluator(_reports, body_done=body_done))
    trial = _Recorder(body_done)
    pool = InlinePool(1)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.serve, _Monitor())
        await pool.run(space.freeze({"x": 0.5}), trial)
        tg.cancel_scope.cancel()
    assert trial.calls == [("started", None, False), ("final", 1.0, False),
                           ("intermediate", 2.0, False), ("final", 3.0, True)]
