"""The engine's exceptions.

::

    RuntimeError
    ├── EngineClosed        the engine is not running: enter ``async with Engine(...)`` first
    ├── BudgetExhausted     max trials or wall time is used up: stop proposing
    ├── WorkerLost          a worker process died while it ran a trial
    ├── WorkerStartFailed   a pool's worker did not start (exited, or did not answer)
    ├── TrialFailed         the model's execute raised; carries the original's type,
    │                       message and traceback (from whichever process ran it)
    └── SubscriberLagged    a subscriber fell further behind than the engine keeps events
"""

from __future__ import annotations

import traceback as _traceback

from engine.mutable import SampleValidationError

__all__ = (
    "BudgetExhausted",
    "EngineClosed",
    "SubscriberLagged",
    "TrialFailed",
    "WorkerLost",
    "WorkerStartFailed",
)


class EngineClosed(RuntimeError):
    """The engine is not running: use it inside ``async with Engine(...)``."""


class BudgetExhausted(RuntimeError):
    """The engine's budget (max trials or wall time) is used up; nothing more is accepted."""


class WorkerStartFailed(RuntimeError):
    """A pool's worker did not start: it exited, or did not answer within the pool's
    ``start_timeout``. The message says which and what to check."""


class WorkerLost(RuntimeError):
    """A worker died while it ran a trial (crash, ``os._exit``, a signal). ``stdout`` and
    ``stderr`` hold what the trial had written (empty where the pool cannot capture)."""

    def __init__(
        self, message: str, *, worker: str, pid: int | None = None,
        exitcode: int | None = None, signal: int | None = None,
        stdout: str = "", stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.worker, self.pid, self.exitcode, self.signal = worker, pid, exitcode, signal
        self.stdout, self.stderr = stdout, stderr


class TrialFailed(RuntimeError):
    """The model's execute raised. ``invalid`` is true when it raised
    SampleValidationError (the model is then ``invalid``, not ``failed``). ``stdout`` and
    ``stderr`` hold what the trial had written (empty where the pool cannot capture)."""

    def __init__(
        self, error_type: str, message: str, traceback: str = "", *,
        invalid: bool = False, paths: tuple[str, ...] = (), stdout: str = "", stderr: str = "",
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type, self.message, self.traceback = error_type, message, traceback
        self.invalid, self.paths = invalid, paths
        self.stdout, self.stderr = stdout, stderr

    @classmethod
    def from_exception(cls, exc: BaseException) -> TrialFailed:
        text = "".join(_traceback.format_exception(exc))
        if isinstance(exc, SampleValidationError):
            return cls(type(exc).__name__, exc.message, text, invalid=True,
                       paths=tuple(exc.paths))
        return cls(type(exc).__name__, str(exc), text)


class SubscriberLagged(RuntimeError):
    """A subscriber fell behind by more events than the engine keeps in memory. Read the
    run's journal for the missed ones, or subscribe with a larger ``buffer``."""

    def __init__(self, missed_from: int, missed_to: int) -> None:
        super().__init__(
            f"subscriber fell behind: events {missed_from}..{missed_to} are no longer in "
            "memory; read them from the run's journal or subscribe with a larger buffer"
        )
        self.missed_from, self.missed_to = missed_from, missed_to
