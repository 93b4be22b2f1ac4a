"""RayPool: runs models on actors of a Ray cluster (the optional ``ray`` extra).

Each worker is one Ray actor holding ``num_cpus_per_trial`` CPUs and
``num_gpus_per_trial`` GPUs, so Ray decides where a trial runs and which GPUs it sees.
An actor runs one trial at a time and is reused for the next. The frozen model goes to
it as ``SimplifiedModelSpace.dump()`` bytes; its reports come back as the process
pool's wire messages (:mod:`engine.workers._wire`), streamed by a Ray generator while
the trial runs.

Failures map as in the process pool: the model raised -> :class:`TrialFailed`; the
actor, its process or its node died -> :class:`WorkerLost`, and a new actor takes the
slot. A cancelled trial (the engine's timeout or ``handle.cancel()``) kills its actor,
which a new one replaces. A trial its strategy stopped or paused
(``trial.ends_cooperatively``) is first asked to end at its next report, as in the
process pool: the actor (its imports, its GPU memory) stays for the next model unless
the trial does not report again within ``HALT_GRACE`` seconds. (An actor runs two
calls at once for that, ``max_concurrency=2``: the trial's stream and the halt.)
Leaving ``serve`` kills every actor of the pool, and shuts
Ray down when the pool started it.

Blocking Ray calls run in worker threads (``anyio.to_thread``): the pool works on
asyncio and trio alike. Ray is imported when a ``RayPool`` is made, never by
``import engine``.

Checkpoints: an actor writes and reads a model's checkpoints in the run's checkpoint
folder, a path on the driver's machine. That works when every actor sees that path:
a one-machine cluster, or a run file on a filesystem every node mounts at the same
path. Elsewhere ``save_checkpoint`` writes to a folder on the actor's own node, which
the driver cannot see: pausing and retrying then restart such models afresh.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import math
import os
import queue
import sys
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import msgspec
from anyio.abc import TaskStatus

from engine._checkpoint import CheckpointSpot
from engine._checks import check_count, check_positive
from engine._objective import MetricValue
from engine.errors import TrialFailed, WorkerLost, WorkerStartFailed
from engine.space import ExecutableModelSpace, dump_model
from engine.workers._base import HALT_GRACE, PoolMonitor, Trial, TrialOutput, ends_cooperatively
from engine.workers._gpu import detect_devices, parse_visible_devices
from engine.workers._wire import Done, Failed, Final, FromWorker, Hello, Intermediate
from engine.workers.trial_runner import Capture, Halting, result_of, run_trial

__all__ = ("HALT_GRACE", "RayPool")


_encode = msgspec.msgpack.Encoder().encode
_decode_hello = msgspec.msgpack.Decoder(Hello).decode
_decode = msgspec.msgpack.Decoder(FromWorker).decode


def _import_ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ModuleNotFoundError(
            "RayPool needs Ray, which is not installed: pip install 'nas-engine[ray]'",
            name="ray") from exc


# -- the actor's side ----------------------------------------------------------------------


class _QueueReporter:
    """Sends each intermediate report at once; keeps the final for ``Done`` (one
    message fewer per trial: most finals are the function's return value)."""

    def __init__(self, send: Callable[[bytes | None], None]) -> None:
        self._send = send
        self._final: MetricValue | None = None

    def intermediate(self, value: MetricValue) -> None:
        self._send(_encode(Intermediate(value=value)))

    def final(self, value: MetricValue) -> None:
        self._final = value

    def take_final(self) -> MetricValue | None:
        value, self._final = self._final, None
        return value


class _TrialActor:
    """One worker (a Ray actor): runs one trial at a time, streaming its messages."""

    def __init__(self, sys_path: list[str]) -> None:
        # The driver's import path, so recipes resolve as they do there (entries that
        # do not exist on this node are skipped).
        sys.path.extend(p for p in sys_path if p not in sys.path and os.path.isdir(p))
        # The running trial's number and Halting: halt() runs beside run() (a threaded
        # actor), maybe late, so it halts only the trial it names.
        self._lock = threading.Lock()
        self._running: tuple[int, Halting] | None = None
        paths = [tempfile.mkstemp(prefix=f"nas-engine-{n}-") for n in ("out", "err")]
        for fd, _ in paths:
            os.close(fd)
        self._capture = Capture(paths[0][1], paths[1][1], os.dup(2))
        for _, path in paths:  # the capture keeps them open
            os.unlink(path)

    def hello(self) -> bytes:
        return _encode(Hello(pid=os.getpid(),
                             visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES")))

    def run(self, model: bytes, checkpoint: str | None = None, resume_step: int = 0,
            number: int = 0) -> Iterator[bytes]:
        """Execute ``model``; yield each report as it happens, then Done or Failed.
        ``checkpoint``: the folder of its checkpoints, a path on the driver's machine
        (see the module's note on checkpoints). ``number``: what :meth:`halt` names it by."""
        messages: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        spot = None if checkpoint is None else CheckpointSpot(checkpoint, resume_step)
        halting = Halting()
        with self._lock:
            self._running = (number, halting)
        trial = threading.Thread(target=self._trial,
                                 args=(model, messages.put, spot, halting),
                                 name="nas-engine-trial")
        trial.start()
        try:
            while (message := messages.get()) is not None:
                yield message
            trial.join()
        finally:
            with self._lock:
                self._running = None

    def halt(self, number: int) -> None:
        """Have trial ``number``, if it still runs, end at its next report (its Done
        then ends the stream, and the actor takes the next trial)."""
        with self._lock:
            if self._running is not None and self._running[0] == number:
                self._running[1].set()

    def _trial(self, model: bytes, send: Callable[[bytes | None], None],
               spot: CheckpointSpot | None, halting: Halting) -> None:
        send(_encode(run_trial(model, _QueueReporter(send), self._capture,
                               checkpoints=spot, halting=halting)))
        send(None)


# -- the driver's side ---------------------------------------------------------------------


class _Worker:
    def __init__(self, slot: int, actor: Any, hello: Hello, gpus: tuple[int, ...]) -> None:
        self.slot, self.actor, self.pid, self.gpus = slot, actor, hello.pid, gpus
        self.name = f"ray-{slot}"


class _ThreadGate:
    """Whether an abandonable thread began: a cancelled caller waits for a thread that
    began to end, and keeps one that did not begin from ever beginning."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._began = self._closed = False
        self.ended = threading.Event()
        self.answered = False  # the thread got the trial's last message (Done or Failed)

    def begin(self) -> bool:
        with self._lock:
            self._began = not self._closed
            return self._began

    def close(self) -> bool:
        """Close the gate; True when the thread had begun (then wait for ``ended``)."""
        with self._lock:
            self._closed = True
            return self._began


def _report(trial: Trial, message: FromWorker) -> None:
    if isinstance(message, Intermediate):
        trial.intermediate(message.value)
    elif isinstance(message, Final):
        trial.final(message.value)
    elif isinstance(message, Done) and message.final is not None:
        trial.final(message.final)


def _death_reason(exc: BaseException) -> str:
    """The sentence of a Ray error that says why the actor died (else its first line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    because = [line.split(". ")[0].rstrip(".") + "." for line in lines if "because" in line]
    return (because or lines or [type(exc).__name__])[0][:300]


class RayPool:
    """``workers`` models at a time, each on a Ray actor of its own.

    ``address`` None starts a local Ray instance (``ray.init(num_cpus=...)``) for the
    life of the pool; ``"auto"`` or ``"ray://host:port"`` connects to a running cluster
    and disconnects at the end. A Ray session this process already has is used as it is
    and left running. ``init_kwargs`` go to ``ray.init`` (``runtime_env=...``, say).
    ``workers`` defaults to what this machine holds at the per-trial resources; give it
    with an ``address``. ``start_timeout``: seconds the cluster has to place new actors;
    ``grace``: seconds to wait for a killed actor's stream to end.

    Every node needs nas-engine installed; the driver's ``sys.path`` entries that exist
    on a node are added to its actors', so recipes resolve there as they do here.
    """

    name = "ray"
    prefetch = 0

    def __init__(
        self, workers: int | None = None, *, address: str | None = None,
        num_cpus_per_trial: float = 1, num_gpus_per_trial: float = 0,
        init_kwargs: dict[str, Any] | None = None, start_timeout: float = 120.0,
        grace: float = 10.0,
    ) -> None:
        self._ray = _import_ray()
        check_positive("num_cpus_per_trial", num_cpus_per_trial, zero=True)
        check_positive("num_gpus_per_trial", num_gpus_per_trial, zero=True)
        if num_gpus_per_trial > 1 and num_gpus_per_trial != int(num_gpus_per_trial):
            raise ValueError(f"num_gpus_per_trial above 1 must be a whole number of GPUs, "
                             f"got {num_gpus_per_trial!r}")
        check_positive("start_timeout", start_timeout, meaning="seconds")
        check_positive("grace", grace, meaning="seconds")
        self._address, self._init_kwargs = address, dict(init_kwargs or {})
        self._cpus, self._gpus = num_cpus_per_trial, num_gpus_per_trial
        self._workers = _worker_count(workers, address, num_cpus_per_trial, num_gpus_per_trial)
        self._start_timeout, self._grace = start_timeout, grace
        self._names = (f"nas-engine-{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count())
        self._numbers = itertools.count(1)  # of trials, for halt()
        self._live: dict[int, _Worker] = {}
        self._dumped: weakref.WeakKeyDictionary[ExecutableModelSpace, bytes] = (
            weakref.WeakKeyDictionary())
        self._users = 0
        self._quiet: anyio.Event | None = None

    @property
    def capacity(self) -> int:
        return self._workers

    def check(self, model: ExecutableModelSpace) -> None:
        """ValueError or TypeError now when ``model`` cannot run on a Ray actor."""
        if model.evaluator is None:
            raise ValueError("this model has no evaluator: pass one to from_model()")
        self._dumped[model] = dump_model(model)  # kept for run(), while the model lives

    def __repr__(self) -> str:
        return (f"RayPool(workers={self._workers}, address={self._address!r}, "
                f"num_cpus_per_trial={self._cpus!r}, num_gpus_per_trial={self._gpus!r})")

    # -- life cycle --------------------------------------------------------------------------

    async def serve(self, monitor: PoolMonitor, *, task_status: TaskStatus[None]) -> None:
        """Start Ray (unless this process has a session) and the actors, report ready,
        then replace lost actors until cancelled; on the way out, kill every actor."""
        self._monitor = monitor
        self._release, self._free = anyio.create_memory_object_stream[_Worker](self._workers)
        self._replace, replace = anyio.create_memory_object_stream[int](self._workers)
        self._limiter = anyio.CapacityLimiter(self._workers)
        self._actor_class = self._ray.remote(_TrialActor)
        stop, ready, errors = threading.Event(), anyio.Event(), list[Exception]()
        async with anyio.create_task_group() as tg:
            try:
                if not self._ray.is_initialized():
                    tg.start_soon(self._hold_session, stop, ready, errors)
                    await ready.wait()
                    if errors:
                        raise errors[0]
                for worker in await self._start(list(range(self._workers))):
                    self._enlist(worker)
                task_status.started()
                async for slot in replace:
                    self._enlist((await self._start([slot]))[0])
            except Exception as exc:  # raised below, by serve() itself rather than in a group
                errors[:] = [exc]
            finally:
                with anyio.CancelScope(shield=True):
                    for stream in (replace, self._replace, self._release, self._free):
                        stream.close()
                    await self._stop_all()
                    stop.set()
        if errors:
            raise errors[0]

    async def _hold_session(self, stop: threading.Event, ready: anyio.Event,
                            errors: list[Exception]) -> None:
        """``ray.init`` in a thread that stays until ``stop``, then ``ray.shutdown``: Ray
        ties the processes it starts to the life of the thread that started them. Sets
        ``ready`` once ``ray.init`` returned or failed (its error in ``errors``)."""
        ray, arguments = self._ray, self._init_arguments()

        def hold() -> None:
            try:
                ray.init(**arguments)
            except Exception as exc:
                errors.append(exc)
                return
            finally:
                anyio.from_thread.run_sync(ready.set)
            try:
                stop.wait()
            finally:
                ray.shutdown()

        with anyio.CancelScope(shield=True):  # ray.init cannot be interrupted
            await anyio.to_thread.run_sync(hold)

    def _init_arguments(self) -> dict[str, Any]:
        if self._address is not None:
            return {"address": self._address, **self._init_kwargs}
        # "local": a new instance, even where ray.init() would join a running one.
        cpus = max(1, math.ceil(self._workers * self._cpus))
        return {"address": "local", "num_cpus": cpus, **self._init_kwargs}

    async def _start(self, slots: list[int]) -> list[_Worker]:
        """New actors for ``slots``, once each has answered (``start_timeout`` at most).
        When cancelled, the new actors are killed."""
        names, gate = [next(self._names) for _ in slots], _ThreadGate()
        actors: list[Any] = []
        try:
            await anyio.to_thread.run_sync(self._create_actors, names, actors)
            hellos = await anyio.to_thread.run_sync(
                self._wait_ready, actors, gate, abandon_on_cancel=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._kill_all, actors)
                if gate.close():
                    await anyio.to_thread.run_sync(gate.ended.wait, self._grace)
            raise
        assert hellos is not None  # None only when the gate closed first: cancelled
        return [_Worker(slot, actor, hello, self._gpu_ids(hello))
                for slot, actor, hello in zip(slots, actors, hellos, strict=True)]

    def _create_actors(self, names: list[str], into: list[Any]) -> None:
        options = {"num_cpus": self._cpus, "num_gpus": self._gpus, "max_restarts": 0,
                   "max_concurrency": 2}  # a trial's stream, and halt() beside it
        for name in names:
            into.append(self._actor_class.options(name=name, **options).remote(list(sys.path)))

    def _wait_ready(self, actors: list[Any], gate: _ThreadGate) -> list[Hello] | None:
        if not gate.begin():
            return None
        ray = self._ray
        try:
            hellos = ray.get([a.hello.remote() for a in actors], timeout=self._start_timeout)
        except ray.exceptions.GetTimeoutError:
            raise WorkerStartFailed(
                f"Ray did not place {len(actors)} actor(s) of num_cpus={self._cpus}, "
                f"num_gpus={self._gpus} within start_timeout={self._start_timeout:g} s "
                f"(free now: {ray.available_resources()}): lower workers or the per-trial "
                "resources, add nodes, or raise start_timeout") from None
        except ray.exceptions.RayActorError as exc:
            raise WorkerStartFailed(
                f"a Ray actor of this pool died before it was ready ({_death_reason(exc)}): "
                "check that nas-engine imports on every node (or pass a runtime_env in "
                "init_kwargs)") from None
        finally:
            gate.ended.set()
        return [_decode_hello(hello) for hello in hellos]

    def _gpu_ids(self, hello: Hello) -> tuple[int, ...]:
        if not self._gpus:
            return ()
        return tuple(d.id for d in parse_visible_devices(hello.visible_devices or ""))

    def _enlist(self, worker: _Worker) -> None:
        self._live[worker.slot] = worker
        self._monitor.worker_started(worker.name, worker.pid, worker.gpus)
        self._release.send_nowait(worker)

    async def _stop_all(self) -> None:
        """Kill every actor, then wait for the trials still in Ray calls to leave."""
        actors = [worker.actor for worker in self._live.values()]
        self._live.clear()
        if actors:
            await anyio.to_thread.run_sync(self._kill_all, actors, True)
        with anyio.move_on_after(2 * self._grace):
            while self._users:
                self._quiet = self._quiet or anyio.Event()
                await self._quiet.wait()

    def _kill_all(self, actors: list[Any], confirm: bool = False) -> None:
        """Kill ``actors``; with ``confirm``, wait until Ray reports each one dead."""
        for actor in actors:
            with contextlib.suppress(Exception):
                self._ray.kill(actor, no_restart=True)
        for actor in actors if confirm else ():
            with contextlib.suppress(Exception):  # the expected outcome: RayActorError
                self._ray.get(actor.hello.remote(), timeout=self._grace)

    # -- trials ------------------------------------------------------------------------------

    async def run(self, model: ExecutableModelSpace, trial: Trial) -> TrialOutput:
        data = self._dumped.pop(model, None) or dump_model(model)
        worker = await self._free.receive()
        trial.started(worker.name, worker.gpus)
        with self._in_use():
            message = await self._stream(worker, data, trial)
        result = result_of(message)
        if isinstance(result, TrialFailed):
            raise result
        _report(trial, message)
        return result

    async def _stream(self, worker: _Worker, data: bytes, trial: Trial) -> Done | Failed:
        gate, number = _ThreadGate(), next(self._numbers)
        try:
            message = await anyio.to_thread.run_sync(
                self._pump, worker.actor, data, trial, gate, number, abandon_on_cancel=True,
                limiter=self._limiter)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                if not gate.close() or (ends_cooperatively(trial)
                                        and await self._halt(worker, gate, number)):
                    self._give_back(worker)
                else:
                    reason = f"its trial (model {trial.model_id}) was stopped (actor killed)"
                    await self._retire(worker, gate, reason)
            raise
        except Exception as exc:  # the actor, its process or its node is gone
            reason = _death_reason(exc)
            with anyio.CancelScope(shield=True):
                await self._retire(worker, gate, reason)
            raise WorkerLost(f"{worker.name} (Ray actor, pid {worker.pid}) was lost while "
                             f"it ran this model: {reason}", worker=worker.name,
                             pid=worker.pid) from None
        self._give_back(worker)
        assert message is not None  # None only when the gate closed first: cancelled
        return message

    def _pump(self, actor: Any, data: bytes, trial: Trial, gate: _ThreadGate,
              number: int) -> Done | Failed | None:
        """Blocking: run the trial on ``actor``, forwarding its reports to the loop."""
        if not gate.begin():
            return None
        try:
            stream = actor.run.options(num_returns="streaming").remote(
                data, getattr(trial, "checkpoint_dir", None), getattr(trial, "resume_step", 0),
                number)
            for ref in stream:
                message = _decode(self._ray.get(ref))
                if isinstance(message, Done | Failed):
                    gate.answered = True
                    return message
                anyio.from_thread.run_sync(_report, trial, message)
            raise RuntimeError("the actor's stream ended without a result")
        finally:
            gate.ended.set()

    async def _halt(self, worker: _Worker, gate: _ThreadGate, number: int) -> bool:
        """Ask ``worker``'s actor to end trial ``number`` at its next report; True once
        the trial's stream ended with its last message within ``HALT_GRACE`` (the actor
        is whole: it may take the next trial), False otherwise (kill it)."""
        with contextlib.suppress(Exception):  # a dead actor: its stream says so below
            await anyio.to_thread.run_sync(worker.actor.halt.remote, number)
        await anyio.to_thread.run_sync(gate.ended.wait, HALT_GRACE)
        return gate.answered

    async def _retire(self, worker: _Worker, gate: _ThreadGate, reason: str) -> None:
        """Kill ``worker``'s actor, wait for its stream to end, and ask for a new one."""
        self._live.pop(worker.slot, None)
        await anyio.to_thread.run_sync(self._kill_all, [worker.actor])
        await anyio.to_thread.run_sync(gate.ended.wait, self._grace)
        self._monitor.worker_died(worker.name, worker.pid, None, None, reason)
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._replace.send_nowait(worker.slot)

    def _give_back(self, worker: _Worker) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._release.send_nowait(worker)

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        """Count trials inside Ray calls: Ray must not shut down under them."""
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            if not self._users and self._quiet is not None:
                self._quiet.set()
                self._quiet = None


def _worker_count(workers: int | None, address: str | None, cpus: float, gpus: float) -> int:
    if workers is not None:
        check_count("workers", workers)
        return workers
    if address is not None:
        raise ValueError(f"pass workers=N with address={address!r}: how many trials the "
                         "cluster runs at once is not known before connecting")
    if gpus:
        count = int(len(detect_devices(os.environ)[0]) / gpus)
        if count < 1:
            raise ValueError(f"num_gpus_per_trial={gpus!r} needs GPUs but this machine shows "
                             "none: pass workers=N or use num_gpus_per_trial=0")
        return count
    return max(1, int((os.cpu_count() or 1) // (cpus or 1)))
