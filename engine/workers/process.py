"""ProcessPool: persistent worker processes, optionally pinned to GPUs.

Each worker is a fresh interpreter (``python -m engine.workers._worker``, spawned, never
forked, so it is safe with CUDA) that owns one slot: a fixed set of GPUs, or a share of
one, through ``CUDA_VISIBLE_DEVICES``. A worker runs one trial at a time; its reports
stream back while the trial runs (a final within about 0.1 s, or with the trial's end:
see ``engine.workers._worker``). Its stdout and stderr are captured per trial. A worker
that dies is replaced; one that runs ``recycle_after`` trials is stopped cleanly and
replaced; every worker exits when this process dies.

Who handles what: a task per slot (in :meth:`ProcessPool.serve`'s task group) watches
its worker process, reports its death and spawns the replacement; :meth:`ProcessPool.run`
drives one trial on an idle worker, and kills it when the trial is cancelled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from engine.errors import TrialFailed, WorkerLost
from engine.space import dump_model
from engine.workers._base import PoolMonitor, Trial, TrialOutput
from engine.workers._child import (
    EXIT_GRACE,
    PIPE_GONE,
    IdleWorkers,
    Worker,
    collect_output,
    describe_exit,
)
from engine.workers._gpu import Placement
from engine.workers._wire import (
    Done,
    Failed,
    Final,
    FromWorker,
    Hello,
    Intermediate,
    Run,
    Setup,
    Stop,
)

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from engine.space import ExecutableModelSpace

__all__ = ("ProcessPool", "WorkerStartFailed")

_WORKER_MODULE = "engine.workers._worker"


class WorkerStartFailed(RuntimeError):
    """A worker process did not start: it exited, or did not answer within
    ``start_timeout``. The message says which and what to check."""


class _Serving:
    """The state of one ``serve()`` call."""

    def __init__(self, monitor: PoolMonitor, directory: Path) -> None:
        self.monitor, self.directory = monitor, directory
        self.idle = IdleWorkers()
        self.live: set[Worker] = set()
        self.spawned = 0
        self.error: BaseException | None = None
        self.cancel_scope = anyio.CancelScope()


class ProcessPool:
    """Runs frozen models in ``workers`` persistent worker processes.

    ``gpus_per_trial`` pins each worker to GPUs: ``1`` (one each), ``2`` (two each), or
    ``1/n`` (n workers share one); ``gpus`` lists the GPU ids to use (default: detected
    from CUDA_VISIBLE_DEVICES or ``nvidia-smi -L``). ``workers=None`` starts one per GPU
    slot, or one per CPU without GPUs. With ``gpus_per_trial=0`` workers see no GPU.
    ``recycle_after`` restarts a worker after that many trials; a worker that does not
    answer within ``start_timeout`` seconds is killed and :class:`WorkerStartFailed`
    raised. ``env`` adds environment variables to every worker.
    """

    def __init__(
        self, workers: int | None = None, *, gpus_per_trial: float = 0,
        gpus: Sequence[int] | None = None, recycle_after: int | None = None,
        start_timeout: float = 60.0, env: Mapping[str, str] | None = None,
    ) -> None:
        self._placement = Placement.plan(workers, gpus_per_trial, gpus)
        if recycle_after is not None and (isinstance(recycle_after, bool) or not isinstance(
                recycle_after, int) or recycle_after < 1):
            raise ValueError(f"recycle_after must be a positive int or None, got "
                             f"{recycle_after!r}")
        if not start_timeout > 0:
            raise ValueError(f"start_timeout must be a positive number of seconds, got "
                             f"{start_timeout!r}")
        self._recycle_after, self._start_timeout = recycle_after, float(start_timeout)
        self._env = dict(env or {})
        self._serving: _Serving | None = None
        self._dumped: weakref.WeakKeyDictionary[ExecutableModelSpace, bytes] = (
            weakref.WeakKeyDictionary())

    @property
    def name(self) -> str:
        return "process"

    @property
    def capacity(self) -> int:
        return len(self._placement.slots)

    @property
    def prefetch(self) -> int:
        return 0

    def check(self, model: ExecutableModelSpace) -> None:
        """TypeError now when ``model`` cannot be sent to a worker process."""
        self._dumped[model] = dump_model(model)  # kept for run(), while the model lives

    def __repr__(self) -> str:
        return (f"ProcessPool(workers={self.capacity}, "
                f"gpus={[self._placement.gpus(s) for s in range(self.capacity)]})")

    # -- serving -----------------------------------------------------------------------

    async def serve(
        self, monitor: PoolMonitor, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every worker, report ready once all said hello, and keep each slot
        manned until cancelled; on the way out, kill every worker process."""
        if self._serving is not None:
            raise RuntimeError("this ProcessPool is already serving: give each Engine its own")
        state = self._serving = _Serving(monitor, Path(tempfile.mkdtemp(prefix="nas-workers-")))
        try:
            workers = await self._start_all(state)
            async with anyio.create_task_group() as tg:
                state.cancel_scope = tg.cancel_scope
                for worker in workers:
                    state.idle.put(worker)
                    tg.start_soon(self._keep_slot, state, worker)
                task_status.started()
            if state.error is not None:
                raise state.error
        finally:
            self._serving = None
            with anyio.CancelScope(shield=True):
                await self._shut_down(state)

    async def _start_all(self, state: _Serving) -> list[Worker]:
        """Spawn every worker at once, then wait for each one's hello."""
        workers = [await self._launch(state, slot) for slot in range(self.capacity)]
        deadline = anyio.current_time() + self._start_timeout
        for worker in workers:
            await self._greet(state, worker, deadline)
        return workers

    async def _launch(self, state: _Serving, slot: int) -> Worker:
        state.spawned += 1
        base = state.directory / str(state.spawned)
        capture = (base.with_suffix(".out"), base.with_suffix(".err"))
        env = {**os.environ, **self._env, **self._placement.environment(slot)}
        # The worker exits when the parent's end of this pipe closes: when we die.
        lifeline, keep = os.pipe()
        command = [sys.executable, "-u", "-m", _WORKER_MODULE, str(lifeline)]
        with anyio.CancelScope(shield=True):  # a spawned process is always tracked
            try:
                process = await anyio.open_process(command, env=env, stderr=None,
                                                   pass_fds=(lifeline,))
            except BaseException:
                os.close(keep)
                raise
            finally:
                os.close(lifeline)
            worker = Worker(slot, self._placement.gpus(slot), process, capture, keep)
            state.live.add(worker)
        with contextlib.suppress(*PIPE_GONE):  # an early exit shows in _greet
            await worker.send(Setup(sys_path=list(sys.path), stdout_path=str(capture[0]),
                                    stderr_path=str(capture[1])))
        return worker

    async def _greet(self, state: _Serving, worker: Worker, deadline: float) -> None:
        """Wait for ``worker``'s hello; WorkerStartFailed (and the worker killed) without."""
        hello: FromWorker | None = None
        with anyio.CancelScope(deadline=deadline) as scope, contextlib.suppress(*PIPE_GONE):
            hello = await worker.receive()
        expected = self._placement.environment(worker.slot)["CUDA_VISIBLE_DEVICES"]
        if isinstance(hello, Hello) and hello.visible_devices == expected:
            state.monitor.worker_started(worker.name, worker.pid, worker.gpus)
            return
        worker.kill()
        with anyio.CancelScope(shield=True):
            returncode = await worker.process.wait()
        if scope.cancelled_caught:
            problem = (f"did not answer within start_timeout={self._start_timeout:g} s and "
                       "was killed")
        elif hello is None:
            problem = f"{describe_exit(returncode)[2]} before it was ready (its stderr is above)"
        elif isinstance(hello, Hello):  # something in its start-up changed the variable
            problem = (f"saw CUDA_VISIBLE_DEVICES={hello.visible_devices!r} instead of "
                       f"{expected!r}, so its trials would use the wrong GPUs")
        else:
            problem = f"sent {type(hello).__name__} instead of Hello"
        raise WorkerStartFailed(
            f"worker {worker.name} (pid {worker.pid}) {problem}: check that `{sys.executable} "
            f"-m {_WORKER_MODULE}` starts in this environment, or raise start_timeout")

    async def _keep_slot(self, state: _Serving, worker: Worker) -> None:
        """Watch the slot's worker; when it exits, report it and start a replacement."""
        try:
            while True:
                await self._watch(state, worker)
                replacement = await self._launch(state, worker.slot)
                await self._greet(state, replacement, anyio.current_time() + self._start_timeout)
                worker = replacement
                state.idle.put(worker)
        except WorkerStartFailed as exc:  # raised by serve() itself, not in a group
            state.error = exc
            state.cancel_scope.cancel()

    async def _watch(self, state: _Serving, worker: Worker) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._stop_when_retired, worker)
            worker.returncode = returncode = await worker.process.wait()
            tg.cancel_scope.cancel()
        # Closing its pipes wakes a run() still reading them: they can outlive the worker
        # in processes it forked.
        await worker.close()
        worker.last_output = await anyio.to_thread.run_sync(
            collect_output, worker.capture, worker.busy)
        exitcode, signum, how = describe_exit(returncode)
        reason = f"{worker.reason} ({how})" if worker.reason else how
        state.monitor.worker_died(worker.name, worker.pid, exitcode, signum, reason)
        worker.ended.set()
        state.live.discard(worker)

    @staticmethod
    async def _stop_when_retired(worker: Worker) -> None:
        await worker.retired.wait()
        if worker.graceful:
            with contextlib.suppress(*PIPE_GONE):
                await worker.send(Stop())
            await anyio.sleep(EXIT_GRACE)
        worker.kill()

    @staticmethod
    async def _shut_down(state: _Serving) -> None:
        state.idle.close()
        for worker in state.live:
            worker.kill()
        for worker in list(state.live):
            await worker.close()
            worker.returncode = worker.process.returncode
            worker.ended.set()
        state.live.clear()
        await anyio.to_thread.run_sync(shutil.rmtree, state.directory, True)

    # -- running -----------------------------------------------------------------------

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        """Execute ``model`` on the next idle worker, streaming its reports to ``trial``.
        Raises TrialFailed or WorkerLost. When cancelled, the worker is killed (and
        replaced) before Cancelled propagates."""
        data = self._dumped.pop(model, None) or dump_model(model)
        state = self._serving
        if state is None:
            raise RuntimeError("ProcessPool.run() needs a serving pool: start it with "
                               "task_group.start(pool.serve, monitor), as an Engine does")
        worker = await state.idle.take()
        try:
            output = await self._execute(worker, data, trial)
        except TrialFailed:
            self._release(state, worker)
            raise
        except WorkerLost:
            raise
        except BaseException:  # cancelled (timeout, handle cancelled, shutdown), or a bug
            with anyio.CancelScope(shield=True):
                worker.retire(f"its trial (model {trial.model_id}) was stopped", graceful=False)
                with anyio.move_on_after(EXIT_GRACE):  # exited, reaped and reported
                    await worker.ended.wait()
            raise
        self._release(state, worker)
        return output

    async def _execute(self, worker: Worker, data: bytes, trial: Trial) -> TrialOutput:
        trial.started(worker.name, worker.gpus)
        worker.busy = True
        try:
            await worker.send(Run(model=data))
            while not isinstance(message := await worker.receive(), Done):
                _forward(message, trial)
        except PIPE_GONE:
            raise await self._lost(worker, trial) from None
        except TrialFailed:
            worker.busy = False
            raise
        worker.busy = False
        if message.final is not None:
            trial.final(message.final)
        return TrialOutput(stdout=message.stdout, stderr=message.stderr)

    @staticmethod
    async def _lost(worker: Worker, trial: Trial) -> WorkerLost:
        """The error for a worker that died in ``trial``, once its death is reported."""
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(EXIT_GRACE):
                await worker.ended.wait()
            if not worker.ended.is_set():  # its pipe closed but it lives on
                worker.retire("it closed its pipe", graceful=False)
                await worker.ended.wait()
        exitcode, signum, how = describe_exit(worker.returncode if worker.returncode is not None
                                          else -signal.SIGKILL)
        error = WorkerLost(
            f"worker {worker.name} (pid {worker.pid}) {how} while it ran model "
            f"{trial.model_id} (attempt {trial.attempt}); its last output is on this error's "
            ".stdout and .stderr", worker=worker.name, pid=worker.pid, exitcode=exitcode,
            signal=signum, stdout=worker.last_output.stdout, stderr=worker.last_output.stderr)
        return error

    def _release(self, state: _Serving, worker: Worker) -> None:
        """Put ``worker`` back after a trial, or recycle it after ``recycle_after``."""
        worker.trials += 1
        if self._recycle_after is not None and worker.trials >= self._recycle_after:
            worker.retire(f"recycled after {worker.trials} trials", graceful=True)
        elif not state.idle.closed:
            state.idle.put(worker)


def _forward(message: FromWorker, trial: Trial) -> None:
    """Pass one report on to ``trial``; a Failed message raises TrialFailed."""
    if isinstance(message, Intermediate):
        trial.intermediate(message.value)
    elif isinstance(message, Final):
        trial.final(message.value)
    elif isinstance(message, Failed):
        raise TrialFailed(message.error_type, message.message, message.traceback,
                          invalid=message.invalid, paths=message.paths,
                          stdout=message.stdout, stderr=message.stderr)
    else:
        raise RuntimeError(f"worker protocol error: unexpected {type(message).__name__}")

