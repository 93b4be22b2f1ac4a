"""InlinePool's thread trials: what crosses between a trial's thread and the loop."""

from __future__ import annotations

import contextvars
import threading

import anyio
import anyio.from_thread
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


_seen: contextvars.ContextVar[int] = contextvars.ContextVar("seen", default=0)


def _sets_a_context_variable(model: _Space) -> float:
    before = _seen.get()
    _seen.set(before + 1)
    anyio.from_thread.run_sync(lambda: None)  # an anyio worker thread: it may call back
    return float(before)


async def test_each_thread_trial_has_a_fresh_context_and_may_call_the_loop() -> None:
    # One thread runs every trial of a worker: what one trial sets in a context
    # variable must not reach the next.
    space = e.SimplifiedModelSpace.from_model(
        _Space(), e.FunctionEvaluator(_sets_a_context_variable))
    async with e.Engine(InlinePool(1)) as engine:
        handles = [await engine.submit(space.freeze({"x": i / 4})) for i in range(4)]
        models = [await handle for handle in handles]
    assert [m.metric for m in models] == [0.0] * 4


def _stuck_once(model: _Space, release: threading.Event) -> float:
    if model.x == 0.0:
        release.wait(10)
    return model.x


async def test_an_abandoned_threads_worker_goes_on_with_a_new_thread() -> None:
    # The stuck trial's thread outlives its grace: the next trials must not queue
    # behind it on the same thread.
    release = threading.Event()
    space = e.SimplifiedModelSpace.from_model(
        _Space(), e.FunctionEvaluator(_stuck_once, release=release))
    try:
        async with e.Engine(InlinePool(1, grace=0.05), trial_timeout=0.2) as engine:
            stuck = await engine.submit(space.freeze({"x": 0.0}))
            later = [await engine.submit(space.freeze({"x": x})) for x in (0.5, 1.0)]
            with anyio.fail_after(5):
                models = [await handle for handle in [stuck, *later]]
    finally:
        release.set()
    assert [m.status for m in models] == [e.ModelStatus.Interrupted,
                                          e.ModelStatus.Trained, e.ModelStatus.Trained]
    assert [m.metric for m in models[1:]] == [0.5, 1.0]


async def test_run_needs_a_serving_pool() -> None:
    space = e.SimplifiedModelSpace.from_model(_Space(), e.FunctionEvaluator(_stuck_once,
                                                                            release=None))
    with pytest.raises(RuntimeError, match="needs a serving pool"):
        await InlinePool(1).run(space.freeze({"x": 0.5}), _Recorder(threading.Event()))
