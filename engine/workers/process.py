"""ProcessPool: persistent worker processes, optionally pinned to GPUs.

Each worker is a fresh interpreter (``engine.workers._worker``, spawned, never forked,
so it is safe with CUDA) that owns one slot: a fixed set of GPUs, or a share of one,
through ``CUDA_VISIBLE_DEVICES``. A worker runs one trial at a time; its reports stream
back while the trial runs (a final within about 0.1 s, or with the trial's end: see
``engine.workers._worker``). Its stdout and stderr are captured per trial. A worker
that dies is replaced; one that runs ``recycle_after`` trials is stopped cleanly and
replaced; every worker exits when this process dies.

Each worker leads a session (and process group) of its own, and a worker is ended with
its whole group: processes a trial started (``subprocess``, data loaders) die with it
when the trial is cancelled, times out, crashes or the pool stops, and when this process
dies (the worker kills its group). Only a process that left the group itself (its own
``setsid``) escapes. The pool's scratch folder (``nas-workers-*`` in the temp dir) is
removed when the pool stops, by the workers when this process dies, and, should they all
be gone too, by the next pool that starts: it removes every such folder whose owner's
lock is free.

Warm workers: a worker imports what ``preload`` names before it says hello, and the
modules of the first model's recipe and evaluator (and torch's lazily imported parts,
when they use torch) as soon as that model is submitted, so the first trial on a
worker trains as fast as the tenth. A trial counts as started
(its ``training`` event, its duration, its timeout) once its worker has built its model;
the seconds spent loading and building are its event's ``setup``.

Echo: with ``echo`` (default: when stderr is a terminal), what a trial prints appears
on stderr as it comes, each line prefixed ``[model N]``; it is captured as well.

Prefetch: a worker may hold ``prefetch`` more models while it runs one, and starts each
the moment the one before ends, without a round trip through this process. A model
counts as started (``trial.started``, so the engine's training event and timeout) only
then. One not started yet is taken back when its run() is cancelled, and goes to
another worker when its worker dies; neither costs it an attempt.

Who handles what: a task per slot (in :meth:`ProcessPool.serve`'s task group) carries
its worker's messages both ways, reports its death and spawns the replacement;
:class:`~engine.workers._dispatch.Dispatcher` decides which worker takes which model;
:meth:`ProcessPool.run` waits for its model's result, and takes the model back or
kills its worker when cancelled.

Early stops keep the worker: when a strategy stops or pauses a running model (the
engine's Trial says so with ``ends_cooperatively``), its run() sends the worker a Halt
rather than killing it: the training code's next ``report_intermediate``,
``report_final`` or ``save_checkpoint`` raises a BaseException the worker's trial
runner catches, the trial ends there, and the worker, torch imported, takes the next
model. A trial that reaches none of them within ``HALT_GRACE`` seconds has its worker
killed. A cancel, a timeout or the pool's end still kill the worker at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from engine._checks import check_count, check_positive
from engine._recipe import RecipeError, Symbol
from engine.errors import WorkerLost, WorkerStartFailed
from engine.evaluator import FunctionEvaluator
from engine.space import SimplifiedModelSpace, dump_model
from engine.workers._base import HALT_GRACE, PoolMonitor, Trial, TrialOutput, ends_cooperatively
from engine.workers._child import (
    EXIT_GRACE,
    PIPE_GONE,
    Job,
    ProtocolBroken,
    Worker,
    collect_output,
    describe_exit,
)
from engine.workers._dispatch import REBALANCE_AFTER, Dispatcher
from engine.workers._gpu import Placement
from engine.workers._wire import FromWorker, Halt, Hello, Preload, Setup, Stop

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from engine.space import ExecutableModelSpace

__all__ = ("ProcessPool", "WorkerStartFailed")

_WORKER_MODULE = "engine.workers._worker"
#: Seconds a cancelled run() waits for its worker's answer to a Skip (a trial that holds
#: the GIL delays it); after that the answer is handled when it comes.
ANSWER_GRACE = 1.0
#: Seconds a run() whose model never started waits to be cancelled by serve()'s error.
FAILURE_GRACE = 5.0
_SCRATCH_PREFIX = "nas-workers-"
_OWNER = "owner.lock"  # in the scratch folder; locked while its pool lives
# Not `python -m`: the package's __init__ imports the module first, and runpy would
# then run it a second time (and warn).
_WORKER_MAIN = f"import sys; from {_WORKER_MODULE} import main; main(int(sys.argv[1]))"


class _Serving:
    """The state of one ``serve()`` call."""

    def __init__(self, monitor: PoolMonitor, directory: Path, jobs: Dispatcher) -> None:
        self.monitor, self.directory, self.jobs = monitor, directory, jobs
        self.live: set[Worker] = set()  # spawned and not yet buried
        self.spawned = 0
        self.error: BaseException | None = None
        self.cancel_scope = anyio.CancelScope()


class ProcessPool:
    """Runs frozen models in ``workers`` persistent worker processes.

    ``gpus_per_trial`` pins each worker to GPUs: ``1`` (one each), ``2`` (two each), or
    ``1/n`` (n workers share one); ``gpus`` lists the GPU ids to use (default: detected
    from CUDA_VISIBLE_DEVICES or ``nvidia-smi -L``). ``workers=None`` starts one per GPU
    slot, or one per CPU without GPUs. With ``gpus_per_trial=0`` workers see no GPU.
    ``prefetch`` is how many models each worker may hold besides the one it runs, to
    start the next without waiting for the parent (0: none). ``recycle_after`` restarts
    a worker after that many trials; a worker that does not answer within
    ``start_timeout`` seconds (preloading included) is killed and
    :class:`WorkerStartFailed` raised. ``env`` adds environment variables to every worker.

    ``preload`` is what each worker does before it says hello, so that no trial pays
    for it: module names (``"torch"``, ``"mypkg.data"``), ``"module:function"`` or an
    importable function to call with no arguments; a failure stops the pool's start
    with :class:`WorkerStartFailed` (the traceback is on stderr). Whatever imports
    torch also pays its first-training costs. Besides, every worker imports the modules
    of each new recipe and evaluator as soon as a model using them is submitted (with
    torch's costs, when they import torch). ``echo`` copies each trial's
    output to stderr as it comes, lines prefixed ``[model N]`` (``None``: when stderr
    is a terminal).
    """

    def __init__(
        self, workers: int | None = None, *, gpus_per_trial: float = 0,
        gpus: Sequence[int] | None = None, prefetch: int = 1,
        recycle_after: int | None = None, start_timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        preload: Iterable[str | Callable[[], Any]] | None = None, echo: bool | None = None,
    ) -> None:
        self._placement = Placement.plan(workers, gpus_per_trial, gpus)
        check_count("prefetch", prefetch, minimum=0,
                    meaning="models each worker holds besides the one it runs")
        check_count("recycle_after", recycle_after, optional=True,
                    meaning="trials a worker runs before a fresh one takes its place")
        check_positive("start_timeout", start_timeout, meaning="seconds")
        self._prefetch, self._recycle_after = prefetch, recycle_after
        self._start_timeout = float(start_timeout)
        self._env = dict(env or {})
        self._preload = _preload_of(() if preload is None else preload)
        if echo is not None and not isinstance(echo, bool):
            raise TypeError(f"echo must be True, False or None (when stderr is a terminal), "
                            f"got {echo!r}")
        self._echo = echo
        self._modules: dict[Symbol, None] = {}  # recipes and evaluators seen, in order
        # (factory, function) pairs whose symbols are in _modules (see _maker_of)
        self._makers: set[tuple[object, object]] = set()
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
        """Models the pool takes beyond ``capacity``: ``prefetch`` per worker."""
        return self.capacity * self._prefetch

    def check(self, model: ExecutableModelSpace) -> None:
        """TypeError now when ``model`` cannot be sent to a worker process. The first
        model of a recipe or evaluator has every worker import their modules now."""
        self._dumped[model] = dump_model(model)  # kept for run(), while the model lives
        key = _maker_of(model)
        if key is not None and key in self._makers:  # its modules are known: the usual
            return
        new = tuple(s for s in _symbols_of(model) if s not in self._modules)
        if key is not None:
            self._makers.add(key)
        if new:
            self._modules.update(dict.fromkeys(new))
            if self._serving is not None:
                for worker in self._serving.live:
                    worker.post(Preload(symbols=new))

    def __repr__(self) -> str:
        return (f"ProcessPool(workers={self.capacity}, "
                f"gpus={[self._placement.gpus(s) for s in range(self.capacity)]}, "
                f"prefetch={self._prefetch})")

    # -- serving -----------------------------------------------------------------------

    async def serve(
        self, monitor: PoolMonitor, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every worker, report ready once all said hello, and keep each slot
        manned until cancelled; on the way out, kill every worker process."""
        if self._serving is not None:
            raise RuntimeError("this ProcessPool is already serving: give each Engine its own")
        if self._echo is None:
            self._echo = os.isatty(2)
        directory, lock = await anyio.to_thread.run_sync(_open_scratch)
        state = self._serving = _Serving(
            monitor, directory, Dispatcher(self._prefetch, self._recycle_after))
        try:
            workers = await self._start_all(state)
            async with anyio.create_task_group() as tg:
                state.cancel_scope = tg.cancel_scope
                for worker in workers:
                    tg.start_soon(self._keep_slot, state, worker)
                tg.start_soon(self._keep_balance, state.jobs)
                task_status.started()
            if state.error is not None:
                raise state.error
        finally:
            self._serving = None
            with anyio.CancelScope(shield=True):
                try:
                    await self._shut_down(state)
                finally:
                    os.close(lock)  # after the folder is gone

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
        theirs, ours = _pipes()
        # The worker exits when the parent's end of the lifeline closes: when we die.
        command = [sys.executable, "-u", "-c", _WORKER_MAIN, str(theirs[2])]
        with anyio.CancelScope(shield=True):  # a spawned process is always tracked
            try:
                process = await anyio.open_process(
                    command, stdin=theirs[0], stdout=theirs[1], stderr=None, env=env,
                    pass_fds=(theirs[2],), start_new_session=True)
            except BaseException:
                _close(ours)
                raise
            finally:
                _close(theirs)
            worker = Worker(slot, self._placement.gpus(slot), process, capture, ours)
            state.live.add(worker)
        worker.post(Setup(sys_path=list(sys.path), stdout_path=str(capture[0]),
                          stderr_path=str(capture[1]), preload=self._preload,
                          echo=bool(self._echo)))
        if self._modules:  # a replacement: the models it may run are known already
            worker.post(Preload(symbols=tuple(self._modules)))
        return worker

    async def _greet(self, state: _Serving, worker: Worker, deadline: float) -> None:
        """Wait for ``worker``'s hello, then give it work; WorkerStartFailed (and the
        worker killed) without."""
        hello: FromWorker | None = None
        with anyio.CancelScope(deadline=deadline) as scope, contextlib.suppress(
                *PIPE_GONE, ProtocolBroken):
            hello = await worker.receive()
        expected = self._placement.environment(worker.slot)["CUDA_VISIBLE_DEVICES"]
        if isinstance(hello, Hello) and hello.visible_devices == expected:
            state.monitor.worker_started(worker.name, worker.pid, worker.gpus)
            state.jobs.add(worker)
            return
        worker.kill()
        with anyio.CancelScope(shield=True):
            returncode = await worker.process.wait()
        _end_group(worker.pid)
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
            f"-c 'import {_WORKER_MODULE}'` works in this environment, or raise "
            "start_timeout")

    async def _keep_slot(self, state: _Serving, worker: Worker) -> None:
        """Tend the slot's worker; when it exits, report it and start a replacement."""
        try:
            while True:
                await self._tend(state, worker)
                worker = await self._launch(state, worker.slot)
                await self._greet(state, worker, anyio.current_time() + self._start_timeout)
        except WorkerStartFailed as exc:  # raised by serve() itself, not in a group
            state.error = exc
            state.cancel_scope.cancel()

    async def _tend(self, state: _Serving, worker: Worker) -> None:
        """Carry ``worker``'s messages both ways until it exits, then bury it."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, state, worker)
            tg.start_soon(worker.write_out)
            tg.start_soon(self._stop_when_retired, worker)
            worker.returncode = returncode = await worker.process.wait()
            _end_group(worker.pid)  # what its trials started
            tg.cancel_scope.cancel()
        worker.ready = False  # no more trials for it
        with contextlib.suppress(ProtocolBroken):  # what it said before it exited
            worker.read_into(partial(state.jobs.on_message, worker), drain=True)
        # Its pipes can outlive it in processes it forked: we stop reading at its exit.
        await worker.close()
        worker.last_output = await anyio.to_thread.run_sync(
            collect_output, worker.capture, worker.running is not None)
        exitcode, signum, how = describe_exit(returncode)
        reason = f"{worker.reason} ({how})" if worker.reason else how
        state.monitor.worker_died(worker.name, worker.pid, exitcode, signum, reason)
        state.jobs.bury(worker, _lost(worker, worker.running))
        worker.ended.set()
        state.live.discard(worker)

    @staticmethod
    async def _read(state: _Serving, worker: Worker) -> None:
        """Pass on every message ``worker`` sends; stop it when it breaks the protocol or
        closes its pipe."""
        try:
            while worker.read_into(partial(state.jobs.on_message, worker)):
                await worker.wait_readable()
        except ProtocolBroken as exc:
            worker.retire(str(exc), graceful=False)
            return
        await anyio.sleep(EXIT_GRACE)  # cancelled when it exits, as it should now
        worker.retire("it closed its pipe", graceful=False)

    @staticmethod
    async def _keep_balance(jobs: Dispatcher) -> None:
        """Wake when a worker went idle while another holds jobs; give it one of them if
        it stays idle (see ``Dispatcher.rebalance``). It first sleeps the
        ``REBALANCE_AFTER`` that worker must stay idle, then looks: most imbalances end
        sooner (the worker's next model comes in the same turn of the loop), so looking
        at once would wake the loop for nothing every few trials."""
        while True:
            await jobs.unbalanced.wait()
            jobs.unbalanced = anyio.Event()  # set again by what happens meanwhile
            delay: float | None = REBALANCE_AFTER
            while delay is not None:  # look again then
                await anyio.sleep(delay)
                delay = jobs.rebalance()

    @staticmethod
    async def _stop_when_retired(worker: Worker) -> None:
        await worker.retired.wait()
        if worker.graceful:
            worker.post(Stop())
            await anyio.sleep(EXIT_GRACE)
        worker.kill()

    @staticmethod
    async def _shut_down(state: _Serving) -> None:
        state.jobs.stopped = True  # nothing is dispatched any more
        workers = list(state.live)
        for worker in workers:
            worker.kill()
            _end_group(worker.pid)
        for worker in workers:
            await worker.close()
            worker.returncode = worker.process.returncode
            if worker.running is not None:
                worker.running.settle(_lost(worker, worker.running))
            worker.ended.set()
        state.live.clear()
        await anyio.to_thread.run_sync(shutil.rmtree, state.directory, True)
        # Last: a run() whose model never started hears of it only now (see run()).
        state.jobs.abandon(workers, state.error)

    # -- running -----------------------------------------------------------------------

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        """Execute ``model`` on a worker, streaming its reports to ``trial``: an idle one,
        else one that takes it next (see ``prefetch``). Raises TrialFailed or WorkerLost;
        a model whose worker died before starting it waits for another. When cancelled,
        a model not started is taken back, and a running one's worker killed (and
        replaced) before Cancelled propagates; but a running trial that
        ``trial.ends_cooperatively`` (its strategy stopped or paused it) is first asked
        to end at its next report, for up to ``HALT_GRACE`` seconds, keeping its worker.
        A model not started when ``serve()`` stopped raises RuntimeError; when
        ``serve()`` stopped by its own error, first
        after ``FAILURE_GRACE`` seconds, in which that error, raised in the task group
        that runs both (an Engine's), cancels this call: the caller sees one error."""
        data = self._dumped.pop(model, None) or dump_model(model)
        state = self._serving
        if state is None:
            raise RuntimeError("ProcessPool.run() needs a serving pool: start it with "
                               "task_group.start(pool.serve, monitor), as an Engine does")
        job = state.jobs.submit(data, trial)
        try:
            await job.settled.wait()
        except BaseException:  # cancelled (timeout, handle cancelled, shutdown)
            with anyio.CancelScope(shield=True):
                await self._withdraw(state, job)
            raise
        if isinstance(job.result, BaseException):
            if job.result is state.jobs.stop_error and state.error is not None:
                await anyio.sleep(FAILURE_GRACE)
            raise job.result
        assert job.result is not None  # set with settled
        return job.result

    @staticmethod
    async def _withdraw(state: _Serving, job: Job) -> None:
        """Take back or stop a cancelled ``job``: wait (a little) for the answer to its
        Skip, then, if it runs, for its end after a Halt (when its trial
        ``ends_cooperatively``), else (or too late) for its killed worker's end."""
        if job.settled.is_set():
            return
        state.jobs.withdraw(job)
        if (answer := job.recalled) is not None:
            with anyio.move_on_after(ANSWER_GRACE):  # else it is settled later
                await answer.wait()
        worker = job.worker
        if (worker is not None and worker.running is job
                and ends_cooperatively(job.trial)):
            worker.post(Halt(id=job.id))  # after its Run, should that still wait
            with anyio.move_on_after(HALT_GRACE):  # Done, Failed, or the worker's death
                await job.wait_over()
        if worker is not None and worker.running is job:
            worker.retire(f"its trial (model {job.trial.model_id}) was stopped",
                          graceful=False)
            with anyio.move_on_after(EXIT_GRACE):  # exited, reaped and reported
                await worker.ended.wait()


def _lost(worker: Worker, job: Job | None) -> WorkerLost:
    """The error for the trial ``job`` that ``worker`` (exited) was running."""
    exitcode, signum, how = describe_exit(worker.returncode if worker.returncode is not None
                                          else -signal.SIGKILL)
    model, attempt = (job.trial.model_id, job.trial.attempt) if job else (None, None)
    return WorkerLost(
        f"worker {worker.name} (pid {worker.pid}) {how} while it ran model {model} "
        f"(attempt {attempt}); its last output is on this error's .stdout and .stderr",
        worker=worker.name, pid=worker.pid, exitcode=exitcode, signal=signum,
        stdout=worker.last_output.stdout, stderr=worker.last_output.stderr)


def _preload_of(items: Iterable[str | Callable[[], Any]]) -> Preload:
    """``ProcessPool(preload=...)`` as a Preload; ValueError or TypeError names a bad item."""
    if isinstance(items, str):
        raise TypeError(f"preload must be a list of modules or functions, not a string: "
                        f"write preload=[{items!r}]")
    modules: list[str] = []
    calls: list[Symbol] = []
    for item in items:
        if isinstance(item, str):
            module, colon, qualname = item.partition(":")
            if not _dotted(module) or (colon and not _dotted(qualname)):
                raise ValueError(f"preload item {item!r} is not a module name "
                                 "('pkg.module') or a function ('pkg.module:function')")
            if colon:
                calls.append(Symbol(module=module, qualname=qualname))
            else:
                modules.append(module)
        elif callable(item):
            try:
                calls.append(Symbol.of(item))
            except RecipeError as exc:
                raise TypeError(f"preload function {item!r} cannot be called in a worker: "
                                f"{exc}") from None
        else:
            raise TypeError(f"preload items are module names or functions, got {item!r}")
    return Preload(modules=tuple(modules), calls=tuple(calls))


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _symbols_of(model: ExecutableModelSpace) -> tuple[Symbol, ...]:
    """The importable objects a worker needs for ``model``: its recipe's, its evaluator's."""
    if not isinstance(model, SimplifiedModelSpace):
        return ()
    symbols = [model.model.recipe().symbol]
    if isinstance(model.evaluator, FunctionEvaluator):
        symbols.append(Symbol.of(model.evaluator.function))
    return tuple(symbols)


def _maker_of(model: ExecutableModelSpace) -> tuple[object, object] | None:
    """What makes ``model`` (its recipe's factory, its evaluator's function), hashable,
    so that a pool looks up its symbols once per maker, not per model; None when it
    has none or cannot be a key."""
    if not isinstance(model, SimplifiedModelSpace):
        return None
    function = (model.evaluator.function if isinstance(model.evaluator, FunctionEvaluator)
                else None)
    key = (model.model.factory, function)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _pipes() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The worker's ends (its stdin, its stdout, the lifeline it watches) and ours."""
    to_worker, from_worker, lifeline = os.pipe(), os.pipe(), os.pipe()
    return ((to_worker[0], from_worker[1], lifeline[0]),
            (to_worker[1], from_worker[0], lifeline[1]))


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


def _end_group(pid: int) -> None:
    """SIGKILL every process left in worker ``pid``'s process group: the ones its trials
    started. (The group's number cannot be reused while any member lives.)"""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _open_scratch() -> tuple[Path, int]:
    """A new scratch folder and the descriptor of the lock that marks it in use (close
    it after removing the folder); first removes the folders of pools that died."""
    _sweep_scratch(Path(tempfile.gettempdir()))
    directory = Path(tempfile.mkdtemp(prefix=_SCRATCH_PREFIX))
    # Locked before it gets its name, so a sweep never sees it unlocked.
    fd = os.open(directory / "owner.new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(directory / "owner.new", directory / _OWNER)
    return directory, fd


def _sweep_scratch(temp: Path) -> None:
    """Remove each scratch folder whose lock nobody holds: its pool's process died (the
    kernel drops a dead process's locks) before it could remove the folder."""
    for directory in temp.glob(f"{_SCRATCH_PREFIX}*"):
        try:
            fd = os.open(directory / _OWNER, os.O_RDWR)
        except OSError:  # not ours, not locked yet, or gone
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its pool lives
            continue
        else:
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(fd)
