"""The parent's side of one worker process (used by :mod:`engine.workers.process`):
its pipes and life-cycle flags, the queue of idle workers, and how an exit reads."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec

from engine.workers._base import TrialOutput
from engine.workers._wire import OUTPUT_LIMIT, FrameBuffer, FromWorker, ToWorker, frame

if TYPE_CHECKING:
    from anyio.abc import Process

__all__ = ("EXIT_GRACE", "PIPE_GONE", "IdleWorkers", "Worker", "collect_output", "describe_exit")

#: Seconds a worker gets to exit after Stop (or after its pipe closed) before a SIGKILL.
EXIT_GRACE = 5.0
PIPE_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


class Worker:
    """One worker process in one slot, and what the pool knows about it."""

    _decoder: msgspec.msgpack.Decoder[FromWorker] = msgspec.msgpack.Decoder(FromWorker)

    def __init__(self, slot: int, gpus: tuple[int, ...], process: Process,
                 capture: tuple[Path, Path], lifeline: int) -> None:
        self.slot, self.gpus, self.process, self.capture = slot, gpus, process, capture
        self._lifeline: int | None = lifeline  # our end of the pipe the worker watches
        self.name = f"process-{slot}"
        self.pid = process.pid
        self.trials = 0
        self.busy = False
        self.retired = anyio.Event()  # the pool stops it: Stop (graceful) or SIGKILL
        self.graceful = False
        self.reason = ""  # why the pool stopped it
        self.ended = anyio.Event()  # exited, death reported, output collected
        self.returncode: int | None = None
        self.last_output = TrialOutput()  # what the trial it died in had written
        self._frames = FrameBuffer()

    async def send(self, message: ToWorker) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(frame(message))

    async def receive(self) -> FromWorker:
        """The next message; EndOfStream when the worker's pipe closed."""
        assert self.process.stdout is not None
        while (payload := self._frames.next_frame()) is None:
            self._frames.feed(await self.process.stdout.receive())
        return self._decoder.decode(payload)

    def usable(self) -> bool:
        return not (self.retired.is_set() or self.ended.is_set()
                    or self.process.returncode is not None)

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
        """Release the pipes of a worker that has exited (or is killed now)."""
        self.kill()
        with anyio.move_on_after(EXIT_GRACE):
            await self.process.aclose()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None


class IdleWorkers:
    """Idle workers, handed out first in, first out. A cancelled ``take`` loses none."""

    def __init__(self) -> None:
        self._workers: deque[Worker] = deque()
        self._changed: anyio.Event | None = None  # exists while someone waits
        self.closed = False

    def put(self, worker: Worker) -> None:
        self._workers.append(worker)
        self._notify()

    def close(self) -> None:
        self.closed = True
        self._notify()

    async def take(self) -> Worker:
        """An idle, live worker; waits for one. RuntimeError once the pool stopped."""
        while True:
            while self._workers:
                worker = self._workers.popleft()
                if worker.usable():
                    return worker
            if self.closed:
                raise RuntimeError("the ProcessPool stopped serving: run models only while "
                                   "its serve() runs (inside the Engine's block)")
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


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
