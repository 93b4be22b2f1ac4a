"""The one trial runner every pool's worker calls, and what its result means to the
pool's parent side.

A worker (a process of :class:`~engine.workers.process.ProcessPool`, an actor of
:class:`~engine.workers.ray_pool.RayPool`, the next pool's) receives a frozen model as
``SimplifiedModelSpace.dump()`` bytes and calls :func:`run_trial`: it executes the model
with the worker's :class:`Reporter` (which streams the trial's reports its own way),
captures what the trial writes to fds 1 and 2 (:class:`Capture`), and returns the
trial's last message, :class:`~engine.workers._wire.Done` or
:class:`~engine.workers._wire.Failed`, with the final metric not sent yet and the
captured output. The pool's parent side turns that message back into what
``WorkerPool.run`` returns or raises with :func:`result_of`. So every pool reports the
same things the same way (a failed trial's output included).

Halting: a worker whose parent asks it to end the running trial early (its strategy
stopped or paused the model) sets the trial's :class:`Halting`; the training code's
next ``report_intermediate``, ``report_final`` or ``save_checkpoint`` call then raises
:class:`TrialHalted`, a BaseException (so the code's ``except Exception`` does not
swallow it) that :func:`run_trial` catches: the trial ends with its Done and the
worker lives on for the next one.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from engine._checkpoint import CheckpointSpot, use_checkpoints
from engine._context import use_reporter
from engine._objective import MetricValue
from engine.errors import TrialFailed
from engine.workers._base import TrialOutput
from engine.workers._wire import OUTPUT_LIMIT, Done, Failed

__all__ = (
    "Capture",
    "Halting",
    "Reporter",
    "TrialHalted",
    "Watcher",
    "execute",
    "result_of",
    "run_trial",
)


class Reporter(Protocol):
    """How a worker sends a running trial's reports. ``take_final`` hands over (and
    forgets) a final reported but not sent yet: it travels in Done."""

    def intermediate(self, value: MetricValue) -> None: ...

    def final(self, value: MetricValue) -> None: ...

    def take_final(self) -> MetricValue | None: ...


class TrialHalted(BaseException):
    """Raised in a running trial's training code at its next report or checkpoint save
    once its worker was asked to end it early; caught by :func:`run_trial`. A
    BaseException, like KeyboardInterrupt, so that ``except Exception`` lets it pass."""


class Halting:
    """Whether the running trial is to end at its next report (thread-safe: the flag is
    set by the thread that reads the parent's messages)."""

    def __init__(self) -> None:
        self._flag = threading.Event()

    def set(self) -> None:
        self._flag.set()

    def clear(self) -> None:
        self._flag.clear()

    def is_set(self) -> bool:
        return self._flag.is_set()

    def check(self) -> None:
        """Raise TrialHalted once set."""
        if self._flag.is_set():
            raise TrialHalted("the trial was stopped or paused by its strategy")


class _Halted:
    """A trial's reporter that raises TrialHalted, before reporting, once halted."""

    def __init__(self, reporter: Reporter, halting: Halting) -> None:
        self._reporter, self._halting = reporter, halting

    def intermediate(self, value: MetricValue) -> None:
        self._halting.check()
        self._reporter.intermediate(value)

    def final(self, value: MetricValue) -> None:
        self._halting.check()
        self._reporter.final(value)


class Capture:
    """Points fds 1 and 2 at two files for the duration of each trial, and reads back
    the tail (``OUTPUT_LIMIT`` bytes) of what the trial wrote. ``idle_fd`` is where fds
    1 and 2 point between trials. The files may be unlinked once opened."""

    def __init__(self, stdout_path: str, stderr_path: str, idle_fd: int) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        self._out = os.open(stdout_path, flags, 0o600)
        self._err = os.open(stderr_path, flags, 0o600)
        self._idle_fd = idle_fd
        self._written = True  # whether the last trial wrote anything (then truncate)

    @contextlib.contextmanager
    def trial(self) -> Iterator[None]:
        _flush()
        if self._written:  # most trials print nothing: skip the truncates
            os.ftruncate(self._out, 0)
            os.ftruncate(self._err, 0)
        os.dup2(self._out, 1)
        os.dup2(self._err, 2)
        try:
            yield
        finally:
            _flush()
            os.dup2(self._idle_fd, 1)
            os.dup2(self._idle_fd, 2)

    def output(self) -> tuple[str, str]:
        """(stdout, stderr) of the last trial."""
        stdout, stderr = _tail(self._out), _tail(self._err)
        self._written = bool(stdout or stderr)
        return stdout, stderr


class Watcher(Protocol):
    """Watches one trial's captured output while it runs (the process pool's echo)."""

    def begin(self, model_id: int) -> None: ...

    def end(self) -> None: ...


def run_trial(data: bytes, reporter: Reporter, capture: Capture, *,
              began: Callable[[], None] | None = None, watcher: Watcher | None = None,
              model_id: int = 0, checkpoints: CheckpointSpot | None = None,
              halting: Halting | None = None) -> Done | Failed:
    """Execute the dumped model ``data``, reporting through ``reporter`` and capturing
    its output; its Done, or its Failed (every exception, even a BaseException, is the
    trial's result). ``began`` is called once, when the model is built (its training
    starts), or before the Failed of a model that failed before it was built.
    ``checkpoints``: where its ``save_checkpoint`` / ``load_checkpoint`` go (the
    spot's own ``check`` is replaced when ``halting`` is given). ``halting``: once set,
    the trial's next report or checkpoint save raises TrialHalted and the trial ends
    with a Done (its final, if any, dropped: the parent drops a halted trial's reports)."""
    once = _Once(began)
    failure: TrialFailed | None = None
    halted = False
    reports: Reporter | _Halted = reporter
    if halting is not None:
        reports = _Halted(reporter, halting)
        if checkpoints is not None:
            checkpoints.check = halting.check
    with capture.trial():
        if watcher is not None:
            watcher.begin(model_id)
        try:
            with use_reporter(reports), use_checkpoints(checkpoints):
                execute(data, once)
        except TrialHalted:
            halted = True
        except BaseException as exc:
            failure = TrialFailed.from_exception(exc)
    if watcher is not None:
        watcher.end()
    once()
    stdout, stderr = capture.output()
    final = reporter.take_final()
    if halted:
        final = None
    if failure is None:
        return Done(final=final, stdout=stdout, stderr=stderr)
    return Failed(error_type=failure.error_type, message=failure.message,
                  traceback=failure.traceback, invalid=failure.invalid,
                  paths=failure.paths, stdout=stdout, stderr=stderr)


def execute(data: bytes, began: Callable[[], None] | None = None) -> None:
    """Load and execute one dumped model, calling ``began`` once it is built; an async
    evaluator gets an event loop of its own."""
    from engine.workers._warm import TimedModel

    result = TimedModel.loaded(data, began).execute()
    if inspect.isawaitable(result):
        import anyio

        anyio.run(_wait, result)


def result_of(message: Done | Failed) -> TrialOutput | TrialFailed:
    """What ``WorkerPool.run`` returns (TrialOutput) or raises (TrialFailed) for a
    trial's last message. (A Done's final is the caller's to report.)"""
    if isinstance(message, Failed):
        return TrialFailed(message.error_type, message.message, message.traceback,
                           invalid=message.invalid, paths=tuple(message.paths),
                           stdout=message.stdout, stderr=message.stderr)
    return TrialOutput(stdout=message.stdout, stderr=message.stderr)


class _Once:
    def __init__(self, call: Callable[[], None] | None) -> None:
        self._call = call

    def __call__(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call()


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _tail(fd: int) -> str:
    size = os.fstat(fd).st_size
    if not size:
        return ""
    start = max(0, size - OUTPUT_LIMIT)
    text = os.pread(fd, size - start, start).decode("utf-8", errors="replace")
    return f"[{start} bytes cut]\n{text}" if start else text
