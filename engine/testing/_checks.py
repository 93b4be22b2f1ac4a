"""The checks of the conformance kit: each drives a fresh pool through one promise
with the probe trials, and raises AssertionError naming the promise it broke."""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import anyio

from engine.errors import TrialFailed, WorkerLost, WorkerStartFailed
from engine.space import ExecutableModelSpace
from engine.testing._probe import probe
from engine.testing._recording import RecordingMonitor, RecordingTrial, process_gone
from engine.workers._base import TrialOutput, WorkerPool

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

__all__ = ("Check", "Feature", "check_cancel", "check_child_process", "check_exception",
           "check_exit", "check_output", "check_pool", "check_segfault", "check_sigkill",
           "check_start_failure", "check_stop", "check_timeout", "checks")

Check: TypeAlias = Callable[[Callable[[], WorkerPool]], Awaitable[None]]

#: Seconds a process the kit expects gone may take to exit.
EXIT_TIMEOUT = 10.0


class Feature(enum.Flag):
    """The failures a pool handles; :func:`checks` picks the checks for a set of them."""

    EXCEPTION = enum.auto()  #: the trial raises (every pool)
    OUTPUT = enum.auto()  #: the trial's stdout and stderr are captured, failed or not
    EXIT = enum.auto()  #: the trial ends its worker with os._exit
    SIGKILL = enum.auto()  #: the trial's worker is killed by SIGKILL
    SEGFAULT = enum.auto()  #: the trial's worker crashes
    CANCEL = enum.auto()  #: run() is cancelled while the trial runs
    TIMEOUT = enum.auto()  #: run()'s deadline passes while the trial runs
    CHILD_PROCESS = enum.auto()  #: processes the trial started end with it
    STOP = enum.auto()  #: leaving serve() (and run()) mid-trial stops every worker
    ALL = (EXCEPTION | OUTPUT | EXIT | SIGKILL | SEGFAULT | CANCEL | TIMEOUT | CHILD_PROCESS
           | STOP)



def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still running after waiting up to ``timeout`` seconds for them to exit
    (polling: the exit of a process that is not our child has no event)."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if not process_gone(pid)]) and (
            time.monotonic() < deadline):
        time.sleep(0.01)
    return left


async def _expect_gone(pids: list[int], what: str) -> None:
    left = await anyio.to_thread.run_sync(_wait_gone, pids, EXIT_TIMEOUT)
    if left:
        raise AssertionError(f"{what} still running: pids {left}")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


@contextlib.asynccontextmanager
async def _serving(make_pool: Callable[[], WorkerPool]
                   ) -> AsyncIterator[tuple[WorkerPool, RecordingMonitor, TaskGroup, Path]]:
    """A fresh pool served in a task group, its monitor, the group (cancel it to stop
    the pool) and a scratch folder for flags; afterwards, no worker process is left."""
    pool, monitor = make_pool(), RecordingMonitor()
    folder = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(pool.serve, monitor)
            yield pool, monitor, tg, folder
            tg.cancel_scope.cancel()
        await _expect_gone(monitor.worker_pids(), "a worker of the stopped pool")
    finally:
        (folder / "flag").touch()  # frees a trial a pool left behind (a thread)
        await anyio.to_thread.run_sync(shutil.rmtree, folder, True)


async def _outcome(pool: WorkerPool, model: ExecutableModelSpace,
                   trial: RecordingTrial) -> TrialOutput | TrialFailed | WorkerLost:
    try:
        return await pool.run(model, trial)
    except (TrialFailed, WorkerLost) as exc:
        return exc


async def _expect_ok(pool: WorkerPool, when: str) -> TrialOutput:
    trial = RecordingTrial(model_id=99)
    result = await _outcome(pool, probe("ok"), trial)
    _expect(isinstance(result, TrialOutput),
            f"a trial {when} did not train: {result!r}")
    _expect([c[0] for c in trial.calls] == ["started", "intermediate", "final"]
            and trial.calls[1:] == [("intermediate", 0.5), ("final", 1.0)],
            f"a trial {when} reported {trial.calls}, expected started, 0.5, final 1.0")
    assert isinstance(result, TrialOutput)
    return result


class _Running:
    """A ``pool.run`` of a trial that waits for ``flag``, in its own cancel scope."""

    def __init__(self, pool: WorkerPool, action: str, flag: Path) -> None:
        self.trial, self.scope, self.ended = RecordingTrial(), anyio.CancelScope(), anyio.Event()
        self.result: object = None
        self._pool, self._model = pool, probe(action, str(flag))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            with self.scope:
                task_status.started()
                self.result = await _outcome(self._pool, self._model, self.trial)
        finally:
            self.ended.set()


def _free_local(running: _Running, folder: Path) -> None:
    """Let a stopped "hang" trial end when it runs in this process: a thread cannot be
    killed (a trial elsewhere must be stopped by its pool)."""
    if int(running.trial.first_report) == os.getpid():
        (folder / "flag").touch()


async def _start_waiting(tg: TaskGroup, pool: WorkerPool, action: str,
                         flag: Path) -> _Running:
    """Start a trial that waits for ``flag``, and wait for its first report."""
    running = _Running(pool, action, flag)
    await tg.start(running.run)
    await running.trial.reported.wait()
    return running


# -- the checks ----------------------------------------------------------------------------


async def check_exception(make_pool: Callable[[], WorkerPool]) -> None:
    """A trial that raises fails with TrialFailed (type, message, traceback; an invalid
    sample as invalid, with its paths); its worker lives on and trains the next."""
    async with _serving(make_pool) as (pool, monitor, _, _):
        trial = RecordingTrial()
        failed = await _outcome(pool, probe("raise"), trial)
        _expect(isinstance(failed, TrialFailed), f"a raising trial gave {failed!r}")
        assert isinstance(failed, TrialFailed)
        _expect((failed.error_type, failed.message, failed.invalid)
                == ("ValueError", "the probe failed", False),
                f"TrialFailed says {failed.error_type}: {failed.message}")
        _expect("in probe_trial" in failed.traceback
                and failed.traceback.rstrip().endswith("ValueError: the probe failed"),
                f"the traceback is not the trial's: {failed.traceback!r}")
        _expect([c[0] for c in trial.calls] == ["started"],
                f"the failed trial reported {trial.calls}")
        invalid = await _outcome(pool, probe("invalid"), RecordingTrial())
        _expect(isinstance(invalid, TrialFailed) and invalid.invalid
                and invalid.paths == ("model", "x"),
                f"an invalid sample gave {invalid!r}")
        await _expect_ok(pool, "after a failed one")
        _expect(monitor.died == [], f"a failed trial ended its worker: {monitor.died}")


async def check_output(make_pool: Callable[[], WorkerPool]) -> None:
    """What a trial writes to stdout and stderr comes back with it: on its TrialOutput,
    and on its TrialFailed when it raised."""
    async with _serving(make_pool) as (pool, _, _, _):
        output = await _expect_ok(pool, "that prints")
        _expect((output.stdout, output.stderr) == ("probe ok stdout\n", "probe ok stderr\n"),
                f"a trial's output came back as {output!r}")
        failed = await _outcome(pool, probe("raise"), RecordingTrial())
        _expect(isinstance(failed, TrialFailed)
                and (failed.stdout, failed.stderr)
                == ("probe raise stdout\n", "probe raise stderr\n"),
                f"a failed trial's output was lost: {failed!r}, "
                f"{getattr(failed, 'stdout', None)!r}, {getattr(failed, 'stderr', None)!r}")


async def _check_death(make_pool: Callable[[], WorkerPool], how: str) -> None:
    """A trial that ends its worker fails with WorkerLost; the death is reported, a new
    worker starts, and a trial on another worker is not disturbed."""
    async with _serving(make_pool) as (pool, monitor, tg, folder):
        workers = len(monitor.started)
        bystander = (await _start_waiting(tg, pool, "hang", folder / "flag")
                     if pool.capacity > 1 else None)
        trial = RecordingTrial(model_id=2)
        lost = await _outcome(pool, probe(how), trial)
        _expect(isinstance(lost, WorkerLost), f"a trial that ends its worker by {how} gave "
                f"{lost!r}, expected WorkerLost")
        with anyio.fail_after(EXIT_TIMEOUT * 3):
            await monitor.wait_died(1)
            await monitor.wait_started(workers + 1)
        worker = trial.calls[0][1]
        _expect([d[0] for d in monitor.died] == [worker],
                f"the deaths reported are {monitor.died}, expected one of {worker}")
        _expect(monitor.started[-1][0] == worker, "the new worker has another name")
        if bystander is not None:
            (folder / "flag").touch()
            await bystander.ended.wait()
            _expect(isinstance(bystander.result, TrialOutput)
                    and bystander.trial.calls[-1] == ("final", 2.0),
                    f"a trial on another worker was disturbed: {bystander.result!r}")
        await _expect_ok(pool, "after a worker died")


async def check_exit(make_pool: Callable[[], WorkerPool]) -> None:
    """A trial that calls ``os._exit``: see :func:`_check_death`."""
    await _check_death(make_pool, "exit")


async def check_sigkill(make_pool: Callable[[], WorkerPool]) -> None:
    """A trial whose worker is SIGKILLed: see :func:`_check_death`."""
    await _check_death(make_pool, "sigkill")


async def check_segfault(make_pool: Callable[[], WorkerPool]) -> None:
    """A trial that crashes its worker: see :func:`_check_death`."""
    await _check_death(make_pool, "segfault")


async def _check_stopped(make_pool: Callable[[], WorkerPool], stop: str) -> None:
    async with _serving(make_pool) as (pool, _, tg, folder):
        running = await _start_waiting(tg, pool, "hang", folder / "flag")
        if stop == "cancel":
            running.scope.cancel()
        else:
            running.scope.deadline = anyio.current_time()
        _free_local(running, folder)
        with anyio.fail_after(EXIT_TIMEOUT * 2):
            await running.ended.wait()
        _expect(running.scope.cancelled_caught and running.result is None,
                f"a {stop}led run() did not end cancelled: {running.result!r}")
        pid = int(running.trial.first_report)
        if pid != os.getpid():
            await _expect_gone([pid], f"the worker of a {stop}led trial")
        await _expect_ok(pool, f"after a {stop}led one")


async def check_cancel(make_pool: Callable[[], WorkerPool]) -> None:
    """A run() cancelled while its trial runs ends cancelled, with its trial stopped
    (a worker process ended); the pool trains the next model."""
    await _check_stopped(make_pool, "cancel")


async def check_timeout(make_pool: Callable[[], WorkerPool]) -> None:
    """As :func:`check_cancel`, when run()'s deadline passes (the engine's timeout)."""
    await _check_stopped(make_pool, "timeout")


async def check_child_process(make_pool: Callable[[], WorkerPool]) -> None:
    """A process a trial started ends with the trial: when its run() is cancelled,
    when its worker dies, and when the pool stops."""
    async with _serving(make_pool) as (pool, _, tg, folder):
        running = await _start_waiting(tg, pool, "spawn", folder / "never")
        running.scope.cancel()
        await running.ended.wait()
        await _expect_gone([int(running.trial.first_report)],
                           "the child process of a cancelled trial")
        trial = RecordingTrial()
        lost = await _outcome(pool, probe("spawn-exit"), trial)
        _expect(isinstance(lost, WorkerLost), f"a trial that exits gave {lost!r}")
        await _expect_gone([int(trial.first_report)], "the child process of a lost trial")
        running = await _start_waiting(tg, pool, "spawn", folder / "never")
        tg.cancel_scope.cancel()  # the pool stops (an engine leaving by an error)
    await _expect_gone([int(running.trial.first_report)],
                       "the child process of a trial the pool stopped")


async def check_stop(make_pool: Callable[[], WorkerPool]) -> None:
    """Leaving ``serve()`` while trials run (an engine that stops cancels its runs with
    it) ends them and leaves no worker process behind."""
    async with _serving(make_pool) as (pool, _, tg, folder):
        running = [await _start_waiting(tg, pool, "hang", folder / "flag")
                   for _ in range(pool.capacity)]
        tg.cancel_scope.cancel()
        for run in running:
            _free_local(run, folder)
    for run in running:
        _expect(run.result is None or isinstance(run.result, WorkerLost),
                f"a trial the pool stopped gave {run.result!r}")


async def check_start_failure(make_broken_pool: Callable[[], WorkerPool]
                              ) -> WorkerStartFailed:
    """A pool whose workers cannot start raises WorkerStartFailed from ``serve()``, and
    leaves no worker process behind. ``make_broken_pool`` makes such a pool. Returns the
    error, for a test to check what it says."""
    monitor = RecordingMonitor()
    try:
        with anyio.fail_after(EXIT_TIMEOUT * 6):
            async with anyio.create_task_group() as tg:  # it may wrap the error: unwrapped
                await tg.start(make_broken_pool().serve, monitor)
                tg.cancel_scope.cancel()
    except BaseException as exc:
        errors = _leaves(exc)
        if not (len(errors) == 1 and isinstance(errors[0], WorkerStartFailed)):
            raise AssertionError(f"serve() raised {exc!r}, not one WorkerStartFailed") from exc
        error = errors[0]
    else:
        raise AssertionError("serve() of a pool whose workers cannot start returned")
    await _expect_gone(monitor.worker_pids(), "a worker of the pool that failed")
    return error


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


_CHECKS: dict[Feature, Check] = {
    Feature.EXCEPTION: check_exception,
    Feature.OUTPUT: check_output,
    Feature.EXIT: check_exit,
    Feature.SIGKILL: check_sigkill,
    Feature.SEGFAULT: check_segfault,
    Feature.CANCEL: check_cancel,
    Feature.TIMEOUT: check_timeout,
    Feature.CHILD_PROCESS: check_child_process,
    Feature.STOP: check_stop,
}


def checks(features: Feature) -> list[Check]:
    """The checks for ``features``, in the order of :class:`Feature`."""
    return [check for feature, check in _CHECKS.items() if feature in features]


async def check_pool(make_pool: Callable[[], WorkerPool], features: Feature = Feature.ALL,
                     *, make_broken_pool: Callable[[], WorkerPool] | None = None) -> None:
    """Every check for ``features``, one after the other, each on a pool of its own;
    with ``make_broken_pool``, :func:`check_start_failure` too."""
    for check in checks(features):
        await check(make_pool)
    if make_broken_pool is not None:
        await check_start_failure(make_broken_pool)

