"""A model space and evaluators for the process-pool tests, and the recording Trial and
PoolMonitor that drive a pool without an engine.

They live here, imported as ``tests.process_fixtures``, because a worker process imports
a dumped model's symbols by module name (see ``tests/_spaces.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import psutil

from engine import (
    BaseModelSpace,
    Categorical,
    FunctionEvaluator,
    SimplifiedModelSpace,
    ensure_frozen,
    report_final,
    report_intermediate,
)
from engine.errors import TrialFailed, WorkerLost
from engine.evaluator import Evaluator
from engine.mutable import SampleValidationError
from engine.testing import RecordingMonitor as Monitor
from engine.workers.process import ProcessPool


class Space(BaseModelSpace):
    def __init__(self) -> None:
        self.x = ensure_frozen(Categorical([1, 2, 3], label="x"))


def frozen(evaluator: Evaluator, x: int = 1) -> SimplifiedModelSpace:
    """A frozen model of :class:`Space` with ``evaluator``."""
    return SimplifiedModelSpace.from_model(Space(), evaluator).freeze({"x": x})


def model(function: object, x: int = 1, **kwargs: object) -> SimplifiedModelSpace:
    return frozen(FunctionEvaluator(function, **kwargs), x)  # type: ignore[arg-type]


def chatty(model: Space) -> float:
    """Reports two intermediates and a final; writes to stdout, stderr and fd 1 directly."""
    print(f"stdout of x={model.x}")
    print(f"stderr of x={model.x}", file=sys.stderr)
    os.write(1, b"straight to fd 1\n")
    report_intermediate(0.25)
    report_intermediate(0.5)
    report_final(model.x * 10)
    return -1.0  # the reported final wins


def environment(model: Space) -> float:
    """Prints what this trial sees: its pid and CUDA_VISIBLE_DEVICES."""
    print(f"pid={os.getpid()}")
    print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}")
    return float(model.x)


def boom(model: Space) -> float:
    print("about to fail")
    raise ValueError(f"boom {model.x}")


def die(model: Space, how: str) -> float:
    """Kills its own worker: ``exit`` (code 3), ``sigkill`` or ``segfault``."""
    print(f"dying by {how}", flush=True)
    if how == "exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    ctypes.string_at(0)
    return 0.0


def fork_and_die(model: Space) -> float:
    """Forks a grandchild that keeps the worker's pipes open for 30 s, then exits 5."""
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    print(f"grandchild={pid}", flush=True)
    os._exit(5)


def wait_for(model: Space, flag: str, marker: str = "") -> float:
    """Creates ``marker`` (if given), reports 1.0, then waits until ``flag`` exists
    (forever, if nobody creates it)."""
    if marker:
        Path(marker).touch()
    report_intermediate(1.0)
    path = Path(flag)
    while not path.exists():
        time.sleep(0.005)
    return 2.0


def wait_then_die(model: Space, flag: str, how: str) -> float:
    """Reports 1.0, waits until ``flag`` exists, then kills its worker (see ``die``)."""
    wait_for(model, flag)
    return die(model, how)


def sleep_for(model: Space, seconds: float) -> float:
    """Sleeps ``seconds``; returns how long it slept."""
    start = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - start


def payload_size(model: Space, payload: str) -> float:
    """For a model too big for one pipe buffer: the size of its argument."""
    return float(len(payload))


async def async_chatty(model: Space) -> float:
    await anyio.lowlevel.checkpoint()
    report_intermediate(0.5)
    print("async stdout")
    return float(model.x)


def noop(model: Space) -> float:
    return 0.0


def busy(model: Space, seconds: float) -> float:
    """Spins for ``seconds`` of wall time; returns the time it spun."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        pass
    return time.perf_counter() - start


def invalid(model: Space) -> float:
    raise SampleValidationError("this architecture cannot be built", ["model", "x"])


def flaky(model: Space, marker: str) -> float:
    """Fails on its first attempt (which leaves ``marker`` behind), then trains."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("first attempt fails")
    return 1.0


def final_then_wait(model: Space, flag: str) -> None:
    """Reports a final, then goes on until ``flag`` exists."""
    report_final(5.0)
    path = Path(flag)
    while not path.exists():
        time.sleep(0.005)


def placed(model: Space, flag: str) -> float:
    """Prints this trial's CUDA_VISIBLE_DEVICES, reports, then waits for ``flag``."""
    print(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return wait_for(model, flag)


# -- driving a pool without an engine (parent side only) ------------------------


class Recorder:
    """A Trial that records every call (also in ``log``, shared between recorders, as
    ``(model_id, call)``); ``reported`` is set at the first intermediate, ``finalized``
    at the first final."""

    def __init__(self, model_id: int = 1, attempt: int = 1,
                 log: list[tuple[int, str]] | None = None) -> None:
        self.model_id, self.attempt = model_id, attempt
        self.calls: list[tuple[Any, ...]] = []
        self.log = log if log is not None else []
        self.reported = anyio.Event()
        self.finalized = anyio.Event()

    def loading(self) -> None:
        pass

    def started(self, worker: str, gpus: tuple[int, ...] = (), setup: float = 0.0) -> None:
        self.setup = setup
        self._record("started", worker, tuple(gpus))

    def intermediate(self, value: float) -> None:
        self._record("intermediate", value)
        self.reported.set()

    def final(self, value: float) -> None:
        self._record("final", value)
        self.finalized.set()

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        self.log.append((self.model_id, call[0]))

    @property
    def worker(self) -> str:
        return str(self.calls[0][1])


def children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


@contextlib.asynccontextmanager
async def serving(pool: ProcessPool) -> AsyncIterator[Monitor]:
    """``pool`` served in a task group; afterwards no worker process is left."""
    monitor = Monitor()
    async with anyio.create_task_group() as tg:
        await tg.start(pool.serve, monitor)
        yield monitor
        tg.cancel_scope.cancel()
    assert children() == []


class Running:
    """A ``pool.run`` started by :func:`run_in`: cancel it with ``scope``; ``ended`` is
    set once it returned (or raised)."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.ended = anyio.Event()

    async def cancel(self) -> None:
        """Cancel the run and wait until it has returned."""
        self.scope.cancel()
        await self.ended.wait()


async def run_in(tg: Any, pool: ProcessPool, model: Any, trial: Recorder,
                 results: dict[int, Any]) -> Running:
    """Start ``pool.run`` in ``tg`` and let it reach its first wait; its output or
    error lands in ``results``."""
    running = Running()

    async def run() -> None:
        try:
            with running.scope:
                results[trial.model_id] = await pool.run(model, trial)
        except (TrialFailed, WorkerLost) as exc:
            results[trial.model_id] = exc
        finally:
            running.ended.set()
    tg.start_soon(run)
    await anyio.wait_all_tasks_blocked()  # run() has given its model to the pool
    return running


def pid_of(output: str) -> int:
    return int(output.split("pid=")[1].split()[0])


def spawn_then_wait(model: Space, flag: str) -> float:
    """Starts a child process that sleeps 1000 s, reports its pid, then waits until
    ``flag`` exists (forever, if nobody creates it)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    return wait_for_pid(child.pid, flag)


def wait_for_pid(pid: int, flag: str) -> float:
    report_intermediate(float(pid))
    path = Path(flag)
    while not path.exists():
        time.sleep(0.005)
    return 2.0


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (a zombie has) within ``timeout`` seconds."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        deadline = time.monotonic() + timeout
        while process.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() > deadline:
                return False
            with contextlib.suppress(psutil.TimeoutExpired):
                process.wait(timeout=0.05)
    return True
