"""A Trial and a PoolMonitor that record what a pool calls, and whether a process is
gone."""

from __future__ import annotations

import os
from typing import Any

import anyio

from engine._objective import MetricValue

__all__ = ("RecordingMonitor", "RecordingTrial", "process_gone")


class RecordingTrial:
    """A :class:`~engine.workers._base.Trial` that records every call in ``calls``;
    ``reported`` is set at the first intermediate report."""

    def __init__(self, model_id: int = 1, attempt: int = 1) -> None:
        self.model_id, self.attempt = model_id, attempt
        self.calls: list[tuple[Any, ...]] = []
        self.reported = anyio.Event()

    def loading(self) -> None:
        pass

    def started(self, worker: str, gpus: tuple[int, ...] = (), setup: float = 0.0) -> None:
        self.calls.append(("started", worker, tuple(gpus)))

    def intermediate(self, value: MetricValue) -> None:
        self.calls.append(("intermediate", value))
        self.reported.set()

    def final(self, value: MetricValue) -> None:
        self.calls.append(("final", value))

    @property
    def first_report(self) -> float:
        return float(next(c[1] for c in self.calls if c[0] == "intermediate"))


class RecordingMonitor:
    """A :class:`~engine.workers._base.PoolMonitor` that records, and lets a test wait
    for a number of calls."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int | None, tuple[int, ...]]] = []
        self.died: list[tuple[str, int | None, int | None, int | None, str]] = []
        self._changed = anyio.Event()

    def worker_started(self, worker: str, pid: int | None, gpus: tuple[int, ...]) -> None:
        self.started.append((worker, pid, gpus))
        self._notify()

    def worker_died(self, worker: str, pid: int | None, exitcode: int | None,
                    signal: int | None, reason: str) -> None:
        self.died.append((worker, pid, exitcode, signal, reason))
        self._notify()

    async def wait_started(self, count: int) -> None:
        while len(self.started) < count:
            await self._changed.wait()

    async def wait_died(self, count: int) -> None:
        while len(self.died) < count:
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def worker_pids(self) -> list[int]:
        """The pids of the workers started in processes other than this one."""
        return [pid for _, pid, _ in self.started if pid is not None and pid != os.getpid()]



def process_gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie has: it waits only to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

