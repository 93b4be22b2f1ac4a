"""A ProcessPool worker: ``main(LIFELINE_FD)`` in a fresh interpreter.

The protocol (see :mod:`engine.workers._wire`) arrives on stdin and leaves on stdout,
but the worker moves both pipes to private descriptors first: fd 0 then reads
``/dev/null``, and fds 1 and 2 are pointed at per-trial capture files while a trial
runs (at the inherited stderr between trials), so nothing the model prints can corrupt
the protocol, and a crash's last words (faulthandler's traceback) land in the capture.

A thread reads the parent's messages while trials run: Runs queue up, so the next one
starts the moment the current one ends, and a Skip is answered at once (Skipped, or
Started when that Run has already begun). A Halt sets the running trial's
:class:`~engine.workers.trial_runner.Halting` (its next report raises, the trial ends
with its Done, the worker lives on), or marks a Run not begun yet, which then ends at
once without being built.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque

import msgspec

from engine._checkpoint import CheckpointSpot
from engine._checks import WORKER_MARK
from engine._objective import MetricValue
from engine.workers._warm import Echo, preload
from engine.workers._wire import (
    Began,
    Done,
    Final,
    FrameBuffer,
    FromWorker,
    Halt,
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
from engine.workers.trial_runner import Capture, Halting, run_trial

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
        self.halting = Halting()  # the running trial's: set by a Halt for it
        self._current: int | None = None  # the id of the Run begun last
        self._halt: int | None = None  # a Halt's id for a Run not begun when it came

    def start(self) -> None:
        threading.Thread(target=self._read, name="nas-engine-inbox", daemon=True).start()

    def next_run(self) -> Run | Preload | None:
        """The next Run (or Preload) to do (waits for one); ``None`` once told to stop."""
        with self._changed:
            while not self._runs and not self._ended:
                self._changed.wait()
            if not self._runs:
                return None
            run = self._runs.popleft()
            if isinstance(run, Run):  # under the lock: a Halt sees which Run runs
                self._current = run.id
                if run.id == self._halt:
                    self.halting.set()
                else:
                    self.halting.clear()
            return run

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
        elif isinstance(message, Halt):
            if message.id == self._current:
                self.halting.set()
            else:  # not begun yet (or ended: then no Run has this id any more)
                self._halt = message.id
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
        self._pending: MetricValue | None = None
        self._since = 0.0
        threading.Thread(target=self._flush_late, name="nas-engine-final", daemon=True).start()

    def intermediate(self, value: MetricValue) -> None:
        with self._lock:
            self._send_pending()
            self._channel.send(Intermediate(value=value))

    def final(self, value: MetricValue) -> None:
        with self._lock:
            self._pending, self._since = value, time.monotonic()

    def take_final(self) -> MetricValue | None:
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


def _run_trial(channel: _Channel, reporter: _PipeReporter, capture: Capture, run: Run,
               echo: Echo | None = None, halting: Halting | None = None) -> None:
    """Execute ``run`` and send its Began (once its model is built), then its Done or
    Failed (before the next Run is taken: see ``_Inbox._take``). A Run halted before it
    began is not built: its Done goes at once."""
    if halting is not None and halting.is_set():
        channel.send(Done())
        return
    taken = time.monotonic()

    def began() -> None:  # the model is built: its training starts now
        channel.send(Began(setup=time.monotonic() - taken))

    spot = (None if run.checkpoint is None
            else CheckpointSpot(run.checkpoint, run.resume_step))
    channel.send(run_trial(run.model, reporter, capture, began=began, watcher=echo,
                           model_id=run.model_id, checkpoints=spot, halting=halting))


class _Lifeline:
    """Exit as soon as the parent dies, even mid-trial: nothing is ever written to the
    lifeline pipe, so a read returns only when the parent's end closes. The worker then
    removes the pool's scratch folder (the parent cannot any more) and kills its process
    group, which holds the processes its trials started (it leads the group when the
    pool started it: see ``ProcessPool``)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.scratch: str | None = None  # the folder to remove, once known
        threading.Thread(target=self._watch, name="nas-engine-lifeline", daemon=True).start()

    def _watch(self) -> None:
        while os.read(self._fd, 1):
            pass
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)


def _take_pipes() -> _Channel:
    """Move the protocol pipes off fds 0 and 1 (the copies are not inherited)."""
    channel = _Channel(os.dup(0), os.dup(1))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return channel


def main(lifeline: int) -> None:
    os.environ[WORKER_MARK] = str(os.getpid())  # an Engine started here refuses at once
    watch = _Lifeline(lifeline)
    # Ctrl-C in a terminal reaches the whole process group: the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = _take_pipes()
    setup = channel.receive()
    if not isinstance(setup, Setup):
        return
    sys.path[:] = setup.sys_path
    watch.scratch = os.path.dirname(setup.stdout_path)
    capture = Capture(setup.stdout_path, setup.stderr_path, os.dup(2))
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
            _run_trial(channel, reporter, capture, run, echo, inbox.halting)


if __name__ == "__main__":
    main(int(sys.argv[1]))
