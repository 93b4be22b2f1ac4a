"""The parent's side of one worker process (used by :mod:`engine.workers.process`):
its pipes, the trials sent to it, its life-cycle flags, and how an exit reads.

The pipes are raw non-blocking descriptors. A message to the worker is written at once
when the pipe has room and otherwise waits in an outbox that :meth:`Worker.write_out`
empties, so a cancelled caller never leaves half a message in the pipe, and a Run
still wholly in the outbox can be taken back.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import msgspec

from engine.workers._base import Trial, TrialOutput
from engine.workers._wire import OUTPUT_LIMIT, FrameBuffer, FromWorker, ToWorker, frame

if TYPE_CHECKING:
    from anyio.abc import Process

__all__ = (
    "EXIT_GRACE",
    "PIPE_GONE",
    "Job",
    "ProtocolBroken",
    "Worker",
    "collect_output",
    "describe_exit",
)

#: Seconds a worker gets to exit after Stop (or after its pipe closed) before a SIGKILL.
EXIT_GRACE = 5.0
PIPE_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)
_CHUNK = 1 << 16


class ProtocolBroken(RuntimeError):
    """A worker sent bytes that are not a message, or a message out of turn."""


class Job:
    """One ``ProcessPool.run`` call: the model to send and the Trial to report to, from
    the moment it waits for a worker until it has a result."""

    def __init__(self, number: int, data: bytes, trial: Trial) -> None:
        self.id, self.data, self.trial = number, data, trial
        self.worker: Worker | None = None  # the worker it was sent to
        self.started_at: float | None = None  # when its worker started it
        self.detached = False  # run() has left: report nothing more to the trial
        self.recalled: anyio.Event | None = None  # a Skip was sent; set once answered
        self.result: TrialOutput | BaseException | None = None
        self.settled = anyio.Event()
        # Its worker ended it or is gone (detached or not). The Event is made only when
        # someone waits (a stopped trial's run(), rarely): one Event less per trial.
        self.over = False
        self._over: anyio.Event | None = None

    @property
    def awaits_answer(self) -> bool:
        """A Skip was sent for it and the worker has not answered yet."""
        return self.recalled is not None and not self.recalled.is_set()

    def answered(self) -> None:
        """The worker answered the Skip (or is gone): the job is where it is now."""
        if self.recalled is not None:
            self.recalled.set()
            self.recalled = None

    async def wait_over(self) -> None:
        """Return once the job is over (see :meth:`settle`). Cancelling the wait changes
        nothing."""
        if self.over:
            await anyio.lowlevel.checkpoint()
            return
        if self._over is None:
            self._over = anyio.Event()
        await self._over.wait()

    def settle(self, result: TrialOutput | BaseException) -> None:
        """Hand ``run()`` its result (the first one wins); the job is over either way."""
        self.over = True
        if self._over is not None:
            self._over.set()
        if self.result is None and not self.detached:
            self.result = result
            self.settled.set()


class _Outgoing:
    def __init__(self, data: bytes, job: Job | None) -> None:
        self.data, self.job, self.sent = memoryview(data), job, 0


class Worker:
    """One worker process in one slot, and what the pool knows about it."""

    _decoder: msgspec.msgpack.Decoder[FromWorker] = msgspec.msgpack.Decoder(FromWorker)

    def __init__(self, slot: int, gpus: tuple[int, ...], process: Process,
                 capture: tuple[Path, Path], pipes: tuple[int, int, int]) -> None:
        self.slot, self.gpus, self.process, self.capture = slot, gpus, process, capture
        # Our ends: what the worker reads, what it writes, the pipe it watches for our death.
        self._to, self._from, self._lifeline = pipes
        for fd in (self._to, self._from):
            os.set_blocking(fd, False)
        self._open = True
        self.name = f"process-{slot}"
        self.pid = process.pid
        self.ready = False  # said hello: it may be given trials
        self.trials = 0  # trials started on it
        self.running: Job | None = None  # the trial it runs, as far as we know
        self.queued: deque[Job] = deque()  # sent to it and not started yet, in order
        self.idle_since = 0.0
        self.retired = anyio.Event()  # the pool stops it: Stop (graceful) or SIGKILL
        self.graceful = False
        self.reason = ""  # why the pool stopped it
        self.ended = anyio.Event()  # exited, death reported, its trials settled
        self.returncode: int | None = None
        self.last_output = TrialOutput()  # what the trial it died in had written
        self._frames = FrameBuffer()
        self._outbox: deque[_Outgoing] = deque()
        self._backlog = anyio.Event()  # set while the outbox waits for room in the pipe

    # -- state ---------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return self.running is None and not self.queued

    def usable(self) -> bool:
        """May be given trials. (So may one that has exited unseen: once its exit is
        seen, the trial it was given fails with WorkerLost, the ones queued move.)"""
        return self.ready and not self.retired.is_set()

    def queued_job(self, number: int) -> Job | None:
        return next((job for job in self.queued if job.id == number), None)

    def rank(self) -> tuple[int, float]:
        """Sort key among workers with room: idle ones first (longest idle first), then
        the one whose running trial started earliest (it should end first)."""
        if self.idle:
            return 0, self.idle_since
        started = self.running.started_at if self.running is not None else None
        return 1, math.inf if started is None else started

    # -- writing ---------------------------------------------------------------------------

    def post(self, message: ToWorker, job: Job | None = None) -> None:
        """Send ``message`` now, or as soon as the pipe has room (in order)."""
        self._outbox.append(_Outgoing(frame(message), job))
        self._flush()

    def post_first(self, message: ToWorker) -> None:
        """Send ``message`` before every message not begun yet."""
        begun = bool(self._outbox and self._outbox[0].sent)
        self._outbox.insert(int(begun), _Outgoing(frame(message), None))
        self._flush()

    def unpost(self, job: Job) -> bool:
        """Take back ``job``'s Run if none of it was written yet."""
        for outgoing in self._outbox:
            if outgoing.job is job and not outgoing.sent:
                self._outbox.remove(outgoing)
                return True
        return False

    async def write_out(self) -> None:
        """Write what the pipe had no room for, as room comes (runs until cancelled)."""
        while True:
            await self._backlog.wait()
            self._backlog = anyio.Event()
            while self._outbox:
                await anyio.wait_writable(self._to)
                self._flush()

    def _flush(self) -> None:
        while self._outbox and self._open:
            head = self._outbox[0]
            try:
                head.sent += os.write(self._to, head.data[head.sent:])
            except BlockingIOError:
                break
            except OSError:  # it is gone: its death is handled where it is seen
                self._outbox.clear()
                return
            if head.sent == len(head.data):
                self._outbox.popleft()
        if self._outbox:
            self._backlog.set()

    # -- reading ---------------------------------------------------------------------------

    async def receive(self) -> FromWorker:
        """The next message; EndOfStream when the worker's pipe closed."""
        while (payload := self._frames.next_frame()) is None:
            await anyio.wait_readable(self._from)
            if self._read_chunk() is None:
                raise anyio.EndOfStream
        return self._decode(payload)

    async def wait_readable(self) -> None:
        await anyio.wait_readable(self._from)

    def read_into(self, handle: Callable[[FromWorker], None], *, drain: bool = False) -> bool:
        """Read what has arrived and pass each message to ``handle``; with ``drain``,
        until nothing more is there. False once the worker's end is closed."""
        while True:
            chunk = self._read_chunk()
            while (payload := self._frames.next_frame()) is not None:
                handle(self._decode(payload))
            if chunk is None:
                return False
            if not drain or not chunk:
                return True

    def _read_chunk(self) -> bytes | None:
        """Bytes read (b"" when none had arrived), or None at the end of the stream."""
        if not self._open:
            return None
        try:
            chunk = os.read(self._from, _CHUNK)
        except BlockingIOError:
            return b""
        if not chunk:
            return None
        self._frames.feed(chunk)
        return chunk

    def _decode(self, payload: bytes) -> FromWorker:
        try:
            return self._decoder.decode(payload)
        except msgspec.MsgspecError as exc:
            raise ProtocolBroken(f"it sent a message that does not decode ({exc})") from None

    # -- stopping --------------------------------------------------------------------------

    def retire(self, reason: str, *, graceful: bool) -> None:
        """Stop this worker: with Stop then a grace period, or with SIGKILL now."""
        self.reason = self.reason or reason
        self.graceful = graceful
        self.retired.set()
        if not graceful:
            self.kill()

    def kill(self) -> None:
        # Not process.kill(): subprocess.Popen polls first, and on asyncio that poll can
        # reap an exited worker before asyncio's child watcher does, which then reports
        # return code 255 instead of the real one. A zombie ignores the signal.
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Reap a worker that has exited (or is killed now) and close our pipe ends.
        Call once nothing reads or writes them any more."""
        self.kill()
        with anyio.move_on_after(EXIT_GRACE):
            await self.process.aclose()
        if self._open:
            self._open = False
            self._outbox.clear()
            for fd in (self._to, self._from, self._lifeline):
                os.close(fd)


def describe_exit(returncode: int) -> tuple[int | None, int | None, str]:
    """(exitcode, signal, words) for a process's return code."""
    if returncode >= 0:
        return returncode, None, f"exited with code {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return None, number, f"was killed by {name}"


def collect_output(capture: tuple[Path, Path], read: bool) -> TrialOutput:
    """Read (when ``read``) and remove a dead worker's capture files."""
    texts = []
    for path in capture:
        text = ""
        with contextlib.suppress(OSError):
            if read:
                text = _tail(path)
            path.unlink()
        texts.append(text)
    return TrialOutput(stdout=texts[0], stderr=texts[1])


def _tail(path: Path) -> str:
    with path.open("rb") as file:
        size = file.seek(0, os.SEEK_END)
        start = max(0, size - OUTPUT_LIMIT)
        file.seek(start)
        text = file.read().decode("utf-8", errors="replace")
    return f"[{start} bytes cut]\n{text}" if start else text
