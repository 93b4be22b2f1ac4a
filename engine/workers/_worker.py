"""A ProcessPool worker: ``main(LIFELINE_FD)`` in a fresh interpreter.

The protocol (see :mod:`engine.workers._wire`) arrives on stdin and leaves on stdout,
but the worker moves both pipes to private descriptors first: fd 0 then reads
``/dev/null``, and fds 1 and 2 are pointed at per-trial capture files while a trial
runs (at the inherited stderr between trials), so nothing the model prints can corrupt
the protocol, and a crash's last words (faulthandler's traceback) land in the capture.

A thread reads the parent's messages while trials run: Runs queue up, so the next one
starts the moment the current one ends, and a Skip is answered at once (Skipped, or
Started when that Run has already begun).
"""

from __future__ import annotations

import contextlib
import faulthandler
import inspect
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec

from engine.errors import TrialFailed
from engine.workers._warm import Echo, TimedModel, preload
from engine.workers._wire import (
    OUTPUT_LIMIT,
    Began,
    Done,
    Failed,
    Final,
    FrameBuffer,
    FromWorker,
    Hello,
    Intermediate,
    Preload,
    Run,
    Setup,
    Skip,
    Skipped,
    Started,
    ToWorker,
    frame,
)

#: Seconds a reported final waits for the trial's end before it is sent on its own.
FINAL_DELAY = 0.05


class _Channel:
    """Blocking, framed reads and writes on the protocol's private descriptors."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd, self._write_fd = read_fd, write_fd
        self._frames = FrameBuffer()
        self._decoder: msgspec.msgpack.Decoder[ToWorker] = msgspec.msgpack.Decoder(ToWorker)
        self._lock = threading.Lock()  # a model may report from several threads

    def send(self, message: FromWorker) -> None:
        data = memoryview(frame(message))
        with self._lock:
            while data:
                data = data[os.write(self._write_fd, data):]

    def receive(self) -> ToWorker | None:
        """The next message, or ``None`` when the parent closed the pipe."""
        while (payload := self._frames.next_frame()) is None:
            chunk = os.read(self._read_fd, 1 << 16)
            if not chunk:
                return None
            self._frames.feed(chunk)
        return self._decoder.decode(payload)


class _Inbox:
    """The Runs sent and not started yet, filled by a thread that reads the parent's
    messages for as long as the pipe is open."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._runs: deque[Run | Preload] = deque()
        self._changed = threading.Condition()
        self._ended = False  # Stop, or the parent closed the pipe

    def start(self) -> None:
        threading.Thread(target=self._read, name="nas-engine-inbox", daemon=True).start()

    def next_run(self) -> Run | Preload | None:
        """The next Run (or Preload) to do (waits for one); ``None`` once told to stop."""
        with self._changed:
            while not self._runs and not self._ended:
                self._changed.wait()
            return self._runs.popleft() if self._runs else None

    def _read(self) -> None:
        while (message := self._channel.receive()) is not None:
            with self._changed:
                self._take(message)
        with self._changed:
            self._ended = True
            self._changed.notify()

    def _take(self, message: ToWorker) -> None:
        if isinstance(message, Run | Preload):
            self._runs.append(message)
            self._changed.notify()
        elif isinstance(message, Skip):
            # Under the lock, so next_run() cannot take it meanwhile: a Run not queued
            # any more has begun, after the Done of the one before went out.
            run = next((run for run in self._runs
                        if isinstance(run, Run) and run.id == message.id), None)
            if run is None:
                self._channel.send(Started(id=message.id))
            else:
                self._runs.remove(run)
                self._channel.send(Skipped(id=message.id))
        else:  # Stop, or a stray Setup: finish what was sent, then exit
            self._ended = True
            self._changed.notify()


class _PipeReporter:
    """Sends reports to the parent. An intermediate goes at once. A final is held back
    until the trial ends (it then travels inside Done), the next report, or at most
    about ``2 * FINAL_DELAY`` seconds: most finals are a function's return value, and
    sending them apart costs the parent a wake-up per trial. One reporter serves every
    trial of a worker."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._lock = threading.Lock()
        self._pending: float | None = None
        self._since = 0.0
        threading.Thread(target=self._flush_late, name="nas-engine-final", daemon=True).start()

    def intermediate(self, value: float) -> None:
        with self._lock:
            self._send_pending()
            self._channel.send(Intermediate(value=value))

    def final(self, value: float) -> None:
        with self._lock:
            self._pending, self._since = value, time.monotonic()

    def take_final(self) -> float | None:
        """The final not sent yet (the trial ended): it goes with Done."""
        with self._lock:
            value, self._pending = self._pending, None
            return value

    def _send_pending(self) -> None:
        if self._pending is not None:
            self._channel.send(Final(value=self._pending))
            self._pending = None

    def _flush_late(self) -> None:
        # Polls rather than being woken by final(): a wake-up per trial costs a thread
        # switch, which doubled the round trip of a short trial when measured.
        while True:
            time.sleep(FINAL_DELAY)
            with self._lock:
                if self._pending is not None and (
                        time.monotonic() - self._since >= FINAL_DELAY):
                    self._send_pending()


class _Capture:
    """Points fds 1 and 2 at the capture files for the duration of one trial."""

    def __init__(self, setup: Setup, idle_fd: int) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
        self._out = os.open(setup.stdout_path, flags, 0o600)
        self._err = os.open(setup.stderr_path, flags, 0o600)
        self._idle_fd = idle_fd  # where fds 1 and 2 point between trials
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
        stdout, stderr = _tail(self._out), _tail(self._err)
        self._written = bool(stdout or stderr)
        return stdout, stderr


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


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _execute(data: bytes, began: Callable[[], None] | None = None) -> None:
    """Load and execute one model, calling ``began`` once it is built; async evaluators
    get their own event loop."""
    result = TimedModel.loaded(data, began).execute()
    if inspect.isawaitable(result):
        import anyio

        anyio.run(_wait, result)


def _run_trial(channel: _Channel, reporter: _PipeReporter, capture: _Capture, run: Run,
               echo: Echo | None = None) -> None:
    """Execute ``run`` and send its Began, then its Done or Failed (before the next Run
    is taken: see ``_Inbox._take``)."""
    from engine._context import use_reporter

    taken = time.monotonic()
    began = False

    def begin() -> None:  # the model is built: its training starts now
        nonlocal began
        if not began:
            began = True
            channel.send(Began(setup=time.monotonic() - taken))

    failure: TrialFailed | None = None
    with capture.trial():
        if echo is not None:
            echo.begin(run.model_id)
        try:
            with use_reporter(reporter):
                _execute(run.model, begin)
        except BaseException as exc:  # every error is the trial's result
            failure = TrialFailed.from_exception(exc)
    if echo is not None:
        echo.end()
    begin()  # a model that failed before it was built
    stdout, stderr = capture.output()
    final = reporter.take_final()
    if failure is None:
        channel.send(Done(final=final, stdout=stdout, stderr=stderr))
    else:
        channel.send(Failed(error_type=failure.error_type, message=failure.message,
                            traceback=failure.traceback, invalid=failure.invalid,
                            paths=failure.paths, stdout=stdout, stderr=stderr))


def _exit_with_parent(lifeline: int) -> None:
    """Exit as soon as the parent dies, even mid-trial: nothing is ever written to the
    lifeline pipe, so a read returns only when the parent's end closes."""
    def watch() -> None:
        while os.read(lifeline, 1):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="nas-engine-lifeline", daemon=True).start()


def _take_pipes() -> _Channel:
    """Move the protocol pipes off fds 0 and 1 (the copies are not inherited)."""
    channel = _Channel(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return channel


def main(lifeline: int) -> None:
    _exit_with_parent(lifeline)
    # Ctrl-C in a terminal reaches the whole process group: the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = _take_pipes()
    setup = channel.receive()
    if not isinstance(setup, Setup):
        return
    sys.path[:] = setup.sys_path
    capture = _Capture(setup, os.dup(2))
    echo = Echo(setup, os.dup(2)) if setup.echo else None
    preload(setup.preload, strict=True)  # a failure ends the worker before its hello
    faulthandler.enable()
    channel.send(Hello(pid=os.getpid(), visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES")))
    reporter = _PipeReporter(channel)
    inbox = _Inbox(channel)
    inbox.start()
    while (run := inbox.next_run()) is not None:
        if isinstance(run, Preload):
            preload(run, strict=False)
        else:
            _run_trial(channel, reporter, capture, run, echo)


if __name__ == "__main__":
    main(int(sys.argv[1]))
